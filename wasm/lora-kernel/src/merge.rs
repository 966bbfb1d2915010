//! Merge (`W += scale * B @ A`) for both layouts, on a block of `W`'s rows at
//! a time, so the caller can stream a large weight through a small window.
use crate::rank_update::{run, Update};

/// `dst[k * rows + r] = src[r * cols + k]` for `src[rows, cols]`.
pub unsafe fn transpose(src: *const f32, rows: usize, cols: usize, dst: *mut f32) {
    for r in 0..rows {
        for k in 0..cols {
            *dst.add(k * rows + r) = *src.add(r * cols + k);
        }
    }
}

/// Layout "out_in": `W` rows are output features. `w` holds `rows` rows of
/// `inf` values and `b` the matching `rows` rows of `B` (`[rows, rank]`).
pub unsafe fn merge_out_in(
    w: *mut f32, a: *const f32, b: *const f32, rows: usize, inf: usize, rank: usize, scale: f32,
) {
    run(&Update { w, rows, cols: inf, coef: b, c_row: rank, c_k: 1, vecs: a, rank, scale });
}

/// Layout "in_out": `W` rows are input features. `w` holds `rows` rows of
/// `out` values; `a` points at `A[0, i0]` (the block's first column of `A`,
/// whose rows are `a_stride` apart); `bt` is `B^T`, `[rank, out]`.
pub unsafe fn merge_in_out(
    w: *mut f32, rows: usize, a: *const f32, a_stride: usize, bt: *const f32, out: usize,
    rank: usize, scale: f32,
) {
    run(&Update { w, rows, cols: out, coef: a, c_row: 1, c_k: a_stride, vecs: bt, rank, scale });
}
