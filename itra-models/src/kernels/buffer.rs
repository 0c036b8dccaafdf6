//! Output buffers zeroed piece by piece inside the parallel loop that fills them.
//!
//! `vec![0.0; n]` zeroes the whole buffer on the calling thread before any work starts: for a
//! convolution's 12.8 MB output that is a serial `memset` of memory the kernel then overwrites,
//! with the other core idle (4.2 % of the samples of the small CNN's training on an Intel Xeon,
//! plus 2 % of page faults under it; `docs/benchmarks.md`). Here each parallel task zeroes one piece just before its kernel writes
//! it, so the zeroing is spread over the threads and the piece is in the task's cache when the
//! kernel starts. The kernels see an ordinary zeroed `&mut [f32]`, so their results are the same
//! bits as with `vec![0.0; n]`.
//!
//! The second `unsafe` module of the workspace (with `gemm.rs`): viewing written
//! `MaybeUninit<f32>` as `f32`, and setting the vector's length once every piece is written.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// `len` floats in pieces of `piece` elements (the last may be shorter): each piece is zeroed
/// and handed to `fill` with its index, in parallel, with one `init()` scratch per rayon job.
/// Jobs take at least `min_pieces` pieces, to amortise a job's start and its scratch.
pub(crate) fn par_zeroed_pieces<S, I, F>(len: usize, piece: usize, min_pieces: usize, init: I, fill: F) -> Vec<f32>
where
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, usize, &mut [f32]) + Sync + Send,
{
    let mut out = Vec::<f32>::with_capacity(len);
    if len == 0 {
        return out;
    }
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(piece.max(1))
        .with_min_len(min_pieces.max(1))
        .enumerate()
        .for_each_init(init, |scratch, (i, piece)| fill(scratch, i, zeroed(piece)));
    // SAFETY: `par_chunks_mut` covers `spare_capacity_mut()[..len]` (capacity is at least
    // `len`) with disjoint pieces, and the loop wrote every one of them (`zeroed`) before this
    // line is reached: a panicking task propagates out of `for_each_init` first, leaving the
    // length 0.
    unsafe { out.set_len(len) };
    out
}

/// Writes `+0.0` to every element and returns the piece as initialised floats.
fn zeroed(piece: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for x in piece.iter_mut() {
        x.write(0.0);
    }
    // SAFETY: every element was written on the lines above, and `MaybeUninit<f32>` has the size,
    // alignment and ABI of `f32`; the returned borrow is the input's, so nothing else aliases it.
    unsafe { &mut *(piece as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_starts_at_zero_and_keeps_what_fill_wrote() {
        // 10 elements in pieces of 4: 4, 4, 2. Pieces 0 and 2 are written, piece 1 left alone.
        let out = par_zeroed_pieces(
            10,
            4,
            1,
            || (),
            |(), i, piece| {
                assert!(piece.iter().all(|&x| x.to_bits() == 0), "piece {i} arrives as +0");
                if i != 1 {
                    for (j, x) in piece.iter_mut().enumerate() {
                        *x = (10 * i + j) as f32;
                    }
                }
            },
        );
        assert_eq!(out, [0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0, 20.0, 21.0]);
    }

    #[test]
    fn an_empty_buffer_calls_nothing() {
        let out = par_zeroed_pieces(0, 4, 1, || (), |(), _, _| panic!("no piece to fill"));
        assert!(out.is_empty());
    }

    #[test]
    fn pieces_cover_the_buffer_in_order_when_jobs_take_several() {
        // 1000 elements in pieces of 7 (the last 6 long), jobs of at least 5 pieces: each piece
        // writes its own index, so a wrong index or an uncovered element shows.
        let out = par_zeroed_pieces(1000, 7, 5, || (), |(), i, piece| piece.fill(i as f32));
        assert_eq!(out.len(), 1000);
        for (k, &x) in out.iter().enumerate() {
            assert_eq!(x, (k / 7) as f32, "element {k}");
        }
    }
}
