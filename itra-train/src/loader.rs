//! The paired `S1`/`S2` loader, as a burn `DataLoader`.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::Device;
use itra_core::{LabelledBatch, PairBatch};
use itra_data::PairedSampler;

/// A burn `DataLoader` of [`PairBatch`]es over any burn `Dataset`.
///
/// Each call of `iter` is the next epoch `e` (from [`PairLoader::starting_at_epoch`], 0 by
/// default): `S1`'s batches are consecutive slices of one seeded permutation of the whole
/// dataset and `S2`'s of a second, independent one ([`PairedSampler::epoch_orders`]`(e)`, the
/// `itra` runner's own orders for the same seed, so both draw the same batches). A final
/// incomplete batch is dropped from both streams. The orders are a pure function of
/// `(seed, epoch)`: a run resumed at epoch `e` draws what the uninterrupted one drew.
///
/// Under burn-train's multi-device strategy the loader is sliced per device: device `k` takes
/// its own range of `S1`'s permutation, and its `S2` the same range of the second permutation,
/// which, being a permutation of the whole dataset, spans every part of it (not only device
/// `k`'s share of `S1`). Each device matches its own `S1` against its own `S2`: a local MMD.
pub struct PairLoader<I, X> {
    dataset: Arc<dyn Dataset<I>>,
    batcher: Arc<dyn Batcher<I, LabelledBatch<X>>>,
    sampler: PairedSampler,
    with_second: bool,
    device: Device,
    /// The positions of the epoch's orders this loader covers.
    range: Range<usize>,
    /// The epoch the next `iter` starts.
    epoch: Arc<AtomicUsize>,
}

impl<I, X> PairLoader<I, X>
where
    I: Send + Sync + 'static,
    X: Send + 'static,
{
    /// A loader of batches of `batch_size` from `dataset`, made by `batcher` on `device`, with
    /// orders drawn from `seed`. With `with_second` off it yields `S1` alone (the baseline,
    /// label smoothing and Center loss need no `S2`; see
    /// [`itra_core::ItraObjective::second_forward`]).
    ///
    /// A `batch_size` of 0 is taken as 1; a dataset smaller than one batch yields no batch.
    pub fn new(
        dataset: impl Dataset<I> + 'static,
        batcher: impl Batcher<I, LabelledBatch<X>> + 'static,
        batch_size: usize,
        seed: u64,
        with_second: bool,
        device: &Device,
    ) -> Arc<Self> {
        let len = dataset.len();
        Arc::new(PairLoader {
            dataset: Arc::new(dataset),
            batcher: Arc::new(batcher),
            sampler: PairedSampler::new(len, batch_size.max(1), seed),
            with_second,
            device: device.clone(),
            range: 0..len,
            epoch: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The same loader, its next epoch `epoch` (for a run resumed from a checkpoint of epoch
    /// `epoch`, which burn-train numbers from 1: resuming at `checkpoint(k)` starts epoch `k`).
    pub fn starting_at_epoch(self: Arc<Self>, epoch: usize) -> Arc<Self> {
        let mut loader = self.duplicate();
        loader.epoch = Arc::new(AtomicUsize::new(epoch));
        Arc::new(loader)
    }

    /// The epoch the next `iter` will draw.
    pub fn next_epoch(&self) -> usize {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The sampler whose orders this loader follows.
    pub fn sampler(&self) -> &PairedSampler {
        &self.sampler
    }

    /// The example indices of `S1` and `S2` (empty without a second batch) of each step of
    /// `epoch`, for this loader's range.
    pub fn epoch_indices(&self, epoch: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
        let (first, second) = self.sampler.epoch_orders(epoch);
        let batch = self.sampler.batch_size();
        let steps = self.range.len() / batch;
        (0..steps)
            .map(|step| {
                let positions = self.range.start + step * batch..self.range.start + (step + 1) * batch;
                let s2 = if self.with_second { second[positions.clone()].to_vec() } else { Vec::new() };
                (first[positions].to_vec(), s2)
            })
            .collect()
    }

    fn duplicate(&self) -> Self {
        PairLoader {
            dataset: self.dataset.clone(),
            batcher: self.batcher.clone(),
            sampler: self.sampler.clone(),
            with_second: self.with_second,
            device: self.device.clone(),
            range: self.range.clone(),
            epoch: Arc::new(AtomicUsize::new(self.next_epoch())),
        }
    }

    fn make(&self, indices: Vec<usize>) -> Result<LabelledBatch<X>, DatasetError> {
        let items = self.dataset.get_many(indices)?;
        Ok(self.batcher.batch(items, &self.device))
    }
}

impl<I, X> DataLoader<PairBatch<X>> for PairLoader<I, X>
where
    I: Send + Sync + 'static,
    X: Send + 'static,
{
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<PairBatch<X>> + 'a> {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst);
        let steps = self.epoch_indices(epoch);
        Box::new(PairIterator { loader: self, total: steps.len(), steps: steps.into_iter(), done: 0 })
    }

    fn num_items(&self) -> usize {
        self.range.len()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<PairBatch<X>>> {
        let mut loader = self.duplicate();
        loader.device = device.clone();
        Arc::new(loader)
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<PairBatch<X>>> {
        let mut loader = self.duplicate();
        let start = (self.range.start + start).min(self.range.end);
        loader.range = start..(self.range.start + end).clamp(start, self.range.end);
        Arc::new(loader)
    }
}

struct PairIterator<'a, I, X> {
    loader: &'a PairLoader<I, X>,
    steps: std::vec::IntoIter<(Vec<usize>, Vec<usize>)>,
    total: usize,
    done: usize,
}

impl<I, X> Iterator for PairIterator<'_, I, X>
where
    I: Send + Sync + 'static,
    X: Send + 'static,
{
    type Item = Result<PairBatch<X>, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (s1, s2) = self.steps.next()?;
        self.done += 1;
        let second = !s2.is_empty();
        Some((|| {
            let first = self.loader.make(s1)?;
            let second = if second { Some(self.loader.make(s2)?) } else { None };
            Ok(PairBatch { first, second })
        })())
    }
}

impl<I, X> DataLoaderIterator<PairBatch<X>> for PairIterator<'_, I, X>
where
    I: Send + Sync + 'static,
    X: Send + 'static,
{
    fn progress(&self) -> Progress {
        let batch = self.loader.sampler.batch_size();
        Progress::new(self.done * batch, self.total * batch, None)
    }
}

#[cfg(test)]
mod tests {
    use burn::data::dataset::InMemDataset;

    use super::*;

    /// Items are their own indices; a batch is the list of them.
    struct Indices;

    impl Batcher<usize, LabelledBatch<Vec<usize>>> for Indices {
        fn batch(&self, items: Vec<usize>, _device: &Device) -> LabelledBatch<Vec<usize>> {
            LabelledBatch { labels: items.iter().map(|i| i % 3).collect(), inputs: items }
        }
    }

    fn loader(len: usize, batch: usize, with_second: bool) -> Arc<PairLoader<usize, Vec<usize>>> {
        PairLoader::new(InMemDataset::new((0..len).collect()), Indices, batch, 11, with_second, &Device::flex())
    }

    fn epoch(loader: &dyn DataLoader<PairBatch<Vec<usize>>>) -> Vec<(Vec<usize>, Option<Vec<usize>>)> {
        loader.iter().map(|b| b.unwrap()).map(|b| (b.first.inputs, b.second.map(|s| s.inputs))).collect()
    }

    #[test]
    fn each_iteration_is_the_next_epoch_of_the_runners_orders() {
        let loader = loader(50, 8, true);
        let sampler = PairedSampler::new(50, 8, 11);
        for e in 0..3 {
            let (first, second) = sampler.epoch_orders(e);
            let got = epoch(loader.as_ref());
            assert_eq!(got.len(), 6, "50 examples give 6 full batches of 8");
            for (step, (s1, s2)) in got.iter().enumerate() {
                assert_eq!(s1.as_slice(), sampler.batch(&first, step), "epoch {e} step {step}");
                assert_eq!(s2.as_deref(), Some(sampler.second_batch(&second, step)), "epoch {e} step {step}");
            }
        }
        assert_eq!(loader.next_epoch(), 3);
        // A resumed loader replays epoch 2 exactly.
        let resumed = self::loader(50, 8, true).starting_at_epoch(2);
        let again = epoch(resumed.as_ref());
        let (first, _) = sampler.epoch_orders(2);
        assert_eq!(again[0].0.as_slice(), sampler.batch(&first, 0));
    }

    #[test]
    fn without_a_second_batch_only_s1_is_made() {
        let got = epoch(loader(20, 5, false).as_ref());
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|(_, s2)| s2.is_none()));
    }

    #[test]
    fn device_slices_split_s1_and_draw_s2_from_the_whole_dataset() {
        let loader = loader(64, 8, true);
        let halves = [loader.slice(0, 32), loader.slice(32, 64)];
        let epochs: Vec<_> = halves.iter().map(|half| epoch(half.as_ref())).collect();
        let mut s1: Vec<usize> = epochs.iter().flatten().flat_map(|(s1, _)| s1.clone()).collect();
        s1.sort_unstable();
        assert_eq!(s1, (0..64).collect::<Vec<_>>(), "the devices' S1 partition the epoch");
        for half in &epochs {
            assert_eq!(half.len(), 4);
            let s2: Vec<usize> = half.iter().flat_map(|(_, s2)| s2.clone().unwrap()).collect();
            // A device's S2 is half of a permutation of all 64: it reaches both halves of the
            // index range, not only the examples of its own S1.
            assert!(s2.iter().any(|&i| i < 32) && s2.iter().any(|&i| i >= 32), "{s2:?}");
            let own: std::collections::HashSet<usize> = half.iter().flat_map(|(s1, _)| s1.clone()).collect();
            assert!(s2.iter().any(|i| !own.contains(i)), "S2 is not drawn from the device's own S1");
        }
        assert_eq!(halves[0].num_items(), 32);
    }

    #[test]
    fn a_dataset_smaller_than_a_batch_yields_nothing() {
        assert!(epoch(loader(3, 8, true).as_ref()).is_empty());
    }
}
