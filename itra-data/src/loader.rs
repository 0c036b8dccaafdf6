//! Batches of normalised `f32` pixels, assembled on worker threads ahead of the trainer.
//!
//! A [`Loader`] is given the whole list of batches to make ([`BatchRequest`]s, e.g. from
//! [`crate::PairedSampler::epoch_requests`]) and yields them **in request order, with contents
//! that depend only on the requests, the pipeline and the epoch**, never on thread timing: every
//! random choice comes from [`crate::sampler::example_rng`]. At most `prefetch` batches are
//! made or held ahead of the consumer.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::augment::Augmentation;
use crate::folder::FolderIndex;
use crate::normalize::Normalization;
use crate::sampler::{Stream, example_rng};
use crate::{DataError, ImageDataset};

/// Where a [`Pipeline`]'s images come from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// Decoded images held in memory.
    Memory(Arc<ImageDataset>),
    /// An image folder, each file decoded when its batch is made (ImageNet).
    Folder(Arc<FolderIndex>),
}

impl ImageSource {
    pub fn len(&self) -> usize {
        match self {
            ImageSource::Memory(data) => data.len(),
            ImageSource::Folder(index) => index.paths.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The 0-based class of example `index`.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn label(&self, index: usize) -> usize {
        match self {
            ImageSource::Memory(data) => data.labels[index] as usize,
            ImageSource::Folder(folder) => folder.labels[index] as usize,
        }
    }

    /// Every example's 0-based class, in order.
    pub fn labels(&self) -> Vec<usize> {
        match self {
            ImageSource::Memory(data) => data.labels.iter().map(|&l| l as usize).collect(),
            ImageSource::Folder(folder) => folder.labels.iter().map(|&l| l as usize).collect(),
        }
    }

    /// The class names; their count is the number of classes.
    pub fn class_names(&self) -> &[String] {
        match self {
            ImageSource::Memory(data) => &data.class_names,
            ImageSource::Folder(folder) => &folder.class_names,
        }
    }

    /// The examples at `indices`, in that order. An image folder stays an index of paths:
    /// nothing is decoded.
    ///
    /// # Panics
    /// If any index is `>= len()`.
    pub fn subset(&self, indices: &[usize]) -> ImageSource {
        match self {
            ImageSource::Memory(data) => ImageSource::Memory(Arc::new(data.subset(indices))),
            ImageSource::Folder(folder) => ImageSource::Folder(Arc::new(FolderIndex {
                paths: indices.iter().map(|&i| folder.paths[i].clone()).collect(),
                labels: indices.iter().map(|&i| folder.labels[i]).collect(),
                class_names: folder.class_names.clone(),
            })),
        }
    }

    /// The CHW bytes and shape of example `index` as stored, decoded if need be.
    pub fn raw_image(&self, index: usize) -> Result<(Vec<u8>, [usize; 3]), DataError> {
        self.image(index).map(|(bytes, shape)| (bytes.into_owned(), shape))
    }

    /// The CHW bytes and shape of example `index`, decoded if need be.
    fn image(&self, index: usize) -> Result<(std::borrow::Cow<'_, [u8]>, [usize; 3]), DataError> {
        match self {
            ImageSource::Memory(data) => Ok((std::borrow::Cow::Borrowed(data.image(index)), data.shape())),
            ImageSource::Folder(folder) => {
                let path = &folder.paths[index];
                let (chw, shape) = crate::folder::decode(path, None)?;
                Ok((std::borrow::Cow::Owned(chw), shape))
            }
        }
    }

    fn describe(&self, index: usize) -> std::path::PathBuf {
        match self {
            ImageSource::Memory(_) => format!("<in-memory example {index}>").into(),
            ImageSource::Folder(folder) => folder.paths[index].clone(),
        }
    }
}

impl From<ImageDataset> for ImageSource {
    fn from(data: ImageDataset) -> Self {
        ImageSource::Memory(Arc::new(data))
    }
}

impl From<Arc<ImageDataset>> for ImageSource {
    fn from(data: Arc<ImageDataset>) -> Self {
        ImageSource::Memory(data)
    }
}

impl From<FolderIndex> for ImageSource {
    fn from(index: FolderIndex) -> Self {
        ImageSource::Folder(Arc::new(index))
    }
}

/// Normalised images `[N, C, H, W]`, flattened row-major, with their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `N * C * H * W` values, `(pixel / 255 - mean_c) / std_c`.
    pub images: Vec<f32>,
    pub labels: Vec<usize>,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
}

/// One batch to make: which examples, and which augmentation stream draws their views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    pub indices: Vec<usize>,
    pub stream: Stream,
}

impl BatchRequest {
    pub fn new(indices: Vec<usize>, stream: Stream) -> Self {
        BatchRequest { indices, stream }
    }
}

/// Source, augmentation and normalisation: everything that turns an example index into
/// normalised pixels.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub source: ImageSource,
    pub augmentation: Augmentation,
    pub normalization: Normalization,
    /// The run's seed; augmentation draws from `(seed, stream, epoch, index)`.
    pub seed: u64,
}

impl Pipeline {
    pub fn new(
        source: impl Into<ImageSource>,
        augmentation: Augmentation,
        normalization: Normalization,
        seed: u64,
    ) -> Self {
        Pipeline { source: source.into(), augmentation, normalization, seed }
    }

    /// The normalised view of example `index` in `epoch` on `stream`, appended to `out`.
    /// Returns its shape.
    pub fn example_into(
        &self,
        index: usize,
        stream: Stream,
        epoch: usize,
        out: &mut Vec<f32>,
    ) -> Result<[usize; 3], DataError> {
        let (chw, shape) = self.source.image(index)?;
        let [channels, height, width] = shape;
        if channels != self.normalization.channels() || height == 0 || width == 0 {
            return Err(DataError::ShapeMismatch {
                path: self.source.describe(index),
                found: shape,
                expected: [self.normalization.channels(), height.max(1), width.max(1)],
            });
        }
        let (pixels, out_shape) = match self.augmentation {
            Augmentation::None => (chw, shape),
            augmentation => {
                let mut rng = example_rng(self.seed, stream, epoch as u64, index);
                let (pixels, out_shape) = augmentation.apply(&chw, shape, &mut rng);
                (std::borrow::Cow::Owned(pixels), out_shape)
            }
        };
        self.normalization.extend_normalized(&pixels, out_shape[1] * out_shape[2], out);
        Ok(out_shape)
    }

    /// The batch of `indices` in `epoch`, views drawn on `stream`. Every image must come out
    /// with the first one's shape.
    pub fn batch(&self, indices: &[usize], stream: Stream, epoch: usize) -> Result<Batch, DataError> {
        let mut images = Vec::new();
        let mut shape: Option<[usize; 3]> = None;
        for &index in indices {
            let found = self.example_into(index, stream, epoch, &mut images)?;
            match shape {
                None => {
                    images.reserve(found.iter().product::<usize>() * (indices.len() - 1));
                    shape = Some(found);
                }
                Some(expected) if expected != found => {
                    return Err(DataError::ShapeMismatch { path: self.source.describe(index), found, expected });
                }
                Some(_) => {}
            }
        }
        let [channels, height, width] = shape.unwrap_or([self.normalization.channels(), 0, 0]);
        let labels = indices.iter().map(|&i| self.source.label(i)).collect();
        Ok(Batch { images, labels, shape: [indices.len(), channels, height, width] })
    }
}

/// How many threads make batches and how far ahead they may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderOptions {
    /// Worker threads; 0 makes every batch on the consumer's thread when it is asked for.
    pub workers: usize,
    /// Batches made or being made ahead of the consumer, at least 1.
    pub prefetch: usize,
}

impl Default for LoaderOptions {
    /// Up to 4 workers (fewer on smaller machines, leaving one core to the trainer) and 4
    /// batches in flight.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        LoaderOptions { workers: cores.saturating_sub(1).clamp(1, 4), prefetch: 4 }
    }
}

struct Shared {
    pipeline: Pipeline,
    requests: Vec<BatchRequest>,
    epoch: usize,
    prefetch: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The next request a worker will take.
    next: usize,
    /// Requests handed to the consumer so far.
    consumed: usize,
    done: BTreeMap<usize, Result<Batch, DataError>>,
    stopped: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked while holding the lock left consistent state behind: every
        // update is a single insert or increment.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn make(&self, job: usize) -> Result<Batch, DataError> {
        let request = &self.requests[job];
        self.pipeline.batch(&request.indices, request.stream, self.epoch)
    }
}

/// An iterator over the batches of a list of requests, made by worker threads ahead of time.
///
/// Dropping it stops the workers after their current batch.
pub struct Loader {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("requests", &self.shared.requests.len())
            .field("epoch", &self.shared.epoch)
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Loader {
    /// Starts making the batches of `requests` for `epoch`.
    pub fn new(pipeline: Pipeline, requests: Vec<BatchRequest>, epoch: usize, options: LoaderOptions) -> Self {
        let shared = Arc::new(Shared {
            pipeline,
            requests,
            epoch,
            prefetch: options.prefetch.max(1),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        // A thread that cannot be spawned is simply missing: with none at all, `next` makes
        // each batch itself, so the batches are the same either way.
        let workers = (0..options.workers)
            .filter_map(|worker| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new().name(format!("itra-loader-{worker}")).spawn(move || work(&shared)).ok()
            })
            .collect();
        Loader { shared, workers }
    }

    /// Batches not yet handed out.
    pub fn remaining(&self) -> usize {
        self.shared.requests.len() - self.shared.lock().consumed
    }
}

fn work(shared: &Shared) {
    loop {
        let job = {
            let mut state = shared.lock();
            loop {
                if state.stopped || state.next >= shared.requests.len() {
                    return;
                }
                if state.next < state.consumed + shared.prefetch {
                    break;
                }
                state = shared.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            state.next += 1;
            state.next - 1
        };
        let batch = shared.make(job);
        shared.lock().done.insert(job, batch);
        shared.changed.notify_all();
    }
}

impl Iterator for Loader {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let shared = &self.shared;
        let mut state = shared.lock();
        let job = state.consumed;
        if job >= shared.requests.len() {
            return None;
        }
        if self.workers.is_empty() {
            state.consumed += 1;
            drop(state);
            return Some(shared.make(job));
        }
        loop {
            if let Some(batch) = state.done.remove(&job) {
                state.consumed += 1;
                drop(state);
                shared.changed.notify_all();
                return Some(batch);
            }
            if self.workers.iter().all(|w| w.is_finished()) && !state.done.contains_key(&job) {
                // Every worker has exited (one panicked) without making this batch.
                state.consumed += 1;
                drop(state);
                return Some(shared.make(job));
            }
            state = shared
                .changed
                .wait_timeout(state, std::time::Duration::from_millis(200))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.remaining();
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for Loader {}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.changed.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// The path and 0-based class of every image of a folder split, for [`ImageSource::Folder`]:
/// `<root>/train/<class>/*` or `<root>/val/<class>/*`, the validation split with the training
/// split's classes.
pub fn folder_source(root: &Path, split: crate::Split) -> Result<ImageSource, DataError> {
    let train = crate::folder::index(&root.join(crate::folder::split_dir_name(crate::Split::Train)), None)?;
    match split {
        crate::Split::Train => Ok(train.into()),
        crate::Split::Test => {
            let dir = root.join(crate::folder::split_dir_name(crate::Split::Test));
            Ok(crate::folder::index(&dir, Some(&train.class_names))?.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PairedSampler;

    fn dataset(len: usize) -> ImageDataset {
        ImageDataset {
            images: (0..len * 3 * 8 * 8).map(|i| (i * 7 % 256) as u8).collect(),
            labels: (0..len as u32).map(|i| i % 10).collect(),
            channels: 3,
            height: 8,
            width: 8,
            num_classes: 10,
            class_names: (0..10).map(|i| i.to_string()).collect(),
        }
    }

    fn pipeline(len: usize, augmentation: Augmentation) -> Pipeline {
        let data = dataset(len);
        let norm = Normalization::of(&data);
        Pipeline::new(data, augmentation, norm, 11)
    }

    #[test]
    fn unaugmented_batch_matches_the_runner_formula() {
        let data = dataset(4);
        let norm = Normalization::of(&data);
        let batch = Pipeline::new(data.clone(), Augmentation::None, norm.clone(), 0)
            .batch(&[2, 0], Stream::AugmentFirst, 0)
            .unwrap();
        assert_eq!(batch.shape, [2, 3, 8, 8]);
        assert_eq!(batch.labels, vec![2, 0]);
        // p * (1 / (255 s)) - m / s, per channel, in f32
        let expected: Vec<f32> = [2usize, 0]
            .iter()
            .flat_map(|&i| {
                let (data, norm) = (&data, &norm);
                data.image(i).chunks_exact(64).enumerate().flat_map(move |(c, plane)| {
                    let (scale, shift) = (1.0 / (255.0 * norm.std[c]), norm.mean[c] / norm.std[c]);
                    plane.iter().map(move |&p| f32::from(p) * scale - shift)
                })
            })
            .collect();
        assert_eq!(batch.images, expected);
    }

    #[test]
    fn loader_yields_requests_in_order_whatever_the_threads() {
        let pipeline = pipeline(40, Augmentation::CIFAR);
        let sampler = PairedSampler::new(40, 6, 3);
        let requests = sampler.epoch_requests(2, true);
        let expected: Vec<Batch> = requests.iter().map(|r| pipeline.batch(&r.indices, r.stream, 2).unwrap()).collect();
        for (workers, prefetch) in [(0, 1), (1, 1), (3, 2), (4, 8)] {
            let loader = Loader::new(pipeline.clone(), requests.clone(), 2, LoaderOptions { workers, prefetch });
            assert_eq!(loader.len(), 12);
            let got: Vec<Batch> = loader.map(Result::unwrap).collect();
            assert_eq!(got, expected, "workers {workers}, prefetch {prefetch}");
        }
        // Resuming mid-epoch replays the remaining batches exactly.
        let resumed =
            Loader::new(pipeline.clone(), requests[5..].to_vec(), 2, LoaderOptions { workers: 2, prefetch: 3 });
        assert_eq!(resumed.map(Result::unwrap).collect::<Vec<_>>(), expected[5..]);
        // S1 and S2 views of an example differ; the same request in another epoch differs too.
        let first = pipeline.batch(&[5], Stream::AugmentFirst, 2).unwrap();
        assert_ne!(first, pipeline.batch(&[5], Stream::AugmentSecond, 2).unwrap());
        assert_ne!(first, pipeline.batch(&[5], Stream::AugmentFirst, 3).unwrap());
        // A view does not depend on the batch it is in.
        let pair = pipeline.batch(&[9, 5], Stream::AugmentFirst, 2).unwrap();
        assert_eq!(&pair.images[192..], &first.images[..]);
    }

    #[test]
    fn loader_stops_early_and_reports_errors_in_place() {
        let pipeline = pipeline(10, Augmentation::None);
        let requests = vec![
            BatchRequest::new(vec![0, 1], Stream::AugmentFirst),
            BatchRequest::new(vec![2], Stream::AugmentFirst),
            BatchRequest::new(vec![3], Stream::AugmentFirst),
        ];
        let mut loader = Loader::new(pipeline.clone(), requests.clone(), 0, LoaderOptions { workers: 2, prefetch: 2 });
        assert_eq!(loader.next().unwrap().unwrap().labels, vec![0, 1]);
        drop(loader);

        let root = tempfile::tempdir().unwrap();
        crate::folder::tests::write_image(&root.path().join("train/a/1.png"), 6, 5, 0);
        std::fs::write(root.path().join("train/a/2.png"), b"not a png").unwrap();
        crate::folder::tests::write_image(&root.path().join("train/b/3.png"), 9, 4, 0);
        let source = folder_source(root.path(), crate::Split::Train).unwrap();
        let folder = Pipeline::new(source, Augmentation::IMAGENET_TRAIN, Normalization::imagenet(), 0);
        let requests = vec![
            BatchRequest::new(vec![0, 2], Stream::AugmentFirst),
            BatchRequest::new(vec![1], Stream::AugmentFirst),
            BatchRequest::new(vec![2], Stream::AugmentFirst),
        ];
        let results: Vec<_> = Loader::new(folder, requests, 0, LoaderOptions { workers: 2, prefetch: 1 }).collect();
        let first = results[0].as_ref().unwrap();
        assert_eq!((first.shape, first.labels.clone()), ([2, 3, 224, 224], vec![0, 1]));
        assert!(matches!(results[1], Err(DataError::Image { .. })), "{:?}", results[1]);
        assert!(results[2].is_ok());
    }

    #[test]
    fn wrong_channel_count_is_an_error() {
        let data = dataset(2);
        let gray = Normalization { mean: vec![0.5], std: vec![0.5] };
        let err = Pipeline::new(data, Augmentation::None, gray, 0).batch(&[0], Stream::AugmentFirst, 0).unwrap_err();
        assert!(matches!(err, DataError::ShapeMismatch { found: [3, 8, 8], .. }), "{err}");
    }
}
