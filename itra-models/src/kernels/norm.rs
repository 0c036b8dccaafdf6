//! Batch normalisation in training mode, optionally fused with the ReLU after it, on
//! `[batch, channels, plane...]` `f32` slices: the batch statistics in one pass per channel, the
//! normalisation in one pass, and the backward in two, with no layout transposes.
//!
//! The statistics are Burn's: the mean and the biased variance over `(batch, plane)`. Each
//! plane is summed in sixteen `f32` lanes, the planes' sums in `f64`.

use multiversion::multiversion;
use rayon::prelude::*;

use super::buffer::par_zeroed_pieces;

/// The shape of one batch norm: `batch` samples of `channels` planes of `plane` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormGeometry {
    pub batch: usize,
    pub channels: usize,
    pub plane: usize,
}

impl NormGeometry {
    fn count(&self) -> f64 {
        (self.batch * self.plane) as f64
    }

    /// The planes of channel `c`, one per sample.
    fn planes<'a>(&self, data: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
        let (channels, plane) = (self.channels, self.plane);
        (0..self.batch).map(move |n| &data[(n * channels + c) * plane..(n * channels + c + 1) * plane])
    }
}

const LANES: usize = 16;

/// `Σ f(x_i)` over a slice in `LANES` independent `f32` accumulators (which the compiler keeps
/// in vector registers), returned in `f64`; the callers add the planes' sums in `f64`.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    acc.iter().map(|&a| f64::from(a)).sum::<f64>() + f64::from(tail)
}

/// `Σ x_i` over one plane, by [`lane_sum`].
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn plane_sum(x: &[f32]) -> f64 {
    lane_sum(x, |v| v)
}

/// `Σ (x_i - m)²` over one plane, by [`lane_sum`].
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn plane_centred_square_sum(x: &[f32], m: f32) -> f64 {
    lane_sum(x, |v| (v - m) * (v - m))
}

/// `(Σ g'_i (x_i - m), Σ g'_i)` over one plane, `g'` the gradient gated by the forward output
/// when `relu` (where the output was positive), in `LANES` `f32` accumulators like [`lane_sum`],
/// in one pass with no temporary.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn gated_dot_sum(relu: bool, x: &[f32], output: &[f32], grad: &[f32], m: f32) -> (f64, f64) {
    let gate = |y: f32, g: f32| if !relu || y > 0.0 { g } else { 0.0 };
    let mut dot = [0.0f32; LANES];
    let mut sum = [0.0f32; LANES];
    let (cx, cy, cg) = (x.chunks_exact(LANES), output.chunks_exact(LANES), grad.chunks_exact(LANES));
    let (mut tail_dot, mut tail_sum) = (0.0f32, 0.0f32);
    for ((&x, &y), &g) in cx.remainder().iter().zip(cy.remainder()).zip(cg.remainder()) {
        let g = gate(y, g);
        tail_dot += g * (x - m);
        tail_sum += g;
    }
    for ((x, y), g) in cx.zip(cy).zip(cg) {
        for i in 0..LANES {
            let g = gate(y[i], g[i]);
            dot[i] += g * (x[i] - m);
            sum[i] += g;
        }
    }
    let total = |acc: &[f32; LANES], tail: f32| acc.iter().map(|&v| f64::from(v)).sum::<f64>() + f64::from(tail);
    (total(&dot, tail_dot), total(&sum, tail_sum))
}

/// The forward pass: `(output, mean, variance)`, with `output = relu?(gamma (x - mean) /
/// sqrt(variance + epsilon) + beta)`.
pub fn batch_norm_train_forward(
    g: &NormGeometry,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let stats = statistics(g, x);
    let (scale, offset) = scale_offset(&stats, gamma, beta, epsilon);
    let out = par_zeroed_pieces(
        x.len(),
        g.plane,
        1,
        || (),
        |(), i, o| {
            let x = &x[i * g.plane..][..g.plane];
            normalize_plane(o, x, scale[i % g.channels], offset[i % g.channels], relu);
        },
    );
    let (mean, var) = rounded(&stats);
    (out, mean, var)
}

/// Per channel, the batch mean and biased variance in `f64`.
pub(super) fn statistics(g: &NormGeometry, x: &[f32]) -> Vec<(f64, f64)> {
    (0..g.channels)
        .into_par_iter()
        .map(|c| {
            let mean = g.planes(x, c).map(plane_sum).sum::<f64>() / g.count();
            let m = mean as f32;
            // Two-pass variance around the f32 mean, corrected for its rounding.
            let shift = mean - f64::from(m);
            let sq = g.planes(x, c).map(|p| plane_centred_square_sum(p, m)).sum::<f64>() / g.count();
            (mean, (sq - shift * shift).max(0.0))
        })
        .collect()
}

/// Per channel, `(a, b)` of the normalisation `a x + b`.
pub(super) fn scale_offset(stats: &[(f64, f64)], gamma: &[f32], beta: &[f32], epsilon: f64) -> (Vec<f32>, Vec<f32>) {
    stats
        .iter()
        .enumerate()
        .map(|(c, &(mean, var))| {
            let scale = f64::from(gamma[c]) / (var + epsilon).sqrt();
            (scale as f32, (f64::from(beta[c]) - mean * scale) as f32)
        })
        .unzip()
}

/// The statistics as the `f32` mean and variance the forward returns.
pub(super) fn rounded(stats: &[(f64, f64)]) -> (Vec<f32>, Vec<f32>) {
    stats.iter().map(|&(mean, var)| (mean as f32, var as f32)).unzip()
}

/// `o = relu?(a x + b)` over one plane.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn normalize_plane(o: &mut [f32], x: &[f32], a: f32, b: f32, relu: bool) {
    if relu {
        o.iter_mut().zip(x).for_each(|(o, &x)| *o = (x * a + b).max(0.0));
    } else {
        o.iter_mut().zip(x).for_each(|(o, &x)| *o = x * a + b);
    }
}

/// `dx = k relu'(g) + (x - m) c2 + c1` over one plane, in place: `x_dx` holds `x` on entry and
/// `dx` on return.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn input_gradient_plane(
    x_dx: &mut [f32],
    y: &[f32],
    g: &[f32],
    (k, c2, c1, m): (f32, f32, f32, f32),
    relu: bool,
) {
    if relu {
        for ((d, &yv), &gv) in x_dx.iter_mut().zip(y).zip(g) {
            let gv = if yv > 0.0 { gv } else { 0.0 };
            *d = k * gv + (*d - m) * c2 + c1;
        }
    } else {
        for (d, &gv) in x_dx.iter_mut().zip(g) {
            *d = k * gv + (*d - m) * c2 + c1;
        }
    }
}

/// The backward pass: `(dx, dgamma, dbeta)` for the output gradient `grad`. With `relu`, the
/// gradient flows where the forward `output` was positive.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward(
    g: &NormGeometry,
    x: &[f32],
    output: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    relu: bool,
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = x.to_vec();
    let (dgamma, dbeta) = batch_norm_train_backward_in_place(g, &mut dx, output, gamma, mean, var, epsilon, relu, grad);
    (dx, dgamma, dbeta)
}

/// [`batch_norm_train_backward`] with `x` overwritten by its gradient: `(dgamma, dbeta)`, and no
/// buffer the size of `x` allocated.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward_in_place(
    g: &NormGeometry,
    x_dx: &mut [f32],
    output: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    relu: bool,
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let inv_std = inverse_std(var, epsilon);
    // Per channel: Σ g' (dbeta) and Σ g' (x - mean) / std (dgamma), g' the gated gradient.
    let x: &[f32] = x_dx;
    let sums: Vec<(f64, f64)> = (0..g.channels)
        .into_par_iter()
        .map(|c| {
            let (mut dot, mut sum) = (0.0f64, 0.0f64);
            for ((xp, yp), gp) in g.planes(x, c).zip(g.planes(output, c)).zip(g.planes(grad, c)) {
                let (d, s) = gated_dot_sum(relu, xp, yp, gp, mean[c]);
                dot += d;
                sum += s;
            }
            (dot * inv_std[c], sum)
        })
        .collect();
    if g.plane > 0 {
        let coefficients = input_gradient_coefficients(g, &sums, &inv_std, gamma, mean);
        x_dx.par_chunks_mut(g.plane).enumerate().for_each(|(i, dx)| {
            let offset = i * g.plane;
            let (yp, gp) = (&output[offset..][..g.plane], &grad[offset..][..g.plane]);
            input_gradient_plane(dx, yp, gp, coefficients[i % g.channels], relu);
        });
    }
    rounded(&sums)
}

/// Per channel, `1 / sqrt(variance + epsilon)` from the forward's `f32` variance.
pub(super) fn inverse_std(var: &[f32], epsilon: f64) -> Vec<f64> {
    var.iter().map(|&v| 1.0 / (f64::from(v) + epsilon).sqrt()).collect()
}

/// Per channel, `(k, c2, c1, mean)` of `dx = k g' + (x - mean) c2 + c1`, from the sums
/// `(dgamma, dbeta)`: `dx = k (g' - dbeta / N - x̂ dgamma / N)`, `x̂ = (x - mean) s`, `k = gamma s`.
pub(super) fn input_gradient_coefficients(
    g: &NormGeometry,
    sums: &[(f64, f64)],
    inv_std: &[f64],
    gamma: &[f32],
    mean: &[f32],
) -> Vec<(f32, f32, f32, f32)> {
    let count = g.count();
    (0..g.channels)
        .map(|c| {
            let (dgamma, dbeta) = sums[c];
            let s = inv_std[c];
            let k = f64::from(gamma[c]) * s;
            (k as f32, (-k * s * dgamma / count) as f32, (-k * dbeta / count) as f32, mean[c])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        crate::kernels::test_values(len, seed, -1.5, 2.5)
    }

    /// The scalar loss `Σ r ⊙ relu?(bn(x))`, in f64, for finite differences.
    fn loss(g: &NormGeometry, x: &[f64], gamma: &[f64], beta: &[f64], eps: f64, relu: bool, r: &[f32]) -> f64 {
        let mut total = 0.0;
        for c in 0..g.channels {
            let idx: Vec<usize> =
                (0..g.batch).flat_map(|n| (0..g.plane).map(move |p| (n * g.channels + c) * g.plane + p)).collect();
            let mean = idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64;
            let var = idx.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / idx.len() as f64;
            for &i in &idx {
                let y = gamma[c] * (x[i] - mean) / (var + eps).sqrt() + beta[c];
                total += f64::from(r[i]) * if relu { y.max(0.0) } else { y };
            }
        }
        total
    }

    #[test]
    fn forward_and_backward_match_the_definition_and_finite_differences() {
        let eps = 1e-5;
        for (case, (batch, channels, plane)) in [(3, 2, 5), (1, 3, 7), (4, 1, 1), (2, 5, 9)].into_iter().enumerate() {
            let g = NormGeometry { batch, channels, plane };
            let n = batch * channels * plane;
            let x = values(n, case as u64);
            let gamma = values(channels, 10 + case as u64);
            let beta = values(channels, 20 + case as u64);
            let r = values(n, 30 + case as u64);
            for relu in [false, true] {
                let (out, mean, var) = batch_norm_train_forward(&g, &x, &gamma, &beta, eps, relu);
                let (dx, dgamma, dbeta) = batch_norm_train_backward(&g, &x, &out, &gamma, &mean, &var, eps, relu, &r);
                let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
                let gamma64: Vec<f64> = gamma.iter().map(|&v| f64::from(v)).collect();
                let beta64: Vec<f64> = beta.iter().map(|&v| f64::from(v)).collect();
                // The forward, through the loss with one-hot weights, element by element.
                let base = loss(&g, &x64, &gamma64, &beta64, eps, relu, &r);
                let h = 1e-6;
                let check = |what: &str, got: f32, plus: f64, minus: f64| {
                    let want = (plus - minus) / (2.0 * h);
                    assert!(
                        (f64::from(got) - want).abs() < 2e-3 * (1.0 + want.abs()),
                        "{what} {g:?} relu={relu}: kernel {got}, finite difference {want}"
                    );
                };
                for i in 0..n {
                    let (mut p, mut m) = (x64.clone(), x64.clone());
                    p[i] += h;
                    m[i] -= h;
                    check(
                        "dx",
                        dx[i],
                        loss(&g, &p, &gamma64, &beta64, eps, relu, &r),
                        loss(&g, &m, &gamma64, &beta64, eps, relu, &r),
                    );
                }
                for c in 0..channels {
                    let (mut p, mut m) = (gamma64.clone(), gamma64.clone());
                    p[c] += h;
                    m[c] -= h;
                    check(
                        "dgamma",
                        dgamma[c],
                        loss(&g, &x64, &p, &beta64, eps, relu, &r),
                        loss(&g, &x64, &m, &beta64, eps, relu, &r),
                    );
                    let (mut p, mut m) = (beta64.clone(), beta64.clone());
                    p[c] += h;
                    m[c] -= h;
                    check(
                        "dbeta",
                        dbeta[c],
                        loss(&g, &x64, &gamma64, &p, eps, relu, &r),
                        loss(&g, &x64, &gamma64, &m, eps, relu, &r),
                    );
                }
                let weighted: f64 = out.iter().zip(&r).map(|(o, r)| f64::from(*o) * f64::from(*r)).sum();
                assert!((weighted - base).abs() < 1e-4 * (1.0 + base.abs()), "forward {g:?}: {weighted} vs {base}");
            }
        }
    }
}
