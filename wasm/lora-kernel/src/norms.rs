//! Sums of squares for DoRA weight norms, accumulated in `f64` so that long
//! rows (thousands of terms) keep their precision.
use crate::simd::*;

/// `acc[r] += sum_j W[r, j]^2` for `W[rows, cols]`.
pub unsafe fn add_row_squares(w: *const f32, rows: usize, cols: usize, acc: *mut f64) {
    for r in 0..rows {
        let p = w.add(r * cols);
        let mut s = f64x2_splat(0.0);
        let mut j = 0;
        while j + 4 <= cols {
            s = add_squares_f64(s, ld(p.add(j)));
            j += 4;
        }
        let mut total = f64x2_extract_lane::<0>(s) + f64x2_extract_lane::<1>(s);
        while j < cols {
            let v = *p.add(j) as f64;
            total += v * v;
            j += 1;
        }
        *acc.add(r) += total;
    }
}

/// `acc[j] += sum_r W[r, j]^2` for `W[rows, cols]`.
pub unsafe fn add_col_squares(w: *const f32, rows: usize, cols: usize, acc: *mut f64) {
    for r in 0..rows {
        let p = w.add(r * cols);
        let mut j = 0;
        while j + 4 <= cols {
            let v = ld(p.add(j));
            let lo = f64x2_promote_low_f32x4(v);
            let hi = f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(v, v));
            let a = acc.add(j) as *mut v128;
            core::ptr::write_unaligned(a, f64x2_add(core::ptr::read_unaligned(a), f64x2_mul(lo, lo)));
            let a = a.add(1);
            core::ptr::write_unaligned(a, f64x2_add(core::ptr::read_unaligned(a), f64x2_mul(hi, hi)));
            j += 4;
        }
        while j < cols {
            let v = *p.add(j) as f64;
            *acc.add(j) += v * v;
            j += 1;
        }
    }
}
