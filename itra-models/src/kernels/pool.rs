//! 2-D max pooling on NCHW `f32` slices (dilation 1, floor mode, padding that never wins), forward
//! and backward, parallel over the `(sample, channel)` planes.
//!
//! The backward recomputes each window's arg-max from the input instead of keeping an index
//! tensor: the first maximum in row-major window order, with NaN winning, as PyTorch's CPU kernel.

use multiversion::multiversion;
use rayon::prelude::*;

/// The shape of one max pool: `planes` input planes of `h x w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl PoolGeometry {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.padding[0] - self.kernel[0]) / self.stride[0] + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.padding[1] - self.kernel[1]) / self.stride[1] + 1
    }

    /// Whether the pool is well formed: positive kernel and stride, the kernel inside the padded
    /// input, and padding at most half the kernel (so that every window holds an input value).
    pub fn is_valid(&self) -> bool {
        (0..2).all(|i| {
            let extent = [self.h, self.w][i];
            self.kernel[i] > 0
                && self.stride[i] > 0
                && 2 * self.padding[i] <= self.kernel[i]
                && extent + 2 * self.padding[i] >= self.kernel[i]
        })
    }

    /// The input rows (or columns) `[lo, hi)` of output row `o` along axis `axis`.
    fn window(&self, axis: usize, o: usize) -> (usize, usize) {
        let extent = [self.h, self.w][axis];
        let start = o * self.stride[axis];
        let lo = start.saturating_sub(self.padding[axis]);
        let hi = (start + self.kernel[axis]).saturating_sub(self.padding[axis]).min(extent);
        (lo, hi)
    }
}

/// The offset in the plane of the window's maximum: the first in row-major order, NaN winning.
#[inline(always)]
fn arg_max(plane: &[f32], w: usize, (y0, y1): (usize, usize), (x0, x1): (usize, usize)) -> usize {
    let mut best = y0 * w + x0;
    let mut max = plane[best];
    if max.is_nan() {
        return best;
    }
    for y in y0..y1 {
        for (x, &v) in plane[y * w + x0..y * w + x1].iter().enumerate() {
            if v > max || v.is_nan() {
                max = v;
                best = y * w + x0 + x;
                if v.is_nan() {
                    return best;
                }
            }
        }
    }
    best
}

/// All ones where `keep`, else zero: a select by bit mask, which compiles to vector logic
/// instead of the branches a data-dependent `if` becomes (mispredicted on random data).
#[inline(always)]
fn mask(keep: bool) -> u32 {
    0u32.wrapping_sub(u32::from(keep))
}

/// `if pick_later { later } else { earlier }`, branch-free.
#[inline(always)]
fn select(pick_later: bool, earlier: f32, later: f32) -> f32 {
    let m = mask(pick_later);
    f32::from_bits((later.to_bits() & m) | (earlier.to_bits() & !m))
}

/// `value` where `keep`, else `+0.0`, branch-free.
#[inline(always)]
fn keep(keep: bool, value: f32) -> f32 {
    f32::from_bits(value.to_bits() & mask(keep))
}

/// Whether `later`, which follows `earlier` in row-major window order, takes the maximum from it:
/// strictly greater, or NaN where `earlier` is not. A tournament of this choice keeps the first
/// maximum and the first NaN, as [`arg_max`].
#[inline(always)]
fn later_wins(earlier: f32, later: f32) -> bool {
    !earlier.is_nan() & ((later > earlier) | later.is_nan())
}

/// The maximum of a 2x2 window `[a, b]` over `[c, d]`, and which of the four (row-major) won:
/// `(value, right_of_its_pair, bottom_pair)`. Branch-free, so the 2x2 loops vectorise.
#[inline(always)]
fn max4(a: f32, b: f32, c: f32, d: f32) -> (f32, bool, bool, bool) {
    let top_b = later_wins(a, b);
    let top = select(top_b, a, b);
    let bottom_d = later_wins(c, d);
    let bottom = select(bottom_d, c, d);
    let bottom_wins = later_wins(top, bottom);
    (select(bottom_wins, top, bottom), top_b, bottom_d, bottom_wins)
}

/// The 2x2 pool of one plane into `out` (`oh x ow`): in AVX2 where the CPU has it and a row
/// fills a vector, else the compiled loop below.
pub(super) fn max_pool_2x2_plane(out: &mut [f32], plane: &[f32], w: usize, oh: usize, ow: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = super::pool_avx2::token(ow) {
        return simd.vectorize(|| super::pool_avx2::plane(simd, out, plane, w, oh, ow));
    }
    max_pool_2x2_plane_loop(out, plane, w, oh, ow);
}

#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn max_pool_2x2_plane_loop(out: &mut [f32], plane: &[f32], w: usize, oh: usize, ow: usize) {
    for (oy, out) in out.chunks_exact_mut(ow).take(oh).enumerate() {
        let top = &plane[2 * oy * w..][..2 * ow];
        let bottom = &plane[(2 * oy + 1) * w..][..2 * ow];
        for ((o, t), b) in out.iter_mut().zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2)) {
            *o = max4(t[0], t[1], b[0], b[1]).0;
        }
    }
}

/// Writes the whole of the plane's `dx`: each window's gradient at its arg-max, zero elsewhere
/// (windows do not overlap), and zero in the last row and column that floor mode leaves out. In
/// AVX2 where the CPU has it and a row fills a vector, else the compiled loop below.
pub(super) fn max_pool_2x2_plane_backward(dx: &mut [f32], plane: &[f32], grad: &[f32], w: usize, oh: usize, ow: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = super::pool_avx2::token(ow) {
        return simd.vectorize(|| super::pool_avx2::plane_backward(simd, dx, plane, grad, w, oh, ow));
    }
    max_pool_2x2_plane_backward_loop(dx, plane, grad, w, oh, ow);
}

#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn max_pool_2x2_plane_backward_loop(dx: &mut [f32], plane: &[f32], grad: &[f32], w: usize, oh: usize, ow: usize) {
    for oy in 0..oh {
        let top = &plane[2 * oy * w..][..2 * ow];
        let bottom = &plane[(2 * oy + 1) * w..][..2 * ow];
        let grad = &grad[oy * ow..][..ow];
        let (dx_top, dx_bottom) = dx[2 * oy * w..][..2 * w].split_at_mut(w);
        let (dx_top, top_rest) = dx_top.split_at_mut(2 * ow);
        let (dx_bottom, bottom_rest) = dx_bottom.split_at_mut(2 * ow);
        for ox in 0..ow {
            let (a, b, c, d) = (top[2 * ox], top[2 * ox + 1], bottom[2 * ox], bottom[2 * ox + 1]);
            let (_, right, bottom_pair, bottom_wins) = max4(a, b, c, d);
            let g = grad[ox];
            dx_top[2 * ox] = keep(!bottom_wins & !right, g);
            dx_top[2 * ox + 1] = keep(!bottom_wins & right, g);
            dx_bottom[2 * ox] = keep(bottom_wins & !bottom_pair, g);
            dx_bottom[2 * ox + 1] = keep(bottom_wins & bottom_pair, g);
        }
        top_rest.fill(0.0);
        bottom_rest.fill(0.0);
    }
    dx[2 * oh * w..].fill(0.0);
}

impl PoolGeometry {
    fn plane_out(&self) -> usize {
        self.out_h() * self.out_w()
    }

    /// The common 2x2, stride-2, unpadded pool, which has a fast path.
    fn is_2x2(&self) -> bool {
        self.kernel == [2, 2] && self.stride == [2, 2] && self.padding == [0, 0]
    }
}

/// Forward: `x` holds `planes` planes of `h x w`; returns the `planes` planes of `oh x ow`.
pub fn max_pool2d_forward(g: &PoolGeometry, x: &[f32]) -> Vec<f32> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut out = vec![0.0f32; g.planes * oh * ow];
    if out.is_empty() {
        return out;
    }
    if g.is_2x2() {
        out.par_chunks_mut(g.plane_out()).zip(x.par_chunks(g.h * g.w)).for_each(|(out, plane)| {
            max_pool_2x2_plane(out, plane, g.w, oh, ow);
        });
        return out;
    }
    let columns: Vec<(usize, usize)> = (0..ow).map(|ox| g.window(1, ox)).collect();
    out.par_chunks_mut(oh * ow).zip(x.par_chunks(g.h * g.w)).for_each(|(out, plane)| {
        for oy in 0..oh {
            let rows = g.window(0, oy);
            for (ox, &cols) in columns.iter().enumerate() {
                out[oy * ow + ox] = plane[arg_max(plane, g.w, rows, cols)];
            }
        }
    });
    out
}

/// Backward: the gradient of `x`, each output's gradient added at its window's arg-max.
pub fn max_pool2d_backward(g: &PoolGeometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut dx = vec![0.0f32; x.len()];
    if dx.is_empty() || oh * ow == 0 {
        return dx;
    }
    if g.is_2x2() {
        dx.par_chunks_mut(g.h * g.w)
            .zip(x.par_chunks(g.h * g.w))
            .zip(grad.par_chunks(oh * ow))
            .for_each(|((dx, plane), grad)| max_pool_2x2_plane_backward(dx, plane, grad, g.w, oh, ow));
        return dx;
    }
    let columns: Vec<(usize, usize)> = (0..ow).map(|ox| g.window(1, ox)).collect();
    dx.par_chunks_mut(g.h * g.w).zip(x.par_chunks(g.h * g.w)).zip(grad.par_chunks(oh * ow)).for_each(
        |((dx, plane), grad)| {
            for oy in 0..oh {
                let rows = g.window(0, oy);
                for (ox, &cols) in columns.iter().enumerate() {
                    dx[arg_max(plane, g.w, rows, cols)] += grad[oy * ow + ox];
                }
            }
        },
    );
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition with explicit -inf padding.
    fn reference(g: &PoolGeometry, x: &[f32], grad: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut out = vec![0.0; g.planes * oh * ow];
        let mut dx = vec![0.0; x.len()];
        for p in 0..g.planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut max, mut at) = (f32::NEG_INFINITY, None);
                    for ky in 0..g.kernel[0] {
                        for kx in 0..g.kernel[1] {
                            let y = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                            let xx = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                            if y < 0 || xx < 0 || y >= g.h as isize || xx >= g.w as isize {
                                continue;
                            }
                            let i = p * g.h * g.w + y as usize * g.w + xx as usize;
                            if at.is_none() || x[i] > max {
                                max = x[i];
                                at = Some(i);
                            }
                        }
                    }
                    let o = (p * oh + oy) * ow + ox;
                    out[o] = max;
                    dx[at.expect("every window holds an input")] += grad[o];
                }
            }
        }
        (out, dx)
    }

    #[test]
    fn forward_and_backward_match_the_definition() {
        let g = |planes, h, w, kernel, stride, padding| PoolGeometry { planes, h, w, kernel, stride, padding };
        let cases = [
            g(3, 8, 6, [2, 2], [2, 2], [0, 0]),
            g(2, 7, 9, [2, 2], [2, 2], [0, 0]),
            g(2, 9, 7, [3, 3], [2, 2], [1, 1]),
            g(1, 5, 5, [3, 2], [1, 2], [1, 1]),
            g(4, 4, 4, [4, 4], [1, 1], [2, 2]),
        ];
        for (case, g) in cases.iter().enumerate() {
            assert!(g.is_valid(), "{g:?}");
            let x = crate::kernels::test_values(g.planes * g.h * g.w, 2 * case as u64, -0.5, 0.5);
            let grad = crate::kernels::test_values(g.planes * g.out_h() * g.out_w(), 2 * case as u64 + 1, -0.5, 0.5);
            let (out, dx) = reference(g, &x, &grad);
            assert_eq!(max_pool2d_forward(g, &x), out, "{g:?}");
            let got = max_pool2d_backward(g, &x, &grad);
            for (a, b) in got.iter().zip(&dx) {
                assert!((a - b).abs() < 1e-6, "{g:?}: {a} vs {b}");
            }
        }
    }

    /// Values from {-0, 0, 1, NaN}: every pattern of ties, signed zeros and NaNs occurs.
    fn tie_values(n: usize, seed: u64) -> Vec<f32> {
        let choices = [-0.0f32, 0.0, 1.0, f32::NAN];
        crate::kernels::test_values(n, seed, 0.0, 4.0).iter().map(|&v| choices[v as usize % 4]).collect()
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() }).collect()
    }

    /// Widths whose rows hold fewer windows than a vector (the compiled loop), exactly whole
    /// vectors, and whole vectors plus a last overlapping one (AVX2), odd widths among them.
    const WIDTHS: [usize; 11] = [2, 5, 7, 8, 9, 11, 14, 16, 17, 28, 31];

    #[test]
    fn the_2x2_path_keeps_the_first_maximum_and_the_first_nan_of_every_window() {
        for (case, w) in WIDTHS.into_iter().enumerate() {
            let g = PoolGeometry { planes: 3, h: 9, w, kernel: [2, 2], stride: [2, 2], padding: [0, 0] };
            let n = g.planes * g.h * g.w;
            let x = tie_values(n, 41 + case as u64);
            let grad = crate::kernels::test_values(g.planes * g.out_h() * g.out_w(), 42, 0.5, 1.5);
            let (oh, ow) = (g.out_h(), g.out_w());
            let mut want_dx = vec![0.0f32; n];
            let mut want_out = Vec::new();
            for p in 0..g.planes {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let at: Vec<usize> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                            .iter()
                            .map(|(dy, dx)| (p * g.h + 2 * oy + dy) * g.w + 2 * ox + dx)
                            .collect();
                        let first_nan = at.iter().copied().find(|&i| x[i].is_nan());
                        let max = at.iter().map(|&i| x[i]).fold(f32::NEG_INFINITY, f32::max);
                        let win = first_nan.unwrap_or_else(|| at.iter().copied().find(|&i| x[i] == max).unwrap());
                        want_out.push(x[win]);
                        want_dx[win] = grad[(p * oh + oy) * ow + ox];
                    }
                }
            }
            assert_eq!(bits(&max_pool2d_forward(&g, &x)), bits(&want_out), "forward, width {w}");
            assert_eq!(bits(&max_pool2d_backward(&g, &x, &grad)), bits(&want_dx), "backward, width {w}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_planes_equal_the_compiled_loops_bit_for_bit() {
        let simd = pulp::x86::V3::try_new().expect("this test compares the AVX2 kernels: it needs an AVX2 CPU");
        for (case, w) in WIDTHS.into_iter().filter(|&w| w >= 8).enumerate() {
            for (h, tied) in [(2, true), (7, true), (28, false)] {
                let (oh, ow) = (h / 2, w / 2);
                let seed = 100 + 10 * case as u64 + h as u64;
                let plane =
                    if tied { tie_values(h * w, seed) } else { crate::kernels::test_values(h * w, seed, -1.0, 1.0) };
                let grad = crate::kernels::test_values(oh * ow, seed + 1, -1.0, 1.0);
                let (mut out, mut want) = (vec![f32::NAN; oh * ow], vec![f32::NAN; oh * ow]);
                simd.vectorize(|| super::super::pool_avx2::plane(simd, &mut out, &plane, w, oh, ow));
                max_pool_2x2_plane_loop(&mut want, &plane, w, oh, ow);
                assert_eq!(bits(&out), bits(&want), "forward, {h}x{w}");
                let (mut dx, mut want) = (vec![f32::NAN; h * w], vec![f32::NAN; h * w]);
                simd.vectorize(|| super::super::pool_avx2::plane_backward(simd, &mut dx, &plane, &grad, w, oh, ow));
                max_pool_2x2_plane_backward_loop(&mut want, &plane, &grad, w, oh, ow);
                assert_eq!(bits(&dx), bits(&want), "backward, {h}x{w}");
            }
        }
    }

    #[test]
    fn ties_go_to_the_first_maximum_and_nan_wins() {
        let g = PoolGeometry { planes: 1, h: 2, w: 4, kernel: [2, 2], stride: [2, 2], padding: [0, 0] };
        let x = [1.0, 1.0, 0.0, f32::NAN, 1.0, 1.0, 5.0, 0.0];
        let out = max_pool2d_forward(&g, &x);
        assert_eq!(out[0], 1.0);
        assert!(out[1].is_nan());
        assert_eq!(max_pool2d_backward(&g, &x, &[1.0, 2.0]), vec![1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
