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

use core::arch::x86_64::{__m128, __m256, _CMP_LT_OQ, _CMP_ORD_Q, _CMP_UNORD_Q};

use pulp::x86::V3;

/// Columns per vector: four windows.
pub(super) const LANES: usize = 8;

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
fn windows(simd: V3, top: &[f32; LANES], bottom: &[f32; LANES]) -> (__m256, __m256, __m256) {
    let (top_max, top_wins) = pairs(simd, pulp::cast(*top));
    let (bottom_max, bottom_wins) = pairs(simd, pulp::cast(*bottom));
    let bottom_row = later_wins(simd, top_max, bottom_max);
    let max = simd.avx._mm256_blendv_ps(top_max, bottom_max, bottom_row);
    (max, simd.avx._mm256_andnot_ps(bottom_row, top_wins), simd.avx._mm256_and_ps(bottom_row, bottom_wins))
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
            let (max, _, _) = windows(simd, t, b);
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
            let (_, top_wins, bottom_wins) = windows(simd, t, b);
            let g: __m128 = pulp::cast(*g);
            let (low, high) = (simd.sse._mm_unpacklo_ps(g, g), simd.sse._mm_unpackhi_ps(g, g));
            let g = simd.avx._mm256_set_m128(high, low);
            *dt = pulp::cast(simd.avx._mm256_and_ps(top_wins, g));
            *db = pulp::cast(simd.avx._mm256_and_ps(bottom_wins, g));
        }
        dx_top[2 * ow..].fill(0.0);
        dx_bottom[2 * ow..].fill(0.0);
    }
    dx[2 * oh * w..].fill(0.0);
}
