//! Seeded random streams and the paired `S1`/`S2` sampler of ITRA.
//!
//! **Every random choice is a pure function of `(seed, stream, epoch)`** (and, for
//! augmentation, of the example index), so a resumed run replays exactly the same orders and
//! crops without saving generator state. The streams and orders are bit-identical to those of
//! the runner's own sampler before it moved here, so earlier runs replay unchanged.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The independent random streams of a run, each derived from the run's seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Augmentation of the images of `S1` (and of single-stream training).
    AugmentFirst = 5,
    /// Augmentation of the images of `S2`, independent of `S1`'s, so that an example drawn in
    /// both batches of an epoch gets two different views.
    AugmentSecond = 6,
}

/// A generator for `stream` in `epoch`: ChaCha8 seeded with `seed`, on stream
/// `(stream << 32) | epoch`.
pub fn rng(seed: u64, stream: Stream, epoch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((stream as u64) << 32) | (epoch & 0xffff_ffff));
    rng
}

/// 32-bit words of an epoch's stream reserved for each example: the random-resized crop, the
/// greediest augmentation, draws at most 10 attempts of 4 values plus a flip.
const WORDS_PER_EXAMPLE: u32 = 10;

/// The generator for example `index` in `epoch`: the epoch's `stream`, positioned at the
/// example's own window of `2^10` words, so it does not depend on which worker thread or batch
/// the example lands in.
pub fn example_rng(seed: u64, stream: Stream, epoch: u64, index: usize) -> ChaCha8Rng {
    let mut rng = rng(seed, stream, epoch);
    rng.set_word_pos((index as u128) << WORDS_PER_EXAMPLE);
    rng
}

/// A draw of `n` of the examples whose classes are `labels`, stratified by class: each class
/// contributes `n * count_k / total` examples, rounded by largest remainder (ties to the
/// smaller class index), each class's examples chosen uniformly by `rng`. The result is in
/// ascending index order. `n >= labels.len()` returns every index.
///
/// ```python
/// quota = n * counts / total; take = floor(quota)
/// take[argsort(-(quota - take), kind="stable")[: n - take.sum()]] += 1
/// ```
pub fn stratified_draw(labels: &[usize], n: usize, rng: &mut impl rand::Rng) -> Vec<usize> {
    if n >= labels.len() {
        return (0..labels.len()).collect();
    }
    let classes = labels.iter().max().map_or(0, |&m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (index, &label) in labels.iter().enumerate() {
        members[label].push(index);
    }
    let total = labels.len();
    let mut take: Vec<usize> = members.iter().map(|m| m.len() * n / total).collect();
    let mut remainders: Vec<(usize, usize)> =
        members.iter().enumerate().map(|(k, m)| ((m.len() * n) % total, k)).collect();
    // Largest remainder first; equal remainders go to the smaller class index.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let short = n - take.iter().sum::<usize>();
    for &(_, k) in remainders.iter().take(short) {
        take[k] += 1;
    }
    let mut chosen = Vec::with_capacity(n);
    for (mut class_members, count) in members.into_iter().zip(take) {
        class_members.shuffle(rng);
        chosen.extend_from_slice(&class_members[..count]);
    }
    chosen.sort_unstable();
    chosen
}

/// A run's validation and training indices of a split whose classes are `labels`: the
/// validation split a [`stratified_draw`] of `validation` examples (stream [`Stream::Subset`],
/// epoch 0), the training set the rest, or `train_limit` of them drawn on epoch 1, both in
/// ascending order. Returns `(validation, train)`.
pub fn holdout_split(
    labels: &[usize],
    validation: usize,
    train_limit: Option<usize>,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let drawn = stratified_draw(labels, validation, &mut rng(seed, Stream::Subset, 0));
    let mut held_out = vec![false; labels.len()];
    drawn.iter().for_each(|&i| held_out[i] = true);
    let mut rest: Vec<usize> = (0..labels.len()).filter(|&i| !held_out[i]).collect();
    if let Some(limit) = train_limit.filter(|&l| l < rest.len()) {
        rest.shuffle(&mut rng(seed, Stream::Subset, 1));
        rest.truncate(limit);
        rest.sort_unstable();
    }
    (drawn, rest)
}

/// The seed Burn's own generator gets for initialisation.
pub fn init_seed(seed: u64) -> u64 {
    use rand::RngCore;
    rng(seed, Stream::Init, 0).next_u64()
}

/// Per-epoch orders of the two mini-batch streams of ITRA.
///
/// `S1` walks a fresh permutation of the training set each epoch; `S2` walks an independent
/// permutation (its own stream), so the two never pair the same examples systematically. Both
/// drop the last incomplete batch. `S2` has `S1`'s batch size unless
/// [`PairedSampler::with_second_batch_size`] says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedSampler {
    len: usize,
    batch_size: usize,
    second_batch_size: usize,
    seed: u64,
}

impl PairedSampler {
    /// # Panics
    /// If `batch_size` is 0.
    pub fn new(len: usize, batch_size: usize, seed: u64) -> Self {
        assert!(batch_size > 0, "batch size must be positive");
        PairedSampler { len, batch_size, second_batch_size: batch_size, seed }
    }

    /// # Panics
    /// If `second_batch_size` is 0.
    pub fn with_second_batch_size(mut self, second_batch_size: usize) -> Self {
        assert!(second_batch_size > 0, "second batch size must be positive");
        self.second_batch_size = second_batch_size;
        self
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn second_batch_size(&self) -> usize {
        self.second_batch_size
    }

    /// Steps per epoch: full batches of both streams.
    pub fn steps_per_epoch(&self) -> usize {
        (self.len / self.batch_size).min(self.len / self.second_batch_size)
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

    /// The indices of `S1`'s batch `step` within an epoch's first order.
    pub fn batch<'a>(&self, order: &'a [usize], step: usize) -> &'a [usize] {
        &order[step * self.batch_size..(step + 1) * self.batch_size]
    }

    /// The indices of `S2`'s batch `step` within an epoch's second order.
    pub fn second_batch<'a>(&self, order: &'a [usize], step: usize) -> &'a [usize] {
        &order[step * self.second_batch_size..(step + 1) * self.second_batch_size]
    }

    /// Every batch of `epoch` in training order, ready for a [`crate::Loader`]: `S1`'s batch of
    /// each step, followed by `S2`'s when `with_second` is set.
    pub fn epoch_requests(&self, epoch: usize, with_second: bool) -> Vec<crate::BatchRequest> {
        let (first, second) = self.epoch_orders(epoch);
        let mut requests = Vec::with_capacity(self.steps_per_epoch() * (1 + usize::from(with_second)));
        for step in 0..self.steps_per_epoch() {
            requests.push(crate::BatchRequest::new(self.batch(&first, step).to_vec(), Stream::AugmentFirst));
            if with_second {
                requests
                    .push(crate::BatchRequest::new(self.second_batch(&second, step).to_vec(), Stream::AugmentSecond));
            }
        }
        requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn orders_are_permutations_and_independent() {
        let sampler = PairedSampler::new(100, 10, 7);
        let (first, second) = sampler.epoch_orders(0);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(first, second);
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
    fn second_batch_size_drops_incomplete_batches_of_both_streams() {
        let sampler = PairedSampler::new(10, 3, 1).with_second_batch_size(4);
        assert_eq!(sampler.steps_per_epoch(), 2);
        let requests = sampler.epoch_requests(0, true);
        let sizes: Vec<_> = requests.iter().map(|r| (r.indices.len(), r.stream)).collect();
        assert_eq!(
            sizes,
            [
                (3, Stream::AugmentFirst),
                (4, Stream::AugmentSecond),
                (3, Stream::AugmentFirst),
                (4, Stream::AugmentSecond)
            ]
        );
        assert_eq!(sampler.epoch_requests(0, false).len(), 2);
    }

    #[test]
    fn orders_are_pinned() {
        // Pinned so that a change of rand, rand_chacha or the stream layout cannot silently
        // change which examples a seed trains on (the runner's earlier sampler gave the same).
        let (first, second) = PairedSampler::new(8, 2, 42).epoch_orders(3);
        assert_eq!((first, second), (PINNED_FIRST.to_vec(), PINNED_SECOND.to_vec()));
    }
    const PINNED_FIRST: [usize; 8] = [0, 7, 3, 6, 2, 4, 1, 5];
    const PINNED_SECOND: [usize; 8] = [4, 2, 0, 6, 1, 7, 3, 5];

    #[test]
    fn example_rng_depends_only_on_seed_stream_epoch_and_index() {
        let draw = |seed, stream, epoch, index| example_rng(seed, stream, epoch, index).random::<u64>();
        assert_eq!(draw(1, Stream::AugmentFirst, 2, 3), draw(1, Stream::AugmentFirst, 2, 3));
        let base = draw(1, Stream::AugmentFirst, 2, 3);
        for other in [
            draw(2, Stream::AugmentFirst, 2, 3),
            draw(1, Stream::AugmentSecond, 2, 3),
            draw(1, Stream::AugmentFirst, 3, 3),
            draw(1, Stream::AugmentFirst, 2, 4),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn stratified_draw_keeps_every_class_share_on_a_class_sorted_set() {
        // 10 classes of 100, sorted by class (as an image folder lists them): a draw of 500 by
        // position would be classes 0-4 only; stratified it is 50 of each.
        let labels: Vec<usize> = (0..1000).map(|i| i / 100).collect();
        let drawn = stratified_draw(&labels, 500, &mut rng(3, Stream::Subset, 0));
        assert_eq!(drawn.len(), 500);
        let mut counts = [0usize; 10];
        drawn.iter().for_each(|&i| counts[labels[i]] += 1);
        assert_eq!(counts, [50; 10]);
        assert!(drawn.windows(2).all(|w| w[0] < w[1]), "ascending and without repeats");
        // Seeded: the same seed draws the same examples, another seed others.
        assert_eq!(drawn, stratified_draw(&labels, 500, &mut rng(3, Stream::Subset, 0)));
        assert_ne!(drawn, stratified_draw(&labels, 500, &mut rng(4, Stream::Subset, 0)));
    }

    #[test]
    fn stratified_draw_rounds_by_largest_remainder() {
        // Classes of 5, 3 and 2 examples, n = 5: quotas 2.5, 1.5, 1.0 -> floors 2, 1, 1 with one
        // left over; the remainders 0.5, 0.5 tie, so class 0 (the smaller index) gets it: 3, 1, 1.
        let labels = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2];
        let drawn = stratified_draw(&labels, 5, &mut rng(0, Stream::Subset, 0));
        let mut counts = [0usize; 3];
        drawn.iter().for_each(|&i| counts[labels[i]] += 1);
        assert_eq!(counts, [3, 1, 1]);
        assert_eq!(stratified_draw(&labels, 99, &mut rng(0, Stream::Subset, 0)), (0..10).collect::<Vec<_>>());
        assert!(stratified_draw(&labels, 0, &mut rng(0, Stream::Subset, 0)).is_empty());
    }
}
