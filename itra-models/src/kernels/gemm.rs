//! A bounds-checked, single-threaded `f32` matrix product over slices, on the `gemm` crate.
//!
//! This is the workspace's one use of `unsafe`: `gemm::gemm` takes raw pointers and strides. The
//! safe wrapper checks that every element the strides can reach lies inside its slice before the
//! call, so no caller can make it read or write out of bounds.
#![allow(unsafe_code)]

/// A read-only strided `rows x cols` matrix inside a slice: element `(r, c)` is
/// `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major (C-contiguous) matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose, as a view of the same data.
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

/// Elements spanned by a strided matrix: one past its last element's offset.
fn span(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> usize {
    if rows == 0 || cols == 0 { 0 } else { (rows - 1) * row_stride + (cols - 1) * col_stride + 1 }
}

/// `dst = a * b`, or `dst += a * b` with `accumulate`, for a row-major `dst` of `a.rows x b.cols`.
///
/// # Panics
/// If the shapes disagree or a view reaches past its slice: these are the kernels' own
/// invariants, never user input.
pub(crate) fn matmul(dst: &mut [f32], accumulate: bool, a: MatRef<'_>, b: MatRef<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "matmul: inner dimensions {k} and {} differ", b.rows);
    assert_eq!(dst.len(), m * n, "matmul: destination holds {} elements, not {m}x{n}", dst.len());
    assert!(span(a.rows, a.cols, a.row_stride, a.col_stride) <= a.data.len(), "matmul: lhs view out of bounds");
    assert!(span(b.rows, b.cols, b.row_stride, b.col_stride) <= b.data.len(), "matmul: rhs view out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let stride = |s: usize| isize::try_from(s).expect("matmul: stride exceeds isize");
    // SAFETY: `dst` is a unique borrow of exactly m*n elements written with row stride n and
    // column stride 1; the two asserts above prove that every offset `r * row_stride +
    // c * col_stride` that gemm reads (r < rows, c < cols) lies inside `a.data` and `b.data`.
    // The three slices cannot alias: `dst` is `&mut` while `a` and `b` are shared borrows.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            stride(n),
            accumulate,
            a.data.as_ptr(),
            stride(a.col_stride),
            stride(a.row_stride),
            b.data.as_ptr(),
            stride(b.col_stride),
            stride(b.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &MatRef<'_>, b: &MatRef<'_>) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for p in 0..k {
                    acc += f64::from(a.data[i * a.row_stride + p * a.col_stride])
                        * f64::from(b.data[p * b.row_stride + j * b.col_stride]);
                }
                out[i * n + j] = acc as f32;
            }
        }
        out
    }

    #[test]
    fn matches_a_naive_product_for_every_transpose_and_odd_shapes() {
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 9, 33), (64, 13, 1), (2, 130, 5)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 29 % 19) as f32 - 9.0) / 5.0).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let av = if ta { MatRef::row_major(&a, k, m).t() } else { MatRef::row_major(&a, m, k) };
                let bv = if tb { MatRef::row_major(&b, n, k).t() } else { MatRef::row_major(&b, k, n) };
                let want = naive(m, n, k, &av, &bv);
                let mut got = vec![f32::NAN; m * n];
                matmul(&mut got, false, av, bv);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{m}x{n}x{k} {ta} {tb}: {g} vs {w}");
                }
                matmul(&mut got, true, av, bv);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - 2.0 * w).abs() <= 2e-4 * (1.0 + w.abs()), "accumulate: {g} vs {}", 2.0 * w);
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn refuses_a_view_past_its_slice() {
        let a = vec![0.0f32; 5];
        let b = vec![0.0f32; 6];
        let mut dst = vec![0.0f32; 4];
        matmul(&mut dst, false, MatRef::row_major(&a, 2, 3), MatRef::row_major(&b, 3, 2));
    }
}
