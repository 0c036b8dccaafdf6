//! `itra-data`'s datasets as Burn [`Dataset`]s, so that a Burn user gets the verified
//! downloads, parsers and normalisation of this crate through Burn's own `DataLoaderBuilder`
//! (or `itra-train`'s paired loader). No tensors here: the items are host values, and turning a
//! batch of them into tensors is the batcher's job (`itra_train::ImageBatcher`).
//!
//! | dataset | item |
//! |---|---|
//! | [`ImageDataset`] (IDX, CIFAR, STL-10, a decoded folder) | [`RawImage`]: CHW bytes as stored |
//! | [`ImageSource`] (in memory, or an image folder decoded per item) | [`RawImage`] |
//! | [`PipelineView`] (a [`Pipeline`]: augmentation and normalisation) | [`ImageItem`]: normalised `f32` |
//! | [`TextDataset`] (Zhang et al.'s CSVs) | [`TextItem`] |
//!
//! An index at or beyond `len()` is an error ([`DataError::IndexOutOfRange`]), not a panic.

use burn_dataset::{Dataset, DatasetError};

use crate::error::DataError;
use crate::{ImageDataset, ImageSource, Pipeline, Stream, TextDataset};

/// One image as stored: `channels * height * width` bytes in CHW order, 0..=255.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawImage {
    pub pixels: Vec<u8>,
    /// `[channels, height, width]`.
    pub shape: [usize; 3],
    /// The 0-based class.
    pub label: usize,
}

/// One image as a network takes it: augmented (where the pipeline augments) and normalised,
/// `(pixel / 255 - mean_c) / std_c`, CHW.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageItem {
    pub pixels: Vec<f32>,
    /// `[channels, height, width]` after augmentation.
    pub shape: [usize; 3],
    /// The 0-based class.
    pub label: usize,
}

/// One text example: its joined text fields and its 0-based class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextItem {
    pub text: String,
    pub label: usize,
}

fn check(index: usize, len: usize) -> Result<(), DatasetError> {
    if index < len { Ok(()) } else { Err(DatasetError::new(DataError::IndexOutOfRange { index, len })) }
}

impl Dataset<RawImage> for ImageDataset {
    fn get(&self, index: usize) -> Result<RawImage, DatasetError> {
        check(index, ImageDataset::len(self))?;
        Ok(RawImage { pixels: self.image(index).to_vec(), shape: self.shape(), label: self.labels[index] as usize })
    }

    fn len(&self) -> usize {
        ImageDataset::len(self)
    }
}

impl Dataset<RawImage> for ImageSource {
    fn get(&self, index: usize) -> Result<RawImage, DatasetError> {
        check(index, ImageSource::len(self))?;
        let (pixels, shape) = self.raw_image(index).map_err(DatasetError::new)?;
        Ok(RawImage { pixels, shape, label: self.label(index) })
    }

    fn len(&self) -> usize {
        ImageSource::len(self)
    }
}

impl Dataset<TextItem> for TextDataset {
    fn get(&self, index: usize) -> Result<TextItem, DatasetError> {
        check(index, TextDataset::len(self))?;
        Ok(TextItem { text: self.texts[index].clone(), label: self.labels[index] as usize })
    }

    fn len(&self) -> usize {
        TextDataset::len(self)
    }
}

/// A [`Pipeline`]'s views of one epoch on one random stream, as a Burn [`Dataset`]: item `i` is
/// example `i` augmented with the draw `(seed, stream, epoch, i)` and normalised, exactly the
/// values the pipeline's batches hold (so the `itra` runner and a Burn loader see the same
/// pixels). Burn's loaders have no notion of epochs; a loop that re-augments each epoch makes
/// one view per epoch ([`PipelineView::at_epoch`]). Without augmentation every epoch is alike.
#[derive(Debug, Clone)]
pub struct PipelineView {
    pub pipeline: Pipeline,
    pub stream: Stream,
    pub epoch: usize,
}

impl PipelineView {
    /// Epoch 0 of `pipeline` on the first-batch stream ([`Stream::AugmentFirst`]).
    pub fn new(pipeline: Pipeline) -> Self {
        PipelineView { pipeline, stream: Stream::AugmentFirst, epoch: 0 }
    }

    /// The same pipeline's views in `epoch`.
    pub fn at_epoch(&self, epoch: usize) -> Self {
        PipelineView { epoch, ..self.clone() }
    }

    /// The same pipeline's views on `stream` (`S2` draws its own with [`Stream::AugmentSecond`]).
    pub fn on_stream(&self, stream: Stream) -> Self {
        PipelineView { stream, ..self.clone() }
    }
}

impl Dataset<ImageItem> for PipelineView {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        check(index, self.pipeline.source.len())?;
        let mut pixels = Vec::new();
        let shape =
            self.pipeline.example_into(index, self.stream, self.epoch, &mut pixels).map_err(DatasetError::new)?;
        Ok(ImageItem { pixels, shape, label: self.pipeline.source.label(index) })
    }

    fn len(&self) -> usize {
        self.pipeline.source.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Augmentation, Normalization};

    fn images() -> ImageDataset {
        // Three 1x2x2 images with labels 2, 0, 1.
        ImageDataset {
            images: (0u8..12).map(|v| v * 20).collect(),
            labels: vec![2, 0, 1],
            channels: 1,
            height: 2,
            width: 2,
            num_classes: 3,
            class_names: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    #[test]
    fn image_items_are_the_stored_bytes_and_labels() {
        let data = images();
        let item: RawImage = Dataset::get(&data, 1).unwrap();
        assert_eq!(item, RawImage { pixels: vec![80, 100, 120, 140], shape: [1, 2, 2], label: 0 });
        assert_eq!(Dataset::<RawImage>::len(&data), 3);
        let source = ImageSource::from(data);
        assert_eq!(Dataset::<RawImage>::get(&source, 2).unwrap().label, 1);
    }

    #[test]
    fn an_index_past_the_end_is_an_error_naming_it() {
        let data = images();
        let err = Dataset::<RawImage>::get(&data, 3).unwrap_err();
        assert_eq!(err.to_string(), "example 3 requested of a dataset of 3");
        let text =
            TextDataset { texts: vec!["x".into()], labels: vec![0], num_classes: 1, class_names: vec!["a".into()] };
        assert!(Dataset::<TextItem>::get(&text, 1).is_err());
        assert_eq!(Dataset::<TextItem>::get(&text, 0).unwrap(), TextItem { text: "x".into(), label: 0 });
    }

    #[test]
    fn pipeline_items_are_the_pipelines_batch_values() {
        let data = images();
        let norm = Normalization::of(&data);
        for augmentation in [Augmentation::None, Augmentation::CropFlip { padding: 1 }] {
            let pipeline = Pipeline::new(data.clone(), augmentation, norm.clone(), 7);
            let view = PipelineView::new(pipeline.clone()).at_epoch(3).on_stream(Stream::AugmentSecond);
            let batch = pipeline.batch(&[2, 0], Stream::AugmentSecond, 3).unwrap();
            let items: Vec<ImageItem> = [2, 0].iter().map(|&i| Dataset::get(&view, i).unwrap()).collect();
            let pixels: Vec<f32> = items.iter().flat_map(|item| item.pixels.clone()).collect();
            assert_eq!(pixels, batch.images, "{augmentation:?}");
            assert_eq!(items.iter().map(|item| item.label).collect::<Vec<_>>(), batch.labels);
        }
    }
}
