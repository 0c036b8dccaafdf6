//! Batch norm in training mode, ReLU and a 2x2 stride-2 max pool as one operation, on NCHW `f32`
//! slices: the small CNN's and VGG's `BN -> ReLU -> pool`.
//!
//! Apart, the three write the normalised activation, read it back to pool it, and in the backward
//! write the pool's mostly-zero gradient at full size and read it twice more. Together, each
//! `(sample, channel)` plane's activation and its gradient live in two plane-sized buffers that
//! stay in the cache: from memory the forward reads `x` (besides the statistics' passes) and writes
//! the pooled quarter; the backward reads `x` and the pooled gradient twice and writes `dx` (over
//! `x`, in [`backward_in_place`]).
//!
//! The numbers are those of [`super::norm`] followed by [`super::pool`], bit for bit: each plane
//! goes through the same plane functions in the same order, the buffers standing in for the
//! full-size tensors; where the CPU has AVX2, the pass that writes `dx` is one sweep per plane
//! that computes the same operations in registers (`pool_avx2::norm_pool_input_gradient`).

use rayon::prelude::*;

use super::buffer::par_zeroed_pieces;
use super::norm::{self, NormGeometry};
use super::pool;

/// The fused layer's input: `batch` samples of `channels` planes of `h x w`; the pool floors odd
/// sizes as `MaxPool2d` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormPoolGeometry {
    pub batch: usize,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
}

impl NormPoolGeometry {
    fn norm(&self) -> NormGeometry {
        NormGeometry { batch: self.batch, channels: self.channels, plane: self.h * self.w }
    }

    pub fn out_h(&self) -> usize {
        self.h / 2
    }

    pub fn out_w(&self) -> usize {
        self.w / 2
    }

    fn plane(&self) -> usize {
        self.h * self.w
    }

    fn plane_out(&self) -> usize {
        self.out_h() * self.out_w()
    }

    /// Plane `i`'s activation into `y` and the gradient the pool passes back into `dy`, from the
    /// plane of `x`, its channel's `(a, b)` and its pooled gradient `grad`.
    fn expand(&self, y: &mut [f32], dy: &mut [f32], x: &[f32], (a, b): (f32, f32), grad: &[f32]) {
        norm::normalize_plane(y, x, a, b, true);
        pool::max_pool_2x2_plane_backward(dy, y, grad, self.w, self.out_h(), self.out_w());
    }
}

/// The forward pass: `(pooled, mean, variance, scale, offset)`, `pooled` the 2x2 max pool of
/// `relu(scale x + offset)`, with the batch statistics of [`norm::batch_norm_train_forward`]. The
/// backward takes the scale and offset back, so that it pools exactly the forward's activation.
#[allow(clippy::type_complexity)]
pub fn forward(
    g: &NormPoolGeometry,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let stats = norm::statistics(&g.norm(), x);
    let (scale, offset) = norm::scale_offset(&stats, gamma, beta, epsilon);
    let out = par_zeroed_pieces(
        g.batch * g.channels * g.plane_out(),
        g.plane_out(),
        1,
        || vec![0.0f32; g.plane()],
        |y, i, out| {
            let c = i % g.channels;
            norm::normalize_plane(y, &x[i * g.plane()..][..g.plane()], scale[c], offset[c], true);
            pool::max_pool_2x2_plane(out, y, g.w, g.out_h(), g.out_w());
        },
    );
    let (mean, var) = norm::rounded(&stats);
    (out, mean, var, scale, offset)
}

/// The backward pass: `(dx, dgamma, dbeta)` for the pooled output's gradient `grad`, given the
/// forward's `mean`, `var`, `scale` and `offset`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &NormPoolGeometry,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    scale_offset: (&[f32], &[f32]),
    epsilon: f64,
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = x.to_vec();
    let (dgamma, dbeta) = backward_in_place(g, &mut dx, gamma, mean, var, scale_offset, epsilon, grad);
    (dx, dgamma, dbeta)
}

/// [`backward`] with `x` overwritten by its gradient: `(dgamma, dbeta)`, and no buffer the size of
/// `x` allocated.
#[allow(clippy::too_many_arguments)]
pub fn backward_in_place(
    g: &NormPoolGeometry,
    x_dx: &mut [f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    (scale, offset): (&[f32], &[f32]),
    epsilon: f64,
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (plane, plane_out) = (g.plane(), g.plane_out());
    if plane == 0 {
        return (vec![0.0; g.channels], vec![0.0; g.channels]);
    }
    let buffers = || (vec![0.0f32; plane], vec![0.0f32; plane]);
    let inv_std = norm::inverse_std(var, epsilon);
    let x: &[f32] = x_dx;
    let sums: Vec<(f64, f64)> = (0..g.channels)
        .into_par_iter()
        .map_init(buffers, |(y, dy), c| {
            let (mut dot, mut sum) = (0.0f64, 0.0f64);
            for n in 0..g.batch {
                let i = n * g.channels + c;
                let x = &x[i * plane..][..plane];
                g.expand(y, dy, x, (scale[c], offset[c]), &grad[i * plane_out..][..plane_out]);
                let (d, s) = norm::gated_dot_sum(true, x, y, dy, mean[c]);
                dot += d;
                sum += s;
            }
            (dot * inv_std[c], sum)
        })
        .collect();
    let coefficients = norm::input_gradient_coefficients(&g.norm(), &sums, &inv_std, gamma, mean);
    // Where the CPU has AVX2 and a row fills a vector, one pass per plane without the buffers.
    #[cfg(target_arch = "x86_64")]
    let avx2 = super::pool_avx2::token(g.out_w());
    x_dx.par_chunks_mut(plane).enumerate().for_each_init(buffers, |(y, dy), (i, x_dx)| {
        let c = i % g.channels;
        let grad = &grad[i * plane_out..][..plane_out];
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = avx2 {
            let (norm, coefficients) = ((scale[c], offset[c]), coefficients[c]);
            let (w, oh, ow) = (g.w, g.out_h(), g.out_w());
            return simd.vectorize(|| {
                super::pool_avx2::norm_pool_input_gradient(simd, x_dx, grad, norm, coefficients, w, oh, ow)
            });
        }
        g.expand(y, dy, x_dx, (scale[c], offset[c]), grad);
        norm::input_gradient_plane(x_dx, y, dy, coefficients[c], true);
    });
    norm::rounded(&sums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::pool::{PoolGeometry, max_pool2d_backward, max_pool2d_forward};

    /// Batch norm + ReLU, then the pool, each on its own full-size tensor.
    fn apart(g: &NormPoolGeometry, x: &[f32], gamma: &[f32], beta: &[f32], grad: &[f32]) -> [Vec<f32>; 6] {
        let ng = NormGeometry { batch: g.batch, channels: g.channels, plane: g.h * g.w };
        let pg = PoolGeometry {
            planes: g.batch * g.channels,
            h: g.h,
            w: g.w,
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
        };
        let (y, mean, var) = norm::batch_norm_train_forward(&ng, x, gamma, beta, 1e-5, true);
        let pooled = max_pool2d_forward(&pg, &y);
        let dy = max_pool2d_backward(&pg, &y, grad);
        let (dx, dgamma, dbeta) = norm::batch_norm_train_backward(&ng, x, &y, gamma, &mean, &var, 1e-5, true, &dy);
        [pooled, mean, var, dx, dgamma, dbeta]
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn fused_equals_batch_norm_then_pool_bit_for_bit() {
        // Even and odd sides (floor mode drops the last row or column), one-window planes, a
        // negative gamma (which turns the pool's arg-max around) and ties at the ReLU's zero.
        // Rows of 3 windows take the buffers, rows of 4 or more AVX2's one pass (whole vectors, an
        // overlapping last one, a column and a row outside every window).
        let cases =
            [(3, 2, 8, 6), (2, 3, 7, 9), (1, 2, 2, 3), (4, 1, 2, 2), (2, 5, 28, 28), (2, 3, 11, 13), (1, 2, 4, 16)];
        let (mut positive, mut zero) = (false, false);
        for (case, &(batch, channels, h, w)) in cases.iter().enumerate() {
            let g = NormPoolGeometry { batch, channels, h, w };
            let seed = 10 * case as u64;
            let x = crate::kernels::test_values(batch * channels * h * w, seed, -1.5, 2.5);
            let mut gamma = crate::kernels::test_values(channels, seed + 1, 0.5, 1.5);
            gamma[0] = -gamma[0];
            let beta = crate::kernels::test_values(channels, seed + 2, -0.5, 0.5);
            let grad = crate::kernels::test_values(batch * channels * g.out_h() * g.out_w(), seed + 3, -1.0, 1.0);
            let [pooled, mean, var, dx, dgamma, dbeta] = apart(&g, &x, &gamma, &beta, &grad);
            let (f_pooled, f_mean, f_var, scale, offset) = forward(&g, &x, &gamma, &beta, 1e-5);
            let (f_dx, f_dgamma, f_dbeta) = backward(&g, &x, &gamma, &f_mean, &f_var, (&scale, &offset), 1e-5, &grad);
            for (what, fused, alone) in [
                ("pooled", &f_pooled, &pooled),
                ("mean", &f_mean, &mean),
                ("variance", &f_var, &var),
                ("dx", &f_dx, &dx),
                ("dgamma", &f_dgamma, &dgamma),
                ("dbeta", &f_dbeta, &dbeta),
            ] {
                assert_eq!(bits(fused), bits(alone), "{what} of {g:?}");
            }
            positive |= pooled.iter().any(|&v| v > 0.0);
            zero |= pooled.contains(&0.0);
        }
        // Not vacuous: some windows pooled a positive value and some a ReLU zero.
        assert!(positive && zero);
    }
}
