//! From raw images to Burn tensors: normalisation, the paired `S1`/`S2` sampler and batching.

use burn::tensor::{Device, Tensor, TensorData};
use itra_data::ImageDataset;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The independent random streams of a run, each derived from the run's seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Model initialisation.
    Init = 1,
    /// The order of `S1`.
    First = 2,
    /// The order of `S2`.
    Second = 3,
    /// The training subset drawn by `train_limit`.
    Subset = 4,
}

/// A generator for `stream` in `epoch`, a pure function of `(seed, stream, epoch)` so that a
/// resumed run replays exactly the same order without saving generator state.
pub fn rng(seed: u64, stream: Stream, epoch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((stream as u64) << 32) | (epoch & 0xffff_ffff));
    rng
}

/// The seed Burn's own generator gets for initialisation.
pub fn init_seed(seed: u64) -> u64 {
    use rand::RngCore;
    rng(seed, Stream::Init, 0).next_u64()
}

/// Per-epoch orders of the two mini-batch streams.
///
/// `S1` walks a fresh permutation of the training set each epoch; `S2` walks an independent
/// permutation (its own stream), so the two never pair the same examples systematically. Both
/// drop the last incomplete batch.
#[derive(Debug, Clone)]
pub struct PairedSampler {
    len: usize,
    batch_size: usize,
    seed: u64,
}

impl PairedSampler {
    pub fn new(len: usize, batch_size: usize, seed: u64) -> Self {
        PairedSampler { len, batch_size, seed }
    }

    /// Full batches per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.len / self.batch_size
    }

    /// The `S1` and `S2` permutations of `epoch`. They differ whenever the set has two or more
    /// examples: if the independent shuffles coincide, `S2`'s is rotated by one.
    pub fn epoch_orders(&self, epoch: usize) -> (Vec<usize>, Vec<usize>) {
        let first = self.permutation(Stream::First, epoch);
        let mut second = self.permutation(Stream::Second, epoch);
        if first == second && self.len > 1 {
            second.rotate_left(1);
        }
        (first, second)
    }

    fn permutation(&self, stream: Stream, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        order.shuffle(&mut rng(self.seed, stream, epoch as u64));
        order
    }

    /// The indices of batch `step` within an epoch's order.
    pub fn batch<'a>(&self, order: &'a [usize], step: usize) -> &'a [usize] {
        &order[step * self.batch_size..(step + 1) * self.batch_size]
    }
}

/// Per-channel normalisation with the training split's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// The mean and standard deviation of each channel over the whole split, in `[0, 1]` units.
    pub fn of(dataset: &ImageDataset) -> Self {
        let plane = dataset.height * dataset.width;
        let channels = dataset.channels;
        let mut sum = vec![0f64; channels];
        let mut sum_sq = vec![0f64; channels];
        for image in dataset.images.chunks_exact(channels * plane) {
            for (c, pixels) in image.chunks_exact(plane).enumerate() {
                let (s, q) = pixels.iter().fold((0u64, 0u64), |(s, q), &p| {
                    let p = u64::from(p);
                    (s + p, q + p * p)
                });
                sum[c] += s as f64;
                sum_sq[c] += q as f64;
            }
        }
        let count = (dataset.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / count / 255.0).collect();
        let std = sum_sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / count / (255.0 * 255.0) - m * m).max(0.0).sqrt().max(1e-6)) as f32)
            .collect();
        Normalization { mean: mean.into_iter().map(|m| m as f32).collect(), std }
    }

    /// Normalised `[batch, C, H, W]` images and their labels for `indices` of `dataset`.
    pub fn batch(&self, dataset: &ImageDataset, indices: &[usize], device: &Device) -> (Tensor<4>, Vec<usize>) {
        let plane = dataset.height * dataset.width;
        let image_len = dataset.channels * plane;
        let scale: Vec<f32> = self.std.iter().map(|s| 1.0 / (255.0 * s)).collect();
        let shift: Vec<f32> = self.mean.iter().zip(&self.std).map(|(m, s)| m / s).collect();
        let mut pixels = Vec::with_capacity(indices.len() * image_len);
        for &index in indices {
            for (c, channel) in dataset.image(index).chunks_exact(plane).enumerate() {
                pixels.extend(channel.iter().map(|&p| f32::from(p) * scale[c] - shift[c]));
            }
        }
        let labels = indices.iter().map(|&i| dataset.labels[i] as usize).collect();
        let shape = [indices.len(), dataset.channels, dataset.height, dataset.width];
        (Tensor::from_data(TensorData::new(pixels, shape), device), labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_permutations_and_independent() {
        let sampler = PairedSampler::new(100, 10, 7);
        let (first, second) = sampler.epoch_orders(0);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(first, second);
        // Reproducible per (seed, epoch), different across epochs.
        assert_eq!(sampler.epoch_orders(0), (first.clone(), second));
        assert_ne!(sampler.epoch_orders(1).0, first);
        assert_eq!(sampler.steps_per_epoch(), 10);
    }

    #[test]
    fn two_examples_never_give_the_same_order() {
        let sampler = PairedSampler::new(2, 1, 0);
        for epoch in 0..20 {
            let (a, b) = sampler.epoch_orders(epoch);
            assert_ne!(a, b, "epoch {epoch}");
        }
    }

    #[test]
    fn normalisation_matches_hand_computation() {
        // Two 1x1x2 images: pixels 0, 255, 255, 255 -> mean 0.75, std sqrt(0.1875).
        let dataset = ImageDataset {
            images: vec![0, 255, 255, 255],
            labels: vec![0, 1],
            channels: 1,
            height: 1,
            width: 2,
            num_classes: 2,
            class_names: vec!["a".into(), "b".into()],
        };
        let norm = Normalization::of(&dataset);
        assert!((norm.mean[0] - 0.75).abs() < 1e-6);
        assert!((norm.std[0] - 0.1875f32.sqrt()).abs() < 1e-6);
        let (batch, labels) = norm.batch(&dataset, &[1, 0], &Device::flex());
        assert_eq!(labels, vec![1, 0]);
        let values: Vec<f32> = batch.into_data().iter::<f32>().collect();
        let hi = (1.0 - 0.75) / 0.1875f32.sqrt();
        let lo = (0.0 - 0.75) / 0.1875f32.sqrt();
        for (got, want) in values.iter().zip([hi, hi, lo, hi]) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
    }
}
