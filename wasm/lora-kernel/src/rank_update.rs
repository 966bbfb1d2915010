//! The one hot loop every LoRA entry point shares: an in-place rank-`k`
//! update of a row-major matrix, computed without materialising the full-size
//! product:
//!
//! `W[r, j] += sum_k (scale * coef[r * c_row + k * c_k]) * vecs[k * cols + j]`
//!
//! Loop order (measured fastest for SIMD128 on x86-64 V8): two rows of `W`
//! per pass; `k` in groups of 4 whose 8 scaled coefficients stay splatted in
//! registers; `j` contiguous, 8 lanes per step. Each group's contribution is
//! summed as a tree, `(c0 v0 + c1 v1) + (c2 v2 + c3 v3)`, and added to `W`.
//! Columns are cut into panels so the 4 `vecs` rows stay in L1. Tails (odd
//! row, `rank % 4`, `cols % 4`) use the same arithmetic in the same order, so
//! a value's result does not depend on its position.
use crate::simd::*;

/// Operands of one rank update (see the module docs).
pub struct Update {
    pub w: *mut f32,
    pub rows: usize,
    pub cols: usize,
    pub coef: *const f32,
    pub c_row: usize,
    pub c_k: usize,
    pub vecs: *const f32,
    pub rank: usize,
    pub scale: f32,
}

/// Columns per panel when rows are long.
const PANEL: usize = 1024;

/// Runs the update over the whole matrix.
pub unsafe fn run(u: &Update) {
    if u.rows == 0 || u.cols == 0 || u.rank == 0 {
        return;
    }
    let mut j0 = 0;
    while j0 < u.cols {
        let j1 = if u.cols - j0 > PANEL + PANEL / 2 { j0 + PANEL } else { u.cols };
        let mut r = 0;
        while r + 2 <= u.rows {
            rows_pass::<2>(u, r, j0, j1);
            r += 2;
        }
        if r < u.rows {
            rows_pass::<1>(u, r, j0, j1);
        }
        j0 = j1;
    }
}

#[inline(always)]
unsafe fn rows_pass<const R: usize>(u: &Update, r0: usize, j0: usize, j1: usize) {
    let mut k = 0;
    while k + 4 <= u.rank {
        group::<R, 4>(u, r0, k, j0, j1);
        k += 4;
    }
    if k + 2 <= u.rank {
        group::<R, 2>(u, r0, k, j0, j1);
        k += 2;
    }
    if k < u.rank {
        group::<R, 1>(u, r0, k, j0, j1);
    }
}

/// `W[r0..r0+R, j0..j1] += sum over k0..k0+G`.
#[inline(always)]
unsafe fn group<const R: usize, const G: usize>(u: &Update, r0: usize, k0: usize, j0: usize, j1: usize) {
    let mut w = [core::ptr::null_mut::<f32>(); R];
    let mut cs = [[0f32; G]; R];
    let mut cv = [[f32x4_splat(0.0); G]; R];
    for q in 0..R {
        w[q] = u.w.add((r0 + q) * u.cols);
        for g in 0..G {
            cs[q][g] = u.scale * *u.coef.add((r0 + q) * u.c_row + (k0 + g) * u.c_k);
            cv[q][g] = f32x4_splat(cs[q][g]);
        }
    }
    let mut v = [core::ptr::null::<f32>(); G];
    for g in 0..G {
        v[g] = u.vecs.add((k0 + g) * u.cols);
    }
    let mut j = j0;
    while j + 8 <= j1 {
        step4::<R, G>(&w, &v, &cv, j);
        step4::<R, G>(&w, &v, &cv, j + 4);
        j += 8;
    }
    if j + 4 <= j1 {
        step4::<R, G>(&w, &v, &cv, j);
        j += 4;
    }
    while j < j1 {
        let mut x = [0f32; G];
        for g in 0..G {
            x[g] = *v[g].add(j);
        }
        for q in 0..R {
            let p = w[q].add(j);
            *p += tree_f32::<G>(&cs[q], &x);
        }
        j += 1;
    }
}

#[inline(always)]
unsafe fn step4<const R: usize, const G: usize>(
    w: &[*mut f32; R],
    v: &[*const f32; G],
    cv: &[[v128; G]; R],
    j: usize,
) {
    let mut x = [f32x4_splat(0.0); G];
    for g in 0..G {
        x[g] = ld(v[g].add(j));
    }
    for q in 0..R {
        let p = w[q].add(j);
        st(p, f32x4_add(ld(p), tree_v128::<G>(&cv[q], &x)));
    }
}

/// `(c0 x0 + c1 x1) + (c2 x2 + c3 x3)` for G = 4, `c0 x0 + c1 x1` for 2, `c0 x0` for 1.
#[inline(always)]
unsafe fn tree_v128<const G: usize>(c: &[v128; G], x: &[v128; G]) -> v128 {
    let t = |i: usize| f32x4_mul(*c.get_unchecked(i), *x.get_unchecked(i));
    if G == 4 {
        f32x4_add(f32x4_add(t(0), t(1)), f32x4_add(t(2), t(3)))
    } else if G == 2 {
        f32x4_add(t(0), t(1))
    } else {
        t(0)
    }
}

/// Scalar twin of [`tree_v128`] (same operations, same order).
#[inline(always)]
unsafe fn tree_f32<const G: usize>(c: &[f32; G], x: &[f32; G]) -> f32 {
    let t = |i: usize| *c.get_unchecked(i) * *x.get_unchecked(i);
    if G == 4 {
        (t(0) + t(1)) + (t(2) + t(3))
    } else if G == 2 {
        t(0) + t(1)
    } else {
        t(0)
    }
}
