//! Per-output-feature rescale (the DoRA `m / ||W'||` factor), rows or columns.
use crate::simd::*;

pub unsafe fn scale_rows(w: *mut f32, rows: usize, cols: usize, f: *const f32) {
    for r in 0..rows {
        let p = w.add(r * cols);
        let s = splat(f.add(r));
        let mut j = 0;
        while j + 4 <= cols {
            st(p.add(j), f32x4_mul(ld(p.add(j)), s));
            j += 4;
        }
        while j < cols {
            *p.add(j) *= *f.add(r);
            j += 1;
        }
    }
}

pub unsafe fn scale_cols(w: *mut f32, rows: usize, cols: usize, f: *const f32) {
    for r in 0..rows {
        let p = w.add(r * cols);
        let mut j = 0;
        while j + 4 <= cols {
            st(p.add(j), f32x4_mul(ld(p.add(j)), ld(f.add(j))));
            j += 4;
        }
        while j < cols {
            *p.add(j) *= *f.add(j);
            j += 1;
        }
    }
}
