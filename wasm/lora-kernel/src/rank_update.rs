//! The one hot loop every LoRA entry point shares: an in-place rank-`k`
//! update of a row-major matrix, computed without materialising the full-size
//! product:
//!
//! `W[r, j] += sum_k (scale * coef[r * c_row + k * c_k]) * vecs[k * cols + j]`
//!
//! Loop order (measured fastest for SIMD128 on x86-64 V8): two rows of `W`
//! per pass; `k` in groups of 4 whose 8 scaled coefficients stay splatted in
//! registers; `j` contiguous, 16 lanes per iteration. Each group's
//! contribution is summed as a tree, `(c0 v0 + c1 v1) + (c2 v2 + c3 v3)`, and
//! added to `W` (so `W` is rounded once per group of 4 `k`). Columns are cut
//! into panels so the 4 `vecs` rows stay in L1. Tails (odd row, `rank % 4`,
//! `cols % 8`) go through [`group`], which does the same arithmetic in the
//! same order, so a value's result does not depend on its position.
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
    let pairs = u.rows / 2 * 2;
    let groups = u.rank / 4 * 4;
    let mut j0 = 0;
    while j0 < u.cols {
        let j1 = if u.cols - j0 > PANEL + PANEL / 2 { j0 + PANEL } else { u.cols };
        let j8 = j0 + (j1 - j0) / 8 * 8;
        // Bulk: row pairs x groups of 4 k x whole 8-lane steps.
        if j8 > j0 && groups > 0 {
            pair4(u.w, u.coef, u.vecs, pairs, u.cols, groups, u.c_row, u.c_k, u.scale, j0, j8);
        }
        // Everything else: column tail of the bulk, rank tail, odd last row.
        let mut r = 0;
        while r < pairs {
            if j8 < j1 {
                for k in (0..groups).step_by(4) {
                    group::<2, 4>(u, r, k, j8, j1);
                }
            }
            rank_tail::<2>(u, r, groups, j0, j1);
            r += 2;
        }
        if r < u.rows {
            for k in (0..groups).step_by(4) {
                group::<1, 4>(u, r, k, j0, j1);
            }
            rank_tail::<1>(u, r, groups, j0, j1);
        }
        j0 = j1;
    }
}

/// The `rank % 4` leftover `k` (from `k0`) for rows `r0..r0+R`.
#[inline(always)]
unsafe fn rank_tail<const R: usize>(u: &Update, r0: usize, k0: usize, j0: usize, j1: usize) {
    let mut k = k0;
    if k + 2 <= u.rank {
        group::<R, 2>(u, r0, k, j0, j1);
        k += 2;
    }
    if k < u.rank {
        group::<R, 1>(u, r0, k, j0, j1);
    }
}

/// The bulk of [`run`]: rows `0..rows` in pairs, `k` in `0..rank4` in groups
/// of 4, columns `j0..j1` (a multiple of 8 wide). The same arithmetic as
/// [`group`]`::<2, 4>`, written out by hand in one small function taking
/// plain scalars: V8 compiled this shape about 15% faster than the generic
/// code reading its operands through `&Update`.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn pair4(
    w: *mut f32,
    coef: *const f32,
    vecs: *const f32,
    rows: usize,
    cols: usize,
    rank4: usize,
    c_row: usize,
    ck: usize,
    s: f32,
    j0: usize,
    j1: usize,
) {
    let mut r = 0;
    while r < rows {
        let w0 = w.add(r * cols);
        let w1 = w0.add(cols);
        let mut k = 0;
        while k < rank4 {
            let b0 = coef.add(r * c_row + k * ck);
            let b1 = b0.add(c_row);
            let c00 = f32x4_splat(s * *b0);
            let c01 = f32x4_splat(s * *b0.add(ck));
            let c02 = f32x4_splat(s * *b0.add(2 * ck));
            let c03 = f32x4_splat(s * *b0.add(3 * ck));
            let c10 = f32x4_splat(s * *b1);
            let c11 = f32x4_splat(s * *b1.add(ck));
            let c12 = f32x4_splat(s * *b1.add(2 * ck));
            let c13 = f32x4_splat(s * *b1.add(3 * ck));
            let a0 = vecs.add(k * cols);
            let a1 = a0.add(cols);
            let a2 = a1.add(cols);
            let a3 = a2.add(cols);
            let step = |jj: usize| {
                let v0 = ld(a0.add(jj));
                let v1 = ld(a1.add(jj));
                let v2 = ld(a2.add(jj));
                let v3 = ld(a3.add(jj));
                let d0 = f32x4_add(
                    f32x4_add(f32x4_mul(c00, v0), f32x4_mul(c01, v1)),
                    f32x4_add(f32x4_mul(c02, v2), f32x4_mul(c03, v3)),
                );
                let d1 = f32x4_add(
                    f32x4_add(f32x4_mul(c10, v0), f32x4_mul(c11, v1)),
                    f32x4_add(f32x4_mul(c12, v2), f32x4_mul(c13, v3)),
                );
                st(w0.add(jj), f32x4_add(ld(w0.add(jj)), d0));
                st(w1.add(jj), f32x4_add(ld(w1.add(jj)), d1));
            };
            let mut j = j0;
            while j + 16 <= j1 {
                for h in 0..4 {
                    step(j + 4 * h);
                }
                j += 16;
            }
            if j < j1 {
                step(j);
                step(j + 4);
            }
            k += 4;
        }
        r += 2;
    }
}

/// `W[r0..r0+R, j0..j1] += sum over k0..k0+G` (the tails of [`run`]).
#[inline(always)]
unsafe fn group<const R: usize, const G: usize>(u: &Update, r0: usize, k0: usize, j0: usize, j1: usize) {
    let mut w = [core::ptr::null_mut::<f32>(); R];
    let mut cv = [[f32x4_splat(0.0); G]; R];
    for q in 0..R {
        w[q] = u.w.add((r0 + q) * u.cols);
        for g in 0..G {
            cv[q][g] = f32x4_splat(u.scale * *u.coef.add((r0 + q) * u.c_row + (k0 + g) * u.c_k));
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
    // Scalar tail. The coefficients are read back from lane 0 of their
    // splats: keeping scalar copies live across the loop above would take
    // registers from it (V8 keeps f32 and v128 values in the same XMM file).
    while j < j1 {
        let mut x = [0f32; G];
        for g in 0..G {
            x[g] = *v[g].add(j);
        }
        for q in 0..R {
            let mut c = [0f32; G];
            for g in 0..G {
                c[g] = f32x4_extract_lane::<0>(cv[q][g]);
            }
            let p = w[q].add(j);
            *p += tree_f32::<G>(&c, &x);
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
