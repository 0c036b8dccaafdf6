//! The 2x2 stride-2 max pool's plane loops in AVX2, through `pulp`'s safe intrinsics.
//!
//! A row of the small CNN's planes holds 14 or 7 windows, fewer than the autovectoriser runs whole
//! vectors of, and its pairs of columns interleave, so the compiled loops of [`super::pool`] stay
//! scalar. Here a 256-bit vector holds eight adjacent columns of one row, four windows, each
//! window's two columns in adjacent lanes: one in-lane swap puts every value beside its pair's
//! other, so a window's whole tournament runs lane-wise, and a row's last vector overlaps the one
//! before it (computing its shared windows twice, to the same values) instead of falling to
//! scalar code. Each window's winner is [`super::pool`]'s: the first maximum in row-major order,
//! the first NaN winning; the values, the gradients and their zeros are the same bits.

use core::arch::x86_64::{__m128, __m256, _CMP_GT_OQ, _CMP_LT_OQ, _CMP_ORD_Q, _CMP_UNORD_Q};

use pulp::x86::V3;

/// Columns per vector: four windows.
const LANES: usize = 8;

/// The AVX2 token, where the CPU has AVX2 and a row of `ow` windows fills a vector: the kernels
/// below take it, and the callers keep their compiled loops otherwise.
pub(super) fn token(ow: usize) -> Option<V3> {
    (2 * ow >= LANES).then(V3::try_new).flatten()
}

/// All ones in the lanes of a pair's first column.
const FIRST_OF_PAIR: [u32; LANES] = [u32::MAX, 0, u32::MAX, 0, u32::MAX, 0, u32::MAX, 0];

/// The first column of each vector of a row of `columns` (even, at least [`LANES`]): whole vectors
/// from the left, then one ending at the row's end. Every start is even, so a pair never splits.
fn starts(columns: usize) -> impl Iterator<Item = usize> {
    let whole = (0..columns / LANES).map(|i| i * LANES);
    whole.chain((!columns.is_multiple_of(LANES)).then(|| columns - LANES))
}

/// Lane-wise [`super::pool`]'s `later_wins`: `later` strictly greater, or NaN where `earlier`
/// is not.
#[inline(always)]
fn later_wins(simd: V3, earlier: __m256, later: __m256) -> __m256 {
    let greater = simd.avx._mm256_cmp_ps::<_CMP_LT_OQ>(earlier, later);
    let later_nan = simd.avx._mm256_cmp_ps::<_CMP_UNORD_Q>(later, later);
    let earlier_number = simd.avx._mm256_cmp_ps::<_CMP_ORD_Q>(earlier, earlier);
    simd.avx._mm256_and_ps(earlier_number, simd.avx._mm256_or_ps(greater, later_nan))
}

/// The pairs of one row's eight columns: `(max, wins)`, each pair's maximum in both its lanes and
/// whether the lane's column is it.
#[inline(always)]
fn pairs(simd: V3, row: __m256) -> (__m256, __m256) {
    let swapped = simd.avx._mm256_permute_ps::<0b1011_0001>(row);
    let first = simd.avx._mm256_blend_ps::<0b1010_1010>(row, swapped);
    let second = simd.avx._mm256_blend_ps::<0b0101_0101>(row, swapped);
    let second_wins = later_wins(simd, first, second);
    let max = simd.avx._mm256_blendv_ps(first, second, second_wins);
    (max, simd.avx._mm256_xor_ps(second_wins, pulp::cast(FIRST_OF_PAIR)))
}

/// Four windows from their top and bottom columns: `(max, top_wins, bottom_wins)`, the window's
/// maximum in both lanes of its pair and, per lane, whether the column in the top (bottom) row is
/// the window's arg-max.
#[inline(always)]
fn windows(simd: V3, top: __m256, bottom: __m256) -> (__m256, __m256, __m256) {
    let (top_max, top_wins) = pairs(simd, top);
    let (bottom_max, bottom_wins) = pairs(simd, bottom);
    let bottom_row = later_wins(simd, top_max, bottom_max);
    let max = simd.avx._mm256_blendv_ps(top_max, bottom_max, bottom_row);
    (max, simd.avx._mm256_andnot_ps(bottom_row, top_wins), simd.avx._mm256_and_ps(bottom_row, bottom_wins))
}

/// The gradients of four windows, each in both lanes of its pair.
#[inline(always)]
fn paired(simd: V3, grad: &[f32; 4]) -> __m256 {
    let g: __m128 = pulp::cast(*grad);
    simd.avx._mm256_set_m128(simd.sse._mm_unpackhi_ps(g, g), simd.sse._mm_unpacklo_ps(g, g))
}

/// The forward of a plane whose rows hold at least four windows: `out` is `oh x ow`.
#[inline(always)]
pub(super) fn plane(simd: V3, out: &mut [f32], plane: &[f32], w: usize, oh: usize, ow: usize) {
    for (oy, out) in out.chunks_exact_mut(ow).take(oh).enumerate() {
        let (top, bottom) = (&plane[2 * oy * w..][..2 * ow], &plane[(2 * oy + 1) * w..][..2 * ow]);
        for start in starts(2 * ow) {
            let (Some(t), Some(b), Some(o)) = (
                top[start..].first_chunk::<LANES>(),
                bottom[start..].first_chunk::<LANES>(),
                out[start / 2..].first_chunk_mut::<4>(),
            ) else {
                continue;
            };
            let (max, _, _) = windows(simd, pulp::cast(*t), pulp::cast(*b));
            let (low, high) = (simd.avx._mm256_castps256_ps128(max), simd.avx._mm256_extractf128_ps::<1>(max));
            let packed: __m128 = simd.sse._mm_shuffle_ps::<0b10_00_10_00>(low, high);
            *o = pulp::cast(packed);
        }
    }
}

/// The backward of a plane whose rows hold at least four windows: writes the whole of `dx`, as
/// [`super::pool`]'s plane backward.
#[inline(always)]
pub(super) fn plane_backward(simd: V3, dx: &mut [f32], plane: &[f32], grad: &[f32], w: usize, oh: usize, ow: usize) {
    for oy in 0..oh {
        let (top, bottom) = (&plane[2 * oy * w..][..2 * ow], &plane[(2 * oy + 1) * w..][..2 * ow]);
        let grad = &grad[oy * ow..][..ow];
        let (dx_top, dx_bottom) = dx[2 * oy * w..][..2 * w].split_at_mut(w);
        for start in starts(2 * ow) {
            let (Some(t), Some(b), Some(g), Some(dt), Some(db)) = (
                top[start..].first_chunk::<LANES>(),
                bottom[start..].first_chunk::<LANES>(),
                grad[start / 2..].first_chunk::<4>(),
                dx_top[start..].first_chunk_mut::<LANES>(),
                dx_bottom[start..].first_chunk_mut::<LANES>(),
            ) else {
                continue;
            };
            let (_, top_wins, bottom_wins) = windows(simd, pulp::cast(*t), pulp::cast(*b));
            let g = paired(simd, g);
            *dt = pulp::cast(simd.avx._mm256_and_ps(top_wins, g));
            *db = pulp::cast(simd.avx._mm256_and_ps(bottom_wins, g));
        }
        dx_top[2 * ow..].fill(0.0);
        dx_bottom[2 * ow..].fill(0.0);
    }
    dx[2 * oh * w..].fill(0.0);
}

/// One channel's constants, each in every lane: the normalisation `(a, b)` and the input
/// gradient's `(k, c2, c1, m)`.
#[derive(Clone, Copy)]
struct Channel {
    a: __m256,
    b: __m256,
    k: __m256,
    c2: __m256,
    c1: __m256,
    m: __m256,
}

/// The activation `max(a x + b, 0)`, as `norm::normalize_plane` with its ReLU.
#[inline(always)]
fn activation(simd: V3, ch: Channel, x: __m256) -> __m256 {
    let avx = simd.avx;
    avx._mm256_max_ps(avx._mm256_add_ps(avx._mm256_mul_ps(x, ch.a), ch.b), avx._mm256_setzero_ps())
}

/// `dx = k g' + (x - m) c2 + c1`, `g'` the pooled gradient `g` where the lane `wins` its window
/// and its activation `y` is positive, `+0` elsewhere: `norm::input_gradient_plane`'s operations.
#[inline(always)]
fn input_gradient(simd: V3, ch: Channel, x: __m256, y: __m256, wins: __m256, g: __m256) -> __m256 {
    let avx = simd.avx;
    let positive = avx._mm256_cmp_ps::<_CMP_GT_OQ>(y, avx._mm256_setzero_ps());
    let gated = avx._mm256_and_ps(avx._mm256_and_ps(wins, positive), g);
    let centred = avx._mm256_mul_ps(avx._mm256_sub_ps(x, ch.m), ch.c2);
    avx._mm256_add_ps(avx._mm256_add_ps(avx._mm256_mul_ps(ch.k, gated), centred), ch.c1)
}

/// One vector of a row pair: the gradient of the columns `[start, start + 8)` from their inputs
/// `xt` (top row) and `xb` (bottom row), written at `start` of `top` and `bottom`.
#[inline(always)]
fn input_gradient_vector(
    simd: V3,
    ch: Channel,
    (start, xt, xb): (usize, __m256, __m256),
    (top, bottom): (&mut [f32], &mut [f32]),
    grad: &[f32],
) {
    let (Some(g), Some(dt), Some(db)) = (
        grad[start / 2..].first_chunk::<4>(),
        top[start..].first_chunk_mut::<LANES>(),
        bottom[start..].first_chunk_mut::<LANES>(),
    ) else {
        return;
    };
    let (yt, yb) = (activation(simd, ch, xt), activation(simd, ch, xb));
    let (_, top_wins, bottom_wins) = windows(simd, yt, yb);
    let g = paired(simd, g);
    *dt = pulp::cast(input_gradient(simd, ch, xt, yt, top_wins, g));
    *db = pulp::cast(input_gradient(simd, ch, xb, yb, bottom_wins, g));
}

/// The columns `[start, start + 8)` of `row`, if it holds them.
#[inline(always)]
fn load(row: &[f32], start: usize) -> Option<__m256> {
    row[start..].first_chunk::<LANES>().map(|v| pulp::cast(*v))
}

/// Batch norm + ReLU + the 2x2 pool's input gradient over one plane, in place, in one pass: `x_dx`
/// holds the plane of `x` on entry and its gradient on return, for the pooled gradient `grad`, the
/// channel's normalisation `(a, b)` and its input-gradient coefficients `(k, c2, c1, m)`.
///
/// The numbers are those of [`super::norm_pool`]'s plane buffers, bit for bit: the activation
/// `max(a x + b, 0)` and `dx = k g' + (x - m) c2 + c1` in the same operations and order (no fused
/// multiply-add), the pool's winners those of the loops above, `g'` the pooled gradient at a
/// window's winner where its activation is positive, `+0` elsewhere. The rows and columns that
/// floor mode leaves out of every window get `g' = +0`. A row's last vector overlaps the one before
/// it, so its inputs are read before the row is written.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn norm_pool_input_gradient(
    simd: V3,
    x_dx: &mut [f32],
    grad: &[f32],
    (a, b): (f32, f32),
    (k, c2, c1, m): (f32, f32, f32, f32),
    w: usize,
    oh: usize,
    ow: usize,
) {
    let splat = |v: f32| simd.avx._mm256_set1_ps(v);
    let ch = Channel { a: splat(a), b: splat(b), k: splat(k), c2: splat(c2), c1: splat(c1), m: splat(m) };
    // Where no window reaches: `g' = +0`, the scalar formula of `norm::input_gradient_plane`.
    let unpooled = |x: &mut f32| *x = k * 0.0 + (*x - m) * c2 + c1;
    let columns = 2 * ow;
    let tail = (!columns.is_multiple_of(LANES)).then(|| columns - LANES);
    for oy in 0..oh {
        let grad = &grad[oy * ow..][..ow];
        let (top, bottom) = x_dx[2 * oy * w..][..2 * w].split_at_mut(w);
        // The last vector's inputs, read before the whole vectors overwrite the columns it shares.
        let tail_x = tail.and_then(|start| Some((start, load(top, start)?, load(bottom, start)?)));
        for start in (0..columns / LANES).map(|i| i * LANES) {
            let (Some(xt), Some(xb)) = (load(top, start), load(bottom, start)) else { continue };
            input_gradient_vector(simd, ch, (start, xt, xb), (&mut *top, &mut *bottom), grad);
        }
        if let Some(tail_x) = tail_x {
            input_gradient_vector(simd, ch, tail_x, (&mut *top, &mut *bottom), grad);
        }
        top[columns..].iter_mut().chain(&mut bottom[columns..]).for_each(unpooled);
    }
    x_dx[2 * oh * w..].iter_mut().for_each(unpooled);
}
