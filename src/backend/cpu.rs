//! CPU reference building blocks shared by the ops: elementwise maps (rayon-parallel for large arrays) and a
//! strided GEMM on the `gemm` crate, which conv, linear and attention use.

use rayon::prelude::*;

/// Below this many elements an elementwise loop stays on one thread.
const PAR_MIN: usize = 1 << 14;

pub fn map(a: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    if a.len() < PAR_MIN {
        a.iter().map(|&x| f(x)).collect()
    } else {
        a.par_iter().map(|&x| f(x)).collect()
    }
}

pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    debug_assert_eq!(a.len(), b.len());
    if a.len() < PAR_MIN {
        a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
    } else {
        a.par_iter().zip(b.par_iter()).map(|(&x, &y)| f(x, y)).collect()
    }
}

/// A row-major matrix operand: `rows × cols`, optionally read transposed.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub transposed: bool,
}

impl<'a> Mat<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        debug_assert!(data.len() >= rows * cols);
        Mat { data, rows, cols, transposed: false }
    }
    /// The transpose of this matrix (no copy).
    pub fn t(self) -> Self {
        Mat { transposed: !self.transposed, ..self }
    }
    /// Logical shape after the transpose flag.
    fn logical(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }
    /// (row stride, column stride) of the logical matrix, in elements.
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// How many threads one GEMM may use.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// Single-threaded: for GEMMs that already run inside a parallel loop.
    One,
    /// Rayon's pool.
    All,
}

/// `c = beta * c + a · b` with `c` row-major `m × n` (`beta` is 0 or 1).
pub fn gemm(c: &mut [f32], a: Mat, b: Mat, accumulate: bool, threads: Threads) {
    let (m, k) = a.logical();
    let (kb, n) = b.logical();
    assert_eq!(k, kb, "gemm inner dimensions");
    assert!(c.len() >= m * n, "gemm output too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (ars, acs) = a.strides();
    let (brs, bcs) = b.strides();
    let par = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(0),
    };
    // SAFETY: the pointers and strides describe in-bounds m×k, k×n and m×n matrices (checked above).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            acs,
            ars,
            b.data.as_ptr(),
            bcs,
            brs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn gemm_matches_naive_with_transposes_and_accumulate() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![9.0; m * n];
        gemm(&mut c, Mat::new(&a, m, k), Mat::new(&b, k, n), false, Threads::All);
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-5);
        }
        // Aᵀ stored as k×m, Bᵀ stored as n×k.
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut c2 = want.clone();
        gemm(&mut c2, Mat::new(&at, k, m).t(), Mat::new(&bt, n, k).t(), true, Threads::One);
        for (x, y) in c2.iter().zip(&want) {
            assert!((x - 2.0 * y).abs() < 1e-5);
        }
    }
}
