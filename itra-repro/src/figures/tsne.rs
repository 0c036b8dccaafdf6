//! Exact t-SNE (van der Maaten and Hinton 2008), used for Figure 3's 2-D maps of test features.
//!
//! The method is the one in the paper's reference: Gaussian conditional affinities whose
//! bandwidths are found by binary search to match a perplexity, symmetrised into a joint `P`;
//! Student-t affinities `Q` in the plane; gradient descent on `KL(P || Q)` with momentum 0.5 then
//! 0.8, per-coordinate gains and early exaggeration of `P`.
//!
//! It is exact, so memory and time grow as n^2: a few thousand points (take a stratified subsample
//! of the test set) is the intended size, and [`MAX_POINTS`] is the hard limit. It is a crate-local
//! implementation rather than `bhtsne` because that crate seeds its random initialisation from the
//! thread RNG and pulls in rayon and two FFT crates; Figure 3 has to be reproducible from a seed.
//! Everything is sequential `f64` arithmetic, so one input and seed give bit-identical output.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// t-SNE needs at least this many points: with fewer there is no perplexity that leaves room
/// for the `3 * perplexity <= n - 1` neighbours the bandwidth search needs.
pub const MIN_POINTS: usize = 4;

/// Largest input accepted. Two `n x n` `f64` matrices are held (`P` and the Student-t kernel),
/// 400 MB at this size; subsample the points before going anywhere near it.
pub const MAX_POINTS: usize = 5_000;

/// The binary search stops once the row entropy (in nats) is this close to `ln(perplexity)`.
const ENTROPY_TOLERANCE: f64 = 1e-10;
const MAX_BISECTION_STEPS: usize = 200;
/// Per-coordinate gains never shrink below this (van der Maaten's `min_gain`).
const MIN_GAIN: f64 = 0.01;
/// Standard deviation of the random initial embedding, as in the reference implementation.
const INIT_STD: f64 = 1e-4;
/// How often [`tsne_with_report`] records the KL divergence, in iterations.
const KL_TRACE_EVERY: usize = 50;
/// Floor on `P` and `Q` inside the KL divergence, so that `0 * ln 0` terms stay finite.
const KL_FLOOR: f64 = 1e-12;

/// Step size of the gradient descent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum LearningRate {
    /// `max(n / early_exaggeration / 4, 50)` (Belkina et al. 2019; scikit-learn's `"auto"`).
    Auto,
    /// A fixed step; 200 is the classic default.
    Fixed(f64),
}

impl LearningRate {
    /// The step used for `n` points.
    pub fn resolve(self, n: usize, early_exaggeration: f64) -> f64 {
        match self {
            Self::Auto => (n as f64 / early_exaggeration / 4.0).max(50.0),
            Self::Fixed(rate) => rate,
        }
    }
}

/// Hyperparameters of [`tsne`]. The defaults are the paper reference's (and scikit-learn's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TsneConfig {
    /// Effective number of neighbours each point's Gaussian covers. Must satisfy
    /// `3 * perplexity <= n - 1`.
    pub perplexity: f64,
    /// Gradient-descent iterations in total, exaggerated ones included.
    pub iterations: usize,
    pub learning_rate: LearningRate,
    /// Factor on `P` during the first `exaggeration_iterations` iterations (which also use
    /// momentum 0.5 instead of 0.8).
    pub early_exaggeration: f64,
    pub exaggeration_iterations: usize,
    /// Seeds the Gaussian initial embedding (ChaCha8).
    pub seed: u64,
}

impl Default for TsneConfig {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            iterations: 1000,
            learning_rate: LearningRate::Auto,
            early_exaggeration: 12.0,
            exaggeration_iterations: 250,
            seed: 0,
        }
    }
}

impl TsneConfig {
    /// Checks the hyperparameters against each other and against `n` points.
    pub fn validate(&self, n: usize) -> Result<(), TsneError> {
        if n < MIN_POINTS {
            return Err(TsneError::TooFewPoints { n });
        }
        if n > MAX_POINTS {
            return Err(TsneError::TooManyPoints { n, max: MAX_POINTS });
        }
        if !(self.perplexity.is_finite() && self.perplexity >= 1.0) {
            return Err(TsneError::InvalidConfig {
                field: "perplexity",
                value: self.perplexity,
                expected: "a finite number of at least 1",
            });
        }
        if !(self.early_exaggeration.is_finite() && self.early_exaggeration >= 1.0) {
            return Err(TsneError::InvalidConfig {
                field: "early_exaggeration",
                value: self.early_exaggeration,
                expected: "a finite number of at least 1",
            });
        }
        if let LearningRate::Fixed(rate) = self.learning_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(TsneError::InvalidConfig {
                field: "learning_rate",
                value: rate,
                expected: "a finite positive number",
            });
        }
        let max_perplexity = (n - 1) as f64 / 3.0;
        if self.perplexity > max_perplexity {
            return Err(TsneError::PerplexityTooLarge { perplexity: self.perplexity, n, max: max_perplexity });
        }
        Ok(())
    }
}

/// Why [`tsne`] refused its input or failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TsneError {
    #[error("t-sne needs at least {MIN_POINTS} points, got {n}")]
    TooFewPoints { n: usize },
    #[error(
        "exact t-sne takes n^2 memory and time and accepts at most {max} points, got {n}; \
         subsample the points first"
    )]
    TooManyPoints { n: usize, max: usize },
    #[error("perplexity {perplexity} is too large for {n} points: at most (n - 1) / 3 = {max:.3}")]
    PerplexityTooLarge { perplexity: f64, n: usize, max: f64 },
    #[error("invalid t-sne config: {field} is {value}, expected {expected}")]
    InvalidConfig { field: &'static str, value: f64, expected: &'static str },
    #[error("point {index} has {found} coordinates, expected {expected} like point 0")]
    RaggedInput { index: usize, found: usize, expected: usize },
    #[error("flat input of length {len} is not a whole number of points of dimension {dim}")]
    FlatLengthMismatch { len: usize, dim: usize },
    #[error("points have no coordinates (dimension 0)")]
    ZeroDimension,
    #[error("coordinate {coord} of point {index} is {value}, t-sne needs finite input")]
    NonFinite { index: usize, coord: usize, value: f32 },
    #[error("t-sne diverged at iteration {iteration}: the embedding became non-finite")]
    Diverged { iteration: usize },
}

/// An embedding with a record of how the optimisation went, for provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TsneReport {
    /// One 2-D point per input point, in input order, centred on the origin.
    pub embedding: Vec<[f64; 2]>,
    /// `(iterations done, KL(P || Q))` every 50 iterations and after the last, always against
    /// the un-exaggerated `P`.
    pub kl_trace: Vec<(usize, f64)>,
    /// The step size actually used (resolves [`LearningRate::Auto`]).
    pub learning_rate: f64,
}

impl TsneReport {
    /// KL divergence of the final embedding (`NaN` if no iteration ran).
    pub fn final_kl(&self) -> f64 {
        self.kl_trace.last().map_or(f64::NAN, |&(_, kl)| kl)
    }
}

/// Embeds `points` (all of one dimension) into the plane. Deterministic given `config.seed`.
pub fn tsne(points: &[Vec<f32>], config: &TsneConfig) -> Result<Vec<[f64; 2]>, TsneError> {
    Ok(tsne_with_report(points, config)?.embedding)
}

/// [`tsne`] on a row-major `[n, dim]` buffer, the layout a Burn tensor's `to_vec` gives.
pub fn tsne_flat(data: &[f32], dim: usize, config: &TsneConfig) -> Result<Vec<[f64; 2]>, TsneError> {
    Ok(run(data, dim, config, KL_TRACE_EVERY)?.embedding)
}

/// [`tsne`], also returning the KL divergence along the way.
pub fn tsne_with_report(points: &[Vec<f32>], config: &TsneConfig) -> Result<TsneReport, TsneError> {
    if points.len() < MIN_POINTS {
        return Err(TsneError::TooFewPoints { n: points.len() });
    }
    let dim = points[0].len();
    if let Some((index, point)) = points.iter().enumerate().find(|(_, p)| p.len() != dim) {
        return Err(TsneError::RaggedInput { index, found: point.len(), expected: dim });
    }
    run(&points.concat(), dim, config, KL_TRACE_EVERY)
}

fn run(data: &[f32], dim: usize, config: &TsneConfig, kl_every: usize) -> Result<TsneReport, TsneError> {
    if dim == 0 {
        return Err(TsneError::ZeroDimension);
    }
    if !data.len().is_multiple_of(dim) {
        return Err(TsneError::FlatLengthMismatch { len: data.len(), dim });
    }
    let n = data.len() / dim;
    config.validate(n)?;
    if let Some(flat_index) = data.iter().position(|v| !v.is_finite()) {
        return Err(TsneError::NonFinite { index: flat_index / dim, coord: flat_index % dim, value: data[flat_index] });
    }

    let joint_p = joint_affinities(&squared_distances(data, dim), n, config.perplexity);
    let learning_rate = config.learning_rate.resolve(n, config.early_exaggeration);

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut embedding: Vec<f64> = (0..2 * n).map(|_| INIT_STD * standard_normal(&mut rng)).collect();
    let mut update = vec![0.0; 2 * n];
    let mut gains = vec![1.0; 2 * n];
    let mut gradient = vec![0.0; 2 * n];
    let mut kernel = vec![0.0; n * n];
    let mut kl_trace = Vec::new();

    for iteration in 0..config.iterations {
        let exaggerating = iteration < config.exaggeration_iterations;
        let exaggeration = if exaggerating { config.early_exaggeration } else { 1.0 };
        let momentum = if exaggerating { 0.5 } else { 0.8 };

        let kernel_sum = student_t_kernel(&embedding, n, &mut kernel);
        // dC/dy_i = 4 sum_j (p_ij - q_ij) (1 + |y_i - y_j|^2)^-1 (y_i - y_j)
        for i in 0..n {
            let (xi, yi) = (embedding[2 * i], embedding[2 * i + 1]);
            let (mut gx, mut gy) = (0.0, 0.0);
            let p_row = &joint_p[i * n..(i + 1) * n];
            let kernel_row = &kernel[i * n..(i + 1) * n];
            for j in 0..n {
                let weight = (exaggeration * p_row[j] - kernel_row[j] / kernel_sum) * kernel_row[j];
                gx += weight * (xi - embedding[2 * j]);
                gy += weight * (yi - embedding[2 * j + 1]);
            }
            gradient[2 * i] = 4.0 * gx;
            gradient[2 * i + 1] = 4.0 * gy;
        }

        // Jacobs' (1988) delta-bar-delta gains, as in the reference implementation: grow a
        // coordinate's step while the gradient keeps opposing the last update.
        for k in 0..2 * n {
            gains[k] = f64::max(
                if (gradient[k] > 0.0) != (update[k] > 0.0) { gains[k] + 0.2 } else { gains[k] * 0.8 },
                MIN_GAIN,
            );
            update[k] = momentum * update[k] - learning_rate * gains[k] * gradient[k];
            embedding[k] += update[k];
        }
        center(&mut embedding, n);
        if embedding.iter().any(|v| !v.is_finite()) {
            return Err(TsneError::Diverged { iteration });
        }

        let done = iteration + 1;
        if done.is_multiple_of(kl_every) || done == config.iterations {
            kl_trace.push((done, kl_divergence(&joint_p, &embedding, n, &mut kernel)));
        }
    }

    Ok(TsneReport { embedding: embedding.chunks_exact(2).map(|c| [c[0], c[1]]).collect(), kl_trace, learning_rate })
}

/// Row-major `n x n` squared Euclidean distances.
fn squared_distances(data: &[f32], dim: usize) -> Vec<f64> {
    let n = data.len() / dim;
    let mut distances = vec![0.0; n * n];
    for i in 0..n {
        let a = &data[i * dim..(i + 1) * dim];
        for j in i + 1..n {
            let b = &data[j * dim..(j + 1) * dim];
            let d: f64 = a
                .iter()
                .zip(b)
                .map(|(&u, &v)| {
                    let diff = f64::from(u) - f64::from(v);
                    diff * diff
                })
                .sum();
            distances[i * n + j] = d;
            distances[j * n + i] = d;
        }
    }
    distances
}

/// Outcome of one row's bandwidth search.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))] // read by the tests only
struct RowFit {
    /// Precision `1 / (2 sigma_i^2)` of the Gaussian.
    beta: f64,
    /// Entropy of the row's conditional distribution, in nats.
    entropy: f64,
}

/// Fills `probs` with `p_{j|i}` (zero at `i`), searching the Gaussian precision so that the
/// row's entropy is `ln(perplexity)`.
fn calibrate_row(sq_distances: &[f64], i: usize, target_entropy: f64, probs: &mut [f64]) -> RowFit {
    let others = || sq_distances.iter().enumerate().filter(move |&(j, _)| j != i);
    // Shifting by the nearest distance leaves p_{j|i} unchanged and keeps exp() from underflowing
    // to an all-zero row when distances are large.
    let nearest = others().map(|(_, &d)| d).fold(f64::INFINITY, f64::min);
    let mean_excess = others().map(|(_, &d)| d - nearest).sum::<f64>() / (probs.len() - 1) as f64;
    let mut beta = if mean_excess > 0.0 { 1.0 / mean_excess } else { 1.0 };
    let (mut low, mut high) = (0.0, f64::INFINITY);
    let mut entropy = f64::NAN;
    for _ in 0..MAX_BISECTION_STEPS {
        entropy = row_entropy(sq_distances, i, nearest, beta, probs);
        let excess = entropy - target_entropy;
        if excess.abs() < ENTROPY_TOLERANCE {
            break;
        }
        // Entropy falls as beta (the precision) rises.
        if excess > 0.0 {
            low = beta;
            beta = if high.is_finite() { (beta + high) / 2.0 } else { beta * 2.0 };
        } else {
            high = beta;
            beta = (beta + low) / 2.0;
        }
    }
    RowFit { beta, entropy }
}

/// Normalised `p_{j|i}` for precision `beta` into `probs`; returns their entropy in nats.
fn row_entropy(sq_distances: &[f64], i: usize, nearest: f64, beta: f64, probs: &mut [f64]) -> f64 {
    let mut total = 0.0;
    let mut weighted = 0.0;
    for (j, (&d, p)) in sq_distances.iter().zip(probs.iter_mut()).enumerate() {
        *p = if j == i { 0.0 } else { (-beta * (d - nearest)).exp() };
        total += *p;
        weighted += (d - nearest) * *p;
    }
    for p in probs.iter_mut() {
        *p /= total;
    }
    // H = -sum p ln p with p = exp(-beta e) / Z  =>  H = ln Z + beta E[e]
    total.ln() + beta * weighted / total
}

/// Symmetrised joint affinities `p_ij = (p_{j|i} + p_{i|j}) / 2n`, row-major `n x n`.
fn joint_affinities(sq_distances: &[f64], n: usize, perplexity: f64) -> Vec<f64> {
    let target_entropy = perplexity.ln();
    let mut conditional = vec![0.0; n * n];
    for i in 0..n {
        calibrate_row(&sq_distances[i * n..(i + 1) * n], i, target_entropy, &mut conditional[i * n..(i + 1) * n]);
    }
    let mut joint = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            joint[i * n + j] = (conditional[i * n + j] + conditional[j * n + i]) / (2 * n) as f64;
        }
    }
    joint
}

/// Fills `kernel` with `(1 + |y_i - y_j|^2)^-1` (zero diagonal) and returns its sum, the
/// normaliser of `Q`.
fn student_t_kernel(embedding: &[f64], n: usize, kernel: &mut [f64]) -> f64 {
    let mut sum = 0.0;
    for i in 0..n {
        kernel[i * n + i] = 0.0;
        for j in i + 1..n {
            let dx = embedding[2 * i] - embedding[2 * j];
            let dy = embedding[2 * i + 1] - embedding[2 * j + 1];
            let value = 1.0 / (1.0 + dx * dx + dy * dy);
            kernel[i * n + j] = value;
            kernel[j * n + i] = value;
            sum += 2.0 * value;
        }
    }
    sum
}

/// `KL(P || Q) = sum_ij p_ij ln(p_ij / q_ij)`.
fn kl_divergence(joint_p: &[f64], embedding: &[f64], n: usize, kernel: &mut [f64]) -> f64 {
    let kernel_sum = student_t_kernel(embedding, n, kernel);
    let mut kl = 0.0;
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let p = joint_p[i * n + j].max(KL_FLOOR);
                let q = (kernel[i * n + j] / kernel_sum).max(KL_FLOOR);
                kl += p * (p / q).ln();
            }
        }
    }
    kl
}

fn center(embedding: &mut [f64], n: usize) {
    for axis in 0..2 {
        let mean = embedding.iter().skip(axis).step_by(2).sum::<f64>() / n as f64;
        for v in embedding.iter_mut().skip(axis).step_by(2) {
            *v -= mean;
        }
    }
}

/// Box-Muller; `rand` 0.9 itself has no normal distribution and `rand_distr` is not needed
/// for one draw per coordinate.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1], keeps ln finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `clusters` isotropic Gaussian blobs of `per_cluster` points in `dim` dimensions, centres
    /// `spacing` apart along distinct axes, unit standard deviation. Returns points and labels.
    fn blobs(clusters: usize, per_cluster: usize, dim: usize, spacing: f32) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut points = Vec::new();
        let mut labels = Vec::new();
        for cluster in 0..clusters {
            for _ in 0..per_cluster {
                let mut point: Vec<f32> = (0..dim).map(|_| standard_normal(&mut rng) as f32).collect();
                point[cluster] += spacing;
                points.push(point);
                labels.push(cluster);
            }
        }
        (points, labels)
    }

    fn fast_config(perplexity: f64, iterations: usize) -> TsneConfig {
        TsneConfig { perplexity, iterations, exaggeration_iterations: iterations / 4, ..TsneConfig::default() }
    }

    fn distance(a: [f64; 2], b: [f64; 2]) -> f64 {
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
    }

    /// Mean silhouette coefficient (Rousseeuw 1987) of a labelled 2-D point set.
    fn silhouette(points: &[[f64; 2]], labels: &[usize]) -> f64 {
        let clusters = labels.iter().max().unwrap() + 1;
        let mut total = 0.0;
        for (i, &p) in points.iter().enumerate() {
            let mut sums = vec![0.0; clusters];
            let mut counts = vec![0usize; clusters];
            for (j, &q) in points.iter().enumerate() {
                if i != j {
                    sums[labels[j]] += distance(p, q);
                    counts[labels[j]] += 1;
                }
            }
            let own = sums[labels[i]] / counts[labels[i]] as f64;
            let nearest_other = (0..clusters)
                .filter(|&c| c != labels[i])
                .map(|c| sums[c] / counts[c] as f64)
                .fold(f64::INFINITY, f64::min);
            total += (nearest_other - own) / own.max(nearest_other);
        }
        total / points.len() as f64
    }

    // Reference (scikit-learn):
    //   Y = TSNE(perplexity=10, init="random", method="exact").fit_transform(X)
    //   silhouette_score(Y, labels) > 0.7; every point's 5 nearest neighbours share its label
    #[test]
    fn separated_clusters_stay_separated() {
        let (points, labels) = blobs(3, 40, 20, 12.0);
        let embedding = tsne(&points, &fast_config(10.0, 400)).unwrap();
        assert_eq!(embedding.len(), points.len());

        for (i, &p) in embedding.iter().enumerate() {
            let mut others: Vec<(f64, usize)> = embedding
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, &q)| (distance(p, q), labels[j]))
                .collect();
            others.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                others[..5].iter().all(|&(_, label)| label == labels[i]),
                "point {i} (cluster {}) has a foreign neighbour among its 5 nearest",
                labels[i]
            );
        }
        let score = silhouette(&embedding, &labels);
        assert!(score > 0.7, "silhouette {score}");
    }

    // Reference (scikit-learn): sklearn.manifold._utils._binary_search_perplexity(D, 30, 0)
    // returns rows P_i with -sum_j P_ij ln P_ij == ln(30) to within its tolerance 1e-5.
    #[test]
    fn bandwidth_search_hits_target_entropy_for_every_row() {
        let (points, _) = blobs(3, 40, 20, 12.0);
        let n = points.len();
        let distances = squared_distances(&points.concat(), 20);
        for perplexity in [5.0, 30.0] {
            let target: f64 = f64::ln(perplexity);
            let mut probs = vec![0.0; n];
            for i in 0..n {
                let fit = calibrate_row(&distances[i * n..(i + 1) * n], i, target, &mut probs);
                // Recompute the entropy from the probabilities, independently of the shortcut
                // formula the search uses.
                let entropy: f64 = probs.iter().filter(|&&p| p > 0.0).map(|&p| -p * p.ln()).sum();
                assert!((entropy - target).abs() < 1e-5, "row {i}: {entropy} vs {target}");
                assert!((fit.entropy - target).abs() < 1e-5);
                assert!(fit.beta.is_finite() && fit.beta > 0.0);
                assert_eq!(probs[i], 0.0);
                assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn joint_affinities_are_symmetric_and_sum_to_one() {
        let (points, _) = blobs(2, 10, 5, 6.0);
        let n = points.len();
        let joint = joint_affinities(&squared_distances(&points.concat(), 5), n, 5.0);
        assert!((joint.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for i in 0..n {
            assert_eq!(joint[i * n + i], 0.0);
            for j in 0..n {
                assert_eq!(joint[i * n + j], joint[j * n + i]);
            }
        }
    }

    #[test]
    fn kl_divergence_decreases_over_iterations() {
        let (points, _) = blobs(3, 20, 10, 8.0);
        let config =
            TsneConfig { perplexity: 8.0, iterations: 200, exaggeration_iterations: 50, ..TsneConfig::default() };
        let report = run(&points.concat(), 10, &config, 10).unwrap();
        let trace: Vec<f64> = report.kl_trace.iter().map(|&(_, kl)| kl).collect();
        assert_eq!(report.kl_trace.len(), 20);
        assert_eq!(report.kl_trace.last().unwrap().0, 200);
        assert!(trace.iter().all(|kl| kl.is_finite() && *kl >= 0.0));
        assert!(report.final_kl() < 0.5 * trace[0], "KL went from {} to {}", trace[0], report.final_kl());
        // After the exaggeration phase, plain momentum descent on KL: no step may go up by more
        // than rounding noise.
        for pair in trace[5..].windows(2) {
            assert!(pair[1] <= pair[0] + 1e-6, "KL rose: {pair:?}");
        }
    }

    #[test]
    fn same_input_and_seed_give_identical_output() {
        let (points, _) = blobs(2, 15, 6, 5.0);
        let config = fast_config(5.0, 60);
        let first = tsne(&points, &config).unwrap();
        let second = tsne(&points, &config).unwrap();
        assert_eq!(first, second);
        let flat = tsne_flat(&points.concat(), 6, &config).unwrap();
        assert_eq!(first, flat);
        let reseeded = tsne(&points, &TsneConfig { seed: 1, ..config }).unwrap();
        assert_ne!(first, reseeded);
    }

    #[test]
    fn embedding_is_centred_and_finite() {
        let (points, _) = blobs(2, 10, 4, 5.0);
        let embedding = tsne(&points, &fast_config(3.0, 40)).unwrap();
        assert!(embedding.iter().flatten().all(|v| v.is_finite()));
        for axis in 0..2 {
            let mean: f64 = embedding.iter().map(|p| p[axis]).sum::<f64>() / 20.0;
            assert!(mean.abs() < 1e-9);
        }
    }

    #[test]
    fn duplicate_points_do_not_break_the_search() {
        let mut points = vec![vec![1.0_f32, 2.0]; 12];
        points.extend(vec![vec![5.0_f32, -3.0]; 12]);
        let embedding = tsne(&points, &fast_config(3.0, 40)).unwrap();
        assert!(embedding.iter().flatten().all(|v| v.is_finite()));
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let config = TsneConfig::default();
        let three = vec![vec![0.0_f32; 2]; 3];
        assert_eq!(tsne(&three, &config), Err(TsneError::TooFewPoints { n: 3 }));
        assert_eq!(tsne(&[], &config), Err(TsneError::TooFewPoints { n: 0 }));

        let twenty = vec![vec![0.5_f32; 2]; 20];
        assert!(matches!(tsne(&twenty, &config), Err(TsneError::PerplexityTooLarge { n: 20, .. })));

        let mut nan = blobs(1, 10, 3, 0.0).0;
        nan[4][2] = f32::NAN;
        let small = fast_config(2.0, 5);
        assert!(matches!(tsne(&nan, &small), Err(TsneError::NonFinite { index: 4, coord: 2, .. })));
        nan[4][2] = f32::NEG_INFINITY;
        assert!(matches!(tsne(&nan, &small), Err(TsneError::NonFinite { index: 4, .. })));

        let mut ragged = vec![vec![0.0_f32; 3]; 10];
        ragged[6].pop();
        assert_eq!(tsne(&ragged, &small), Err(TsneError::RaggedInput { index: 6, found: 2, expected: 3 }));
        assert_eq!(tsne(&vec![vec![]; 10], &small), Err(TsneError::ZeroDimension));
        assert_eq!(tsne_flat(&[0.0; 10], 3, &small), Err(TsneError::FlatLengthMismatch { len: 10, dim: 3 }));
        assert_eq!(tsne_flat(&[0.0; 10], 0, &small), Err(TsneError::ZeroDimension));
        assert!(matches!(tsne_flat(&vec![0.0; MAX_POINTS + 1], 1, &small), Err(TsneError::TooManyPoints { .. })));

        let points = blobs(1, 10, 3, 0.0).0;
        for bad in [
            TsneConfig { perplexity: f64::NAN, ..small.clone() },
            TsneConfig { perplexity: 0.5, ..small.clone() },
            TsneConfig { early_exaggeration: 0.0, ..small.clone() },
            TsneConfig { learning_rate: LearningRate::Fixed(-1.0), ..small.clone() },
            TsneConfig { learning_rate: LearningRate::Fixed(f64::INFINITY), ..small.clone() },
        ] {
            assert!(matches!(tsne(&points, &bad), Err(TsneError::InvalidConfig { .. })));
        }
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(TsneError::TooFewPoints { n: 3 }.to_string(), "t-sne needs at least 4 points, got 3");
        assert_eq!(
            TsneError::PerplexityTooLarge { perplexity: 30.0, n: 20, max: 19.0 / 3.0 }.to_string(),
            "perplexity 30 is too large for 20 points: at most (n - 1) / 3 = 6.333"
        );
    }

    #[test]
    fn auto_learning_rate_follows_n() {
        assert_eq!(LearningRate::Auto.resolve(100, 12.0), 50.0);
        assert_eq!(LearningRate::Auto.resolve(4800, 12.0), 100.0);
        assert_eq!(LearningRate::Fixed(200.0).resolve(4800, 12.0), 200.0);
    }
}
