//! Items of `itra-data`'s datasets to tensors.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Tensor, TensorData};
use itra_core::LabelledBatch;
use itra_data::{ImageItem, RawImage};

/// Stacks images into a `[N, C, H, W]` tensor on the loader's device, labels kept on the host.
///
/// - [`ImageItem`]s (a [`itra_data::PipelineView`]: normalised, augmented where the pipeline
///   augments) are stacked as they are;
/// - [`RawImage`]s (an [`itra_data::ImageDataset`] or [`itra_data::ImageSource`]) are scaled to
///   `[0, 1]`, with no normalisation.
///
/// Every image of a batch must have the first one's shape: a batch that mixes shapes, or none
/// at all, is a bug of the dataset that feeds it, and the batcher panics naming both shapes
/// (Burn's `Batcher` returns no error).
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageBatcher;

fn stack(pixels: Vec<f32>, shapes: &[[usize; 3]], device: &Device) -> Tensor<4> {
    let first = shapes.first().copied().unwrap_or([0, 0, 0]);
    if let Some(other) = shapes.iter().find(|&&shape| shape != first) {
        panic!("a batch mixes image shapes {first:?} and {other:?}");
    }
    let [channels, height, width] = first;
    Tensor::from_data(TensorData::new(pixels, [shapes.len(), channels, height, width]), device)
}

impl Batcher<ImageItem, LabelledBatch<Tensor<4>>> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> LabelledBatch<Tensor<4>> {
        let shapes: Vec<[usize; 3]> = items.iter().map(|item| item.shape).collect();
        let labels = items.iter().map(|item| item.label).collect();
        let pixels = items.into_iter().flat_map(|item| item.pixels).collect();
        LabelledBatch { inputs: stack(pixels, &shapes, device), labels }
    }
}

impl Batcher<RawImage, LabelledBatch<Tensor<4>>> for ImageBatcher {
    fn batch(&self, items: Vec<RawImage>, device: &Device) -> LabelledBatch<Tensor<4>> {
        let shapes: Vec<[usize; 3]> = items.iter().map(|item| item.shape).collect();
        let labels = items.iter().map(|item| item.label).collect();
        let pixels = items.iter().flat_map(|item| item.pixels.iter().map(|&p| f32::from(p) / 255.0)).collect();
        LabelledBatch { inputs: stack(pixels, &shapes, device), labels }
    }
}
