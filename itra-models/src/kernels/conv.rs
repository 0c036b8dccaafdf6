//! 2-D convolution (`groups = 1`) on NCHW `f32` slices: forward, input gradient and weight
//! gradient, as per-image im2col + GEMM, parallel over the images of the batch.
//!
//! Layout is Caffe's: the column matrix of one image has a row per `(c_in, ky, kx)` and a column
//! per output pixel, so `out = W · col` lands directly in NCHW, the weight gradient is
//! `Σ_n g_n · col_nᵀ` and the input gradient is `col2im(Wᵀ · g_n)`. No layout transposes.
//! Depthwise convolutions (MobileNetV2) have direct per-plane kernels of their own.

use multiversion::multiversion;
use rayon::prelude::*;

use super::buffer::par_zeroed_pieces;
use super::gemm::{MatRef, matmul};

/// The shape of one convolution: input `[batch, c_in, h, w]`, weight `[c_out, c_in, kh, kw]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl ConvGeometry {
    /// Output height, as PyTorch and Burn compute it (floor).
    pub fn out_h(&self) -> usize {
        out_len(self.h, self.kh, self.stride[0], self.padding[0], self.dilation[0])
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        out_len(self.w, self.kw, self.stride[1], self.padding[1], self.dilation[1])
    }

    fn plane_out(&self) -> usize {
        self.out_h() * self.out_w()
    }

    fn plane_in(&self) -> usize {
        self.h * self.w
    }

    /// Rows of the column matrix: `c_in * kh * kw`.
    fn col_rows(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// A 1x1, stride-1, unpadded convolution: the column matrix is the image itself.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// Whether the forward runs as a direct convolution ([`direct_forward_image`]): stride 1 and a
    /// column matrix of at most [`DIRECT_MAX_TAPS`] rows, as a network's first convolution over one
    /// or three input channels has.
    fn has_direct_forward(&self) -> bool {
        self.stride == [1, 1] && self.col_rows() <= DIRECT_MAX_TAPS && !self.is_pointwise()
    }

    /// `(height, width)` of the input with its padding.
    fn padded(&self) -> (usize, usize) {
        (self.h + 2 * self.padding[0], self.w + 2 * self.padding[1])
    }

    /// Whether every kernel tap of every output pixel is defined (the output is non-empty).
    pub fn is_valid(&self) -> bool {
        self.stride.iter().chain(&self.dilation).all(|&s| s > 0)
            && self.kh > 0
            && self.kw > 0
            && self.h + 2 * self.padding[0] > self.dilation[0] * (self.kh - 1)
            && self.w + 2 * self.padding[1] > self.dilation[1] * (self.kw - 1)
    }
}

fn out_len(input: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> usize {
    (input + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1
}

/// The output range `[lo, hi)` along one axis for which kernel tap `tap` reads inside the input,
/// i.e. `0 <= o * stride + tap * dilation - padding < input`.
fn valid_range(out: usize, input: usize, stride: usize, padding: usize, offset: usize) -> (usize, usize) {
    // offset = tap * dilation; position = o * stride + offset - padding
    let lo = padding.saturating_sub(offset).div_ceil(stride).min(out);
    let hi = if input + padding > offset { ((input + padding - offset - 1) / stride + 1).min(out) } else { 0 };
    (lo, hi.max(lo))
}

/// Writes the column matrix of one image (`x`: `c_in * h * w`) into `col` (`col_rows * oh * ow`).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn im2col(g: &ConvGeometry, x: &[f32], col: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let p = oh * ow;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    let [dh, dw] = g.dilation;
    for c in 0..g.c_in {
        let plane = &x[c * g.plane_in()..(c + 1) * g.plane_in()];
        for ky in 0..g.kh {
            let (y_lo, y_hi) = valid_range(oh, g.h, sh, ph, ky * dh);
            for kx in 0..g.kw {
                let (x_lo, x_hi) = valid_range(ow, g.w, sw, pw, kx * dw);
                let row = &mut col[((c * g.kh + ky) * g.kw + kx) * p..][..p];
                row[..y_lo * ow].fill(0.0);
                row[y_hi * ow..].fill(0.0);
                if sh == 1 && sw == 1 && ow == g.w && y_lo < y_hi && x_lo < x_hi {
                    // Rows as wide as the input (a "same" convolution): the tap's rows are one
                    // shifted copy of the plane, and the columns past the left or right edge,
                    // which that copy fills from the neighbouring row, are zeroed after it.
                    let (first, last) = (y_lo * ow + x_lo, (y_hi - 1) * ow + x_hi);
                    let src = (y_lo + ky * dh - ph) * g.w + x_lo + kx * dw - pw;
                    row[first..last].copy_from_slice(&plane[src..src + (last - first)]);
                    for dst in row[y_lo * ow..y_hi * ow].chunks_exact_mut(ow) {
                        dst[..x_lo].fill(0.0);
                        dst[x_hi..].fill(0.0);
                    }
                    continue;
                }
                for oy in y_lo..y_hi {
                    let iy = oy * sh + ky * dh - ph;
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    dst[..x_lo].fill(0.0);
                    dst[x_hi..].fill(0.0);
                    if sw == 1 {
                        let ix = x_lo + kx * dw - pw;
                        dst[x_lo..x_hi].copy_from_slice(&src[ix..ix + (x_hi - x_lo)]);
                    } else {
                        for (ox, d) in dst.iter_mut().enumerate().take(x_hi).skip(x_lo) {
                            *d = src[ox * sw + kx * dw - pw];
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column matrix `col` of one image back onto its pixels: `dx += col2im(col)`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn col2im_add(g: &ConvGeometry, col: &[f32], dx: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let p = oh * ow;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    let [dh, dw] = g.dilation;
    for c in 0..g.c_in {
        let plane = &mut dx[c * g.plane_in()..(c + 1) * g.plane_in()];
        for ky in 0..g.kh {
            let (y_lo, y_hi) = valid_range(oh, g.h, sh, ph, ky * dh);
            for kx in 0..g.kw {
                let (x_lo, x_hi) = valid_range(ow, g.w, sw, pw, kx * dw);
                let row = &col[((c * g.kh + ky) * g.kw + kx) * p..][..p];
                for oy in y_lo..y_hi {
                    let iy = oy * sh + ky * dh - ph;
                    let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                    let src = &row[oy * ow..(oy + 1) * ow];
                    if sw == 1 {
                        let ix = x_lo + kx * dw - pw;
                        for (d, s) in dst[ix..ix + (x_hi - x_lo)].iter_mut().zip(&src[x_lo..x_hi]) {
                            *d += s;
                        }
                    } else {
                        for ox in x_lo..x_hi {
                            dst[ox * sw + kx * dw - pw] += src[ox];
                        }
                    }
                }
            }
        }
    }
}

/// Column rows up to which a stride-1 forward is a direct convolution rather than im2col + GEMM.
/// A GEMM whose inner dimension is this short spends its time packing operands and storing its
/// output tiles, not multiplying: the small CNN's first convolution (9 rows) ran at 24 G
/// multiply-adds per second through the GEMM, against 65 G for its second (288 rows).
const DIRECT_MAX_TAPS: usize = 27;

/// Outputs of one channel computed together in [`direct_forward_image`]: one AVX2 vector of `f32`.
const DIRECT_LANES: usize = 8;

/// Output channels computed together in [`direct_forward_image`]: independent chains of fused
/// multiply-adds, enough to hide the instruction's latency (one chain alone ran at a quarter of the
/// cores' rate), sharing each input vector's load.
const DIRECT_CHANNELS: usize = 8;

/// One image's forward as a direct stride-1 convolution: `out` (`c_out * oh * ow`) from `x`
/// (`c_in * h * w`), through `padded` (`c_in * hp * wp`, the image inside its zero padding).
///
/// Tap `(c, ky, kx)` of output `(oy, ox)` reads `padded` at `(c * hp + oy + ky * dh) * wp + ox +
/// kx * dw`: for a run of adjacent outputs of one row, one run of adjacent inputs. Each output is
/// the chain of fused multiply-adds that the GEMM's micro-kernel computes over its inner dimension:
/// from `+0`, tap by tap in the column matrix's row order, a tap in the padding adding `w * 0` as
/// the column matrix's zero does. So this path and im2col + GEMM agree bit for bit
/// (`direct_forward_equals_im2col_and_gemm_bit_for_bit`).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn direct_forward_image(g: &ConvGeometry, x: &[f32], weight: &[f32], padded: &mut [f32], out: &mut [f32]) {
    let (hp, wp) = g.padded();
    let [ph, pw] = g.padding;
    let [dh, dw] = g.dilation;
    let taps = g.col_rows();
    padded.fill(0.0);
    for c in 0..g.c_in {
        for (iy, src) in x[c * g.plane_in()..(c + 1) * g.plane_in()].chunks_exact(g.w).enumerate() {
            padded[(c * hp + iy + ph) * wp + pw..][..g.w].copy_from_slice(src);
        }
    }
    let mut offsets = [0usize; DIRECT_MAX_TAPS];
    for (r, offset) in offsets.iter_mut().enumerate().take(taps) {
        let (c, ky, kx) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
        *offset = (c * hp + ky * dh) * wp + kx * dw;
    }
    let plane = g.plane_out();
    let full = g.c_out / DIRECT_CHANNELS * DIRECT_CHANNELS;
    let (out_full, out_rest) = out.split_at_mut(full * plane);
    for (block, out) in out_full.chunks_exact_mut(DIRECT_CHANNELS * plane).enumerate() {
        let w = &weight[block * DIRECT_CHANNELS * taps..][..DIRECT_CHANNELS * taps];
        direct_channels::<DIRECT_CHANNELS>(g, w, &offsets[..taps], padded, out);
    }
    for (i, out) in out_rest.chunks_exact_mut(plane).enumerate() {
        direct_channels::<1>(g, &weight[(full + i) * taps..][..taps], &offsets[..taps], padded, out);
    }
}

/// `CB` output channels of [`direct_forward_image`] (`w`: their `CB * taps` weights, `out`: their
/// `CB` planes): each output the chain `Σ_t w[b * taps + t] * padded[at + offsets[t]]` from `+0`,
/// `t` in order.
#[inline(always)]
fn direct_channels<const CB: usize>(g: &ConvGeometry, w: &[f32], offsets: &[usize], padded: &[f32], out: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (taps, wp, plane) = (offsets.len(), g.padded().1, oh * ow);
    // The weights tap-major, so that one tap's `CB` weights are adjacent.
    let mut wt = [0.0f32; DIRECT_MAX_TAPS * DIRECT_CHANNELS];
    for (t, wt) in wt.chunks_exact_mut(CB).take(taps).enumerate() {
        for (b, wt) in wt.iter_mut().enumerate() {
            *wt = w[b * taps + t];
        }
    }
    if ow < DIRECT_LANES {
        for (b, out) in out.chunks_exact_mut(plane).enumerate() {
            for (j, o) in out.iter_mut().enumerate() {
                let at = j / ow * wp + j % ow;
                *o = (0..taps).fold(0.0f32, |acc, t| wt[t * CB + b].mul_add(padded[at + offsets[t]], acc));
            }
        }
        return;
    }
    for oy in 0..oh {
        // Whole vectors, the last one overlapping the one before it rather than a scalar tail.
        let starts = (0..ow - DIRECT_LANES).step_by(DIRECT_LANES).chain(std::iter::once(ow - DIRECT_LANES));
        for ox in starts {
            let at = oy * wp + ox;
            let mut acc = [[0.0f32; DIRECT_LANES]; CB];
            for (t, &off) in offsets.iter().enumerate() {
                let src: &[f32; DIRECT_LANES] = padded[at + off..][..DIRECT_LANES].try_into().expect("one vector");
                let wt: &[f32; CB] = wt[t * CB..][..CB].try_into().expect("one tap's weights");
                for (acc, w) in acc.iter_mut().zip(wt) {
                    for (a, s) in acc.iter_mut().zip(src) {
                        *a = w.mul_add(*s, *a);
                    }
                }
            }
            for (b, acc) in acc.iter().enumerate() {
                out[b * plane + oy * ow + ox..][..DIRECT_LANES].copy_from_slice(acc);
            }
        }
    }
}

/// Images per parallel task: enough tasks for every thread, few enough to amortise a task.
fn images_per_task(batch: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    batch.div_ceil(threads * 4).max(1)
}

/// Forward: `x` is `[batch, c_in, h, w]`, `weight` `[c_out, c_in, kh, kw]`; returns
/// `[batch, c_out, oh, ow]`.
pub fn conv2d_forward(g: &ConvGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    let (p, rows) = (g.plane_out(), g.col_rows());
    let out_img = g.c_out * p;
    let w = MatRef::row_major(weight, g.c_out, rows);
    // Per job, the scratch of one image: its padded copy, its column matrix, or nothing.
    let scratch = if g.has_direct_forward() {
        let (hp, wp) = g.padded();
        g.c_in * hp * wp
    } else if g.is_pointwise() {
        0
    } else {
        rows * p
    };
    par_zeroed_pieces(
        g.batch * out_img,
        out_img,
        images_per_task(g.batch),
        || vec![0.0f32; scratch],
        |scratch, n, out| {
            let img = &x[n * g.c_in * g.plane_in()..(n + 1) * g.c_in * g.plane_in()];
            if g.has_direct_forward() {
                direct_forward_image(g, img, weight, scratch, out);
            } else if g.is_pointwise() {
                matmul(out, false, w, MatRef::row_major(img, rows, p));
            } else {
                im2col(g, img, scratch);
                matmul(out, false, w, MatRef::row_major(scratch, rows, p));
            }
        },
    )
}

/// Input gradient: `grad` is `[batch, c_out, oh, ow]`; returns `[batch, c_in, h, w]`.
pub fn conv2d_x_backward(g: &ConvGeometry, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    let (p, rows) = (g.plane_out(), g.col_rows());
    let in_img = g.c_in * g.plane_in();
    let wt = MatRef::row_major(weight, g.c_out, rows).t();
    par_zeroed_pieces(
        g.batch * in_img,
        in_img,
        images_per_task(g.batch),
        || if g.is_pointwise() { Vec::new() } else { vec![0.0f32; rows * p] },
        |dcol, n, dx| {
            let g_n = MatRef::row_major(&grad[n * g.c_out * p..(n + 1) * g.c_out * p], g.c_out, p);
            if g.is_pointwise() {
                matmul(dx, false, wt, g_n);
            } else {
                matmul(dcol, false, wt, g_n);
                col2im_add(g, dcol, dx);
            }
        },
    )
}

/// Weight gradient: returns `[c_out, c_in, kh, kw]`, `Σ_n g_n · col(x_n)ᵀ`.
pub fn conv2d_weight_backward(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let (p, rows) = (g.plane_out(), g.col_rows());
    let size = g.c_out * rows;
    if size == 0 || g.batch == 0 {
        return vec![0.0f32; size];
    }
    let threads = rayon::current_num_threads().max(1);
    let chunk = g.batch.div_ceil(threads);
    let partials: Vec<Vec<f32>> = (0..g.batch.div_ceil(chunk))
        .into_par_iter()
        .map(|task| {
            let mut dw = vec![0.0f32; size];
            let mut col = if g.is_pointwise() { Vec::new() } else { vec![0.0f32; rows * p] };
            for n in task * chunk..((task + 1) * chunk).min(g.batch) {
                let img = &x[n * g.c_in * g.plane_in()..(n + 1) * g.c_in * g.plane_in()];
                let cols = if g.is_pointwise() {
                    img
                } else {
                    im2col(g, img, &mut col);
                    col.as_slice()
                };
                let g_n = MatRef::row_major(&grad[n * g.c_out * p..(n + 1) * g.c_out * p], g.c_out, p);
                matmul(&mut dw, true, g_n, MatRef::row_major(cols, rows, p).t());
            }
            dw
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut dw = partials.next().unwrap_or_else(|| vec![0.0f32; size]);
    for part in partials {
        for (d, s) in dw.iter_mut().zip(&part) {
            *d += s;
        }
    }
    dw
}

/// Depthwise convolutions (`groups = c_in = c_out`, one input channel per filter), as MobileNetV2's:
/// direct loops over each `(sample, channel)` plane, vectorised along the rows.
impl ConvGeometry {
    /// The plane count of a depthwise convolution: one per `(sample, channel)`.
    fn depthwise_planes(&self) -> usize {
        self.batch * self.c_in
    }
}

/// Calls `f(oy, iy, x_lo, x_hi, ix0)` for every output row `oy` whose tap `(ky, kx)` reads input
/// row `iy`, with the output columns `[x_lo, x_hi)` whose tap lies inside the input and the input
/// column `ix0` of output column `x_lo`.
#[inline(always)]
fn for_each_tap_row(g: &ConvGeometry, ky: usize, kx: usize, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (y_lo, y_hi) = valid_range(oh, g.h, g.stride[0], g.padding[0], ky * g.dilation[0]);
    let (x_lo, x_hi) = valid_range(ow, g.w, g.stride[1], g.padding[1], kx * g.dilation[1]);
    if x_lo >= x_hi {
        return;
    }
    for oy in y_lo..y_hi {
        let iy = oy * g.stride[0] + ky * g.dilation[0] - g.padding[0];
        f(oy, iy, x_lo, x_hi, x_lo * g.stride[1] + kx * g.dilation[1] - g.padding[1]);
    }
}

/// Depthwise forward: `x` `[batch, c, h, w]`, `weight` `[c, 1, kh, kw]`; returns `[batch, c, oh, ow]`.
pub fn depthwise_forward(g: &ConvGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    let (p, taps) = (g.plane_out(), g.kh * g.kw);
    let mut out = vec![0.0f32; g.depthwise_planes() * p];
    if out.is_empty() {
        return out;
    }
    let sw = g.stride[1];
    out.par_chunks_mut(p).zip(x.par_chunks(g.plane_in())).enumerate().for_each(|(i, (out, plane))| {
        let w = &weight[(i % g.c_in) * taps..][..taps];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let wv = w[ky * g.kw + kx];
                for_each_tap_row(g, ky, kx, |oy, iy, x_lo, x_hi, ix0| {
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    let dst = &mut out[oy * g.out_w() + x_lo..oy * g.out_w() + x_hi];
                    if sw == 1 {
                        for (d, &v) in dst.iter_mut().zip(&src[ix0..]) {
                            *d += wv * v;
                        }
                    } else {
                        for (d, &v) in dst.iter_mut().zip(src[ix0..].iter().step_by(sw)) {
                            *d += wv * v;
                        }
                    }
                });
            }
        }
    });
    out
}

/// Depthwise input gradient: `grad` `[batch, c, oh, ow]`; returns `[batch, c, h, w]`.
pub fn depthwise_x_backward(g: &ConvGeometry, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    let (p, taps) = (g.plane_out(), g.kh * g.kw);
    let mut dx = vec![0.0f32; g.depthwise_planes() * g.plane_in()];
    if dx.is_empty() || p == 0 {
        return dx;
    }
    let sw = g.stride[1];
    dx.par_chunks_mut(g.plane_in()).zip(grad.par_chunks(p)).enumerate().for_each(|(i, (dx, grad))| {
        let w = &weight[(i % g.c_in) * taps..][..taps];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let wv = w[ky * g.kw + kx];
                for_each_tap_row(g, ky, kx, |oy, iy, x_lo, x_hi, ix0| {
                    let src = &grad[oy * g.out_w() + x_lo..oy * g.out_w() + x_hi];
                    let dst = &mut dx[iy * g.w..(iy + 1) * g.w];
                    if sw == 1 {
                        for (d, &v) in dst[ix0..].iter_mut().zip(src) {
                            *d += wv * v;
                        }
                    } else {
                        for (d, &v) in dst[ix0..].iter_mut().step_by(sw).zip(src) {
                            *d += wv * v;
                        }
                    }
                });
            }
        }
    });
    dx
}

/// Depthwise weight gradient: returns `[c, 1, kh, kw]`.
pub fn depthwise_weight_backward(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let (p, taps) = (g.plane_out(), g.kh * g.kw);
    let mut dw = vec![0.0f32; g.c_in * taps];
    if dw.is_empty() || p == 0 {
        return dw;
    }
    let sw = g.stride[1];
    dw.par_chunks_mut(taps).enumerate().for_each(|(c, dw)| {
        for n in 0..g.batch {
            let plane = &x[(n * g.c_in + c) * g.plane_in()..][..g.plane_in()];
            let grad = &grad[(n * g.c_in + c) * p..][..p];
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let mut acc = 0.0f32;
                    for_each_tap_row(g, ky, kx, |oy, iy, x_lo, x_hi, ix0| {
                        let gr = &grad[oy * g.out_w() + x_lo..oy * g.out_w() + x_hi];
                        let src = &plane[iy * g.w..(iy + 1) * g.w];
                        if sw == 1 {
                            acc += gr.iter().zip(&src[ix0..]).map(|(a, b)| a * b).sum::<f32>();
                        } else {
                            acc += gr.iter().zip(src[ix0..].iter().step_by(sw)).map(|(a, b)| a * b).sum::<f32>();
                        }
                    });
                    dw[ky * g.kw + kx] += acc;
                }
            }
        }
    });
    dw
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct seven-loop convolution in f64, with both gradients for an output gradient `r`:
    /// the reference for the im2col kernels. Returns `(out, dx, dw)`.
    fn reference(g: &ConvGeometry, x: &[f32], w: &[f32], r: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut out = vec![0.0f64; g.batch * g.c_out * oh * ow];
        let mut dx = vec![0.0f64; x.len()];
        let mut dw = vec![0.0f64; w.len()];
        for n in 0..g.batch {
            for co in 0..g.c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let o = ((n * g.c_out + co) * oh + oy) * ow + ox;
                        for ci in 0..g.c_in {
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize - g.padding[0] as isize;
                                    let ix = (ox * g.stride[1] + kx * g.dilation[1]) as isize - g.padding[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                        continue;
                                    }
                                    let xi = ((n * g.c_in + ci) * g.h + iy as usize) * g.w + ix as usize;
                                    let wi = ((co * g.c_in + ci) * g.kh + ky) * g.kw + kx;
                                    out[o] += f64::from(x[xi]) * f64::from(w[wi]);
                                    dx[xi] += f64::from(w[wi]) * f64::from(r[o]);
                                    dw[wi] += f64::from(x[xi]) * f64::from(r[o]);
                                }
                            }
                        }
                    }
                }
            }
        }
        (out, dx, dw)
    }

    fn assert_close(what: &str, g: &ConvGeometry, got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what} {g:?}");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((f64::from(*a) - b).abs() < 1e-4 * (1.0 + b.abs()), "{what} {g:?} [{i}]: {a} vs {b}");
        }
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        crate::kernels::test_values(len, seed, -1.0, 1.0)
    }

    fn geometries() -> Vec<ConvGeometry> {
        let g = |batch, c_in, h, w, c_out, k: [usize; 2], stride, padding, dilation| ConvGeometry {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh: k[0],
            kw: k[1],
            stride,
            padding,
            dilation,
        };
        vec![
            g(3, 2, 7, 9, 5, [3, 3], [1, 1], [1, 1], [1, 1]),
            g(2, 3, 8, 5, 4, [3, 3], [2, 2], [1, 1], [1, 1]),
            g(5, 4, 6, 6, 3, [1, 1], [1, 1], [0, 0], [1, 1]),
            g(2, 4, 9, 7, 6, [1, 1], [2, 2], [0, 0], [1, 1]),
            g(1, 3, 11, 10, 2, [7, 7], [2, 2], [3, 3], [1, 1]),
            g(4, 2, 5, 8, 3, [2, 3], [1, 2], [0, 1], [1, 1]),
            g(2, 2, 9, 9, 3, [3, 3], [1, 1], [2, 2], [2, 2]),
            g(3, 1, 4, 4, 2, [5, 5], [3, 1], [2, 2], [1, 1]),
        ]
    }

    #[test]
    fn forward_and_gradients_match_a_direct_convolution() {
        for (i, g) in geometries().iter().enumerate() {
            assert!(g.is_valid());
            let x = values(g.batch * g.c_in * g.h * g.w, i as u64);
            let w = values(g.c_out * g.c_in * g.kh * g.kw, 100 + i as u64);
            let r = values(g.batch * g.c_out * g.out_h() * g.out_w(), 300 + i as u64);
            let (out, dx, dw) = reference(g, &x, &w, &r);
            assert_close("forward", g, &conv2d_forward(g, &x, &w), &out);
            assert_close("dx", g, &conv2d_x_backward(g, &w, &r), &dx);
            assert_close("dw", g, &conv2d_weight_backward(g, &x, &r), &dw);
        }
    }

    /// The direct stride-1 forward computes each output as the GEMM's micro-kernel does, so it
    /// equals the im2col + GEMM path to the bit: at the small CNN's and ResNet's first-layer shapes,
    /// at runs shorter than one vector, with padding larger than the kernel's reach and dilation.
    #[test]
    fn direct_forward_equals_im2col_and_gemm_bit_for_bit() {
        let g = |batch, c_in, h, w, c_out, k: [usize; 2], padding, dilation| ConvGeometry {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh: k[0],
            kw: k[1],
            stride: [1, 1],
            padding,
            dilation,
        };
        let cases = [
            g(3, 1, 28, 28, 32, [3, 3], [1, 1], [1, 1]),
            g(2, 3, 32, 32, 16, [3, 3], [1, 1], [1, 1]),
            g(2, 3, 9, 7, 5, [3, 3], [0, 0], [1, 1]),
            g(3, 2, 5, 6, 4, [2, 3], [2, 1], [1, 1]),
            g(2, 1, 3, 2, 3, [3, 3], [1, 1], [1, 1]),
            g(2, 1, 2, 2, 3, [3, 3], [1, 1], [1, 1]),
            g(1, 2, 9, 9, 3, [3, 3], [2, 2], [2, 2]),
            g(2, 1, 11, 10, 11, [5, 5], [2, 2], [1, 1]),
            g(9, 3, 6, 6, 2, [3, 3], [1, 1], [1, 1]),
        ];
        for (i, g) in cases.iter().enumerate() {
            assert!(g.is_valid() && g.has_direct_forward(), "{g:?}");
            let x = values(g.batch * g.c_in * g.h * g.w, 500 + i as u64);
            let w = values(g.c_out * g.col_rows(), 600 + i as u64);
            let got = conv2d_forward(g, &x, &w);
            // The im2col + GEMM path for the same images, one image at a time.
            let (p, rows) = (g.plane_out(), g.col_rows());
            let mut col = vec![0.0f32; rows * p];
            let mut want = vec![0.0f32; g.batch * g.c_out * p];
            for (n, want) in want.chunks_exact_mut(g.c_out * p).enumerate() {
                im2col(g, &x[n * g.c_in * g.plane_in()..][..g.c_in * g.plane_in()], &mut col);
                matmul(want, false, MatRef::row_major(&w, g.c_out, rows), MatRef::row_major(&col, rows, p));
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{g:?}");
        }
        let wider = ConvGeometry { c_in: 4, ..cases[1] };
        assert!(!wider.has_direct_forward(), "36 column rows go through the GEMM");
    }

    /// A depthwise convolution is a grouped one: the reference with `c_in = 1` per channel.
    #[test]
    fn depthwise_matches_a_direct_convolution_per_channel() {
        let cases = [
            (3, 4, 7, 9, [3, 3], [1, 1], [1, 1], [1, 1]),
            (2, 3, 8, 7, [3, 3], [2, 2], [1, 1], [1, 1]),
            (2, 5, 6, 6, [5, 5], [1, 1], [2, 2], [1, 1]),
            (1, 2, 9, 9, [3, 3], [1, 2], [2, 2], [2, 2]),
            (4, 3, 5, 4, [1, 1], [1, 1], [0, 0], [1, 1]),
        ];
        for (i, &(batch, c, h, w, k, stride, padding, dilation)) in cases.iter().enumerate() {
            let g = ConvGeometry { batch, c_in: c, h, w, c_out: c, kh: k[0], kw: k[1], stride, padding, dilation };
            let x = values(batch * c * h * w, 50 + i as u64);
            let wt = values(c * k[0] * k[1], 60 + i as u64);
            let r = values(batch * c * g.out_h() * g.out_w(), 70 + i as u64);
            // Per channel: a one-channel ordinary convolution over the batch.
            let one = ConvGeometry { c_in: 1, c_out: 1, ..g };
            let (mut out, mut dx, mut dw) = (vec![0.0; r.len()], vec![0.0; x.len()], vec![0.0; wt.len()]);
            let (pi, po, taps) = (h * w, g.out_h() * g.out_w(), k[0] * k[1]);
            for ch in 0..c {
                let xs: Vec<f32> = (0..batch).flat_map(|n| x[(n * c + ch) * pi..][..pi].to_vec()).collect();
                let rs: Vec<f32> = (0..batch).flat_map(|n| r[(n * c + ch) * po..][..po].to_vec()).collect();
                let (o, d, wgrad) = reference(&one, &xs, &wt[ch * taps..][..taps], &rs);
                for n in 0..batch {
                    out[(n * c + ch) * po..][..po].copy_from_slice(&o[n * po..][..po]);
                    dx[(n * c + ch) * pi..][..pi].copy_from_slice(&d[n * pi..][..pi]);
                }
                dw[ch * taps..][..taps].copy_from_slice(&wgrad);
            }
            assert_close("depthwise forward", &g, &depthwise_forward(&g, &x, &wt), &out);
            assert_close("depthwise dx", &g, &depthwise_x_backward(&g, &wt, &r), &dx);
            assert_close("depthwise dw", &g, &depthwise_weight_backward(&g, &x, &r), &dw);
        }
    }
}
