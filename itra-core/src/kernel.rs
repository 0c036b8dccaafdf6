//! The Gaussian kernel's ingredients: pairwise squared distances and the bandwidth.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// How the Gaussian kernel's bandwidth `sigma` is chosen, in `k(a, b) = exp(-||a - b||^2 / sigma)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Bandwidth {
    /// The median of the squared distances over all unordered pairs of the pooled batch
    /// (both batches, all classes), computed on detached values. Falls back to 1 when there are
    /// fewer than two points or the median is `<= 1e-12`.
    #[default]
    Median,
    /// A fixed `sigma`, which must be finite and positive.
    Fixed(f64),
}

impl Bandwidth {
    pub(crate) fn validate(&self) -> Result<(), String> {
        match *self {
            Bandwidth::Median => Ok(()),
            Bandwidth::Fixed(sigma) if sigma.is_finite() && sigma > 0.0 => Ok(()),
            Bandwidth::Fixed(sigma) => Err(format!("a fixed bandwidth must be finite and positive, got {sigma}")),
        }
    }
}

/// Below this the median bandwidth is degenerate and `sigma` falls back to 1.
pub(crate) const MEDIAN_FLOOR: f64 = 1e-12;

/// Median of the strictly-upper-triangular entries of a row-major `n x n` matrix.
///
/// For an even number of pairs the median is the mean of the two middle values. Returns `None`
/// for fewer than two points. Runs in expected `O(n^2)` time (selection, not sorting).
pub fn median_of_pairwise(matrix: &[f64], n: usize) -> Option<f64> {
    if n < 2 {
        return None;
    }
    debug_assert_eq!(matrix.len(), n * n);
    let mut pairs: Vec<f64> = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        pairs.extend_from_slice(&matrix[i * n + i + 1..(i + 1) * n]);
    }
    median(pairs)
}

/// The median of `values` (the mean of the two middle values for an even count), `None` when
/// empty. Expected `O(n)` time (selection, not sorting).
pub(crate) fn median(mut values: Vec<f64>) -> Option<f64> {
    let count = values.len();
    if count == 0 {
        return None;
    }
    let mid = count / 2;
    let (lower, upper_middle, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper_middle = *upper_middle;
    if count % 2 == 1 {
        return Some(upper_middle);
    }
    // The largest of the lower half is the other middle value.
    let lower_middle = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(0.5 * (lower_middle + upper_middle))
}

/// `sigma` from the median of the pairwise squared distances (`None`: fewer than two points),
/// with the fallback to 1 for a degenerate median.
pub(crate) fn sigma_from_median(median: Option<f64>) -> f64 {
    match median {
        Some(median) if median > MEDIAN_FLOOR => median,
        _ => 1.0,
    }
}

/// Resolves `sigma` from the (host copy of the) pooled squared-distance matrix.
pub(crate) fn resolve_sigma(bandwidth: Bandwidth, squared_distances: &[f64], n: usize) -> f64 {
    match bandwidth {
        Bandwidth::Fixed(sigma) => sigma,
        Bandwidth::Median => sigma_from_median(median_of_pairwise(squared_distances, n)),
    }
}

/// Squared Euclidean distances between all rows of `points`: `[n, d] -> [n, n]`.
///
/// Uses `||a||^2 + ||b||^2 - 2 a.b` (one matrix product) after centring the points on their
/// detached mean, which leaves every distance unchanged but removes the cancellation that large
/// feature magnitudes would otherwise cause. Negative rounding residue is clamped to zero.
pub(crate) fn pairwise_squared_distances(points: Tensor<2>) -> Tensor<2> {
    let mean = points.clone().detach().mean_dim(0);
    let centred = points - mean;
    let norms = centred.clone().square().sum_dim(1); // [n, 1]
    let gram = centred.clone().matmul(centred.transpose());
    (norms.clone() + norms.transpose() - gram * 2.0).clamp_min(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_and_even_pair_counts() {
        // Three points: pairs (0,1)=1, (0,2)=4, (1,2)=9 -> odd count, median 4.
        let m = [0.0, 1.0, 4.0, 1.0, 0.0, 9.0, 4.0, 9.0, 0.0];
        assert_eq!(median_of_pairwise(&m, 3), Some(4.0));
        // Four points: six pairs 1,2,3,4,5,6 -> mean of 3 and 4.
        #[rustfmt::skip]
        let m = [0.0, 1.0, 2.0, 3.0,
                 1.0, 0.0, 4.0, 5.0,
                 2.0, 4.0, 0.0, 6.0,
                 3.0, 5.0, 6.0, 0.0];
        assert_eq!(median_of_pairwise(&m, 4), Some(3.5));
        assert_eq!(median_of_pairwise(&[0.0], 1), None);
    }

    #[test]
    fn degenerate_median_falls_back_to_one() {
        let zeros = [0.0; 9];
        assert_eq!(resolve_sigma(Bandwidth::Median, &zeros, 3), 1.0);
        assert_eq!(resolve_sigma(Bandwidth::Median, &[0.0], 1), 1.0);
        assert_eq!(resolve_sigma(Bandwidth::Fixed(2.5), &zeros, 3), 2.5);
    }

    #[test]
    fn fixed_bandwidth_is_validated() {
        assert!(Bandwidth::Fixed(0.0).validate().is_err());
        assert!(Bandwidth::Fixed(f64::NAN).validate().is_err());
        assert!(Bandwidth::Fixed(1.0).validate().is_ok());
    }
}
