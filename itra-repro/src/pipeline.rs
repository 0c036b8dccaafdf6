//! From `itra-data` batches to Burn tensors.
//!
//! The random streams, the paired `S1`/`S2` sampler, the normalisation and the prefetching
//! [`Loader`] are `itra-data`'s (re-exported here); this module only adds what needs Burn.

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use itra_data::{Batch, ImageDataset, Loader};

pub use itra_data::sampler::{init_seed, rng};
pub use itra_data::{PairedSampler, Stream};

/// The `[N, C, H, W]` tensor of `batch` on `device`, and its labels.
pub fn to_tensor(batch: Batch, device: &Device) -> (Tensor<4>, Vec<usize>) {
    (Tensor::from_data(TensorData::new(batch.images, batch.shape), device), batch.labels)
}

/// A loaded batch as the training step takes it: the images on `device`, the labels on the host.
pub fn labelled(batch: Batch, device: &Device) -> itra_core::LabelledBatch<Tensor<4>> {
    let (inputs, labels) = to_tensor(batch, device);
    itra_core::LabelledBatch { inputs, labels }
}

/// The unaugmented, normalised batch of `indices` of a borrowed in-memory `dataset`: the values
/// an [`itra_data::Pipeline`] without augmentation makes, without moving the dataset into one.
pub fn batch(dataset: &ImageDataset, norm: &itra_data::Normalization, indices: &[usize]) -> Batch {
    let plane = dataset.height * dataset.width;
    let mut images = Vec::with_capacity(indices.len() * dataset.channels * plane);
    for &index in indices {
        norm.extend_normalized(dataset.image(index), plane, &mut images);
    }
    let labels = indices.iter().map(|&i| dataset.labels[i] as usize).collect();
    Batch { images, labels, shape: [indices.len(), dataset.channels, dataset.height, dataset.width] }
}

/// The host batches of the next training step from a loader made of
/// [`PairedSampler::epoch_requests`]: `S1`'s, and `S2`'s when the requests were made
/// `with_second`.
pub fn next_step(loader: &mut Loader, with_second: bool) -> Result<(Batch, Option<Batch>)> {
    let mut next = || match loader.next() {
        Some(batch) => Ok(batch?),
        None => bail!("the batch loader ran out before the end of the epoch"),
    };
    let first = next()?;
    let second = if with_second { Some(next()?) } else { None };
    Ok((first, second))
}

#[cfg(test)]
mod tests {
    use super::*;
    use itra_data::{Augmentation, BatchRequest, LoaderOptions, Pipeline};

    fn dataset() -> ImageDataset {
        ImageDataset {
            images: (0..5 * 2 * 3 * 4).map(|i| (i * 37 % 256) as u8).collect(),
            labels: vec![0, 1, 2, 1, 0],
            channels: 2,
            height: 3,
            width: 4,
            num_classes: 3,
            class_names: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    #[test]
    fn borrowed_batches_match_the_pipeline_and_become_tensors() {
        let data = dataset();
        let norm = itra_data::Normalization::of(&data);
        let pipeline = Pipeline::new(data.clone(), Augmentation::None, norm.clone(), 0);
        let expected = pipeline.batch(&[3, 0, 4], Stream::AugmentFirst, 0).unwrap();
        assert_eq!(batch(&data, &norm, &[3, 0, 4]), expected);

        let (tensor, labels) = to_tensor(batch(&data, &norm, &[3, 0, 4]), &Device::flex());
        assert_eq!(labels, vec![1, 0, 0]);
        assert_eq!(tensor.dims(), [3, 2, 3, 4]);
        assert_eq!(tensor.into_data().iter::<f32>().collect::<Vec<_>>(), expected.images);
    }

    #[test]
    fn next_step_pairs_the_requests_and_reports_a_short_loader() {
        let data = dataset();
        let norm = itra_data::Normalization::of(&data);
        let pipeline = Pipeline::new(data, Augmentation::None, norm, 0);
        let sampler = PairedSampler::new(5, 2, 9);
        let (first, second) = sampler.epoch_orders(1);
        let options = LoaderOptions { workers: 1, prefetch: 2 };
        let mut loader = Loader::new(pipeline.clone(), sampler.epoch_requests(1, true), 1, options);
        for step in 0..sampler.steps_per_epoch() {
            let (s1, s2) = next_step(&mut loader, true).unwrap();
            assert_eq!(s1, pipeline.batch(sampler.batch(&first, step), Stream::AugmentFirst, 1).unwrap());
            let s2 = s2.unwrap();
            assert_eq!(s2, pipeline.batch(sampler.batch(&second, step), Stream::AugmentSecond, 1).unwrap());
        }
        assert!(next_step(&mut loader, true).is_err());

        let requests = vec![BatchRequest::new(vec![0], Stream::AugmentFirst)];
        let mut loader = Loader::new(pipeline, requests, 0, options);
        assert!(next_step(&mut loader, true).is_err());
    }
}
