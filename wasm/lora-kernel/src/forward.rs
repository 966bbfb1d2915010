//! Unmerged LoRA forward: `y += scale * (x @ A^T) @ B^T` for a batch of rows.
use crate::arena::Scratch;
use crate::merge::transpose;
use crate::rank_update::{run, Update};
use crate::simd::*;
use crate::STATUS_OUT_OF_MEMORY;

/// Elements per `f32` partial sum; partial sums are added up in `f64`, so the
/// rounding error grows with `BLOCK + n / BLOCK` instead of `n`.
const BLOCK: usize = 256;

/// Adds the 4 lanes of `v`, in `f64`, to `acc`.
#[inline(always)]
fn flush(acc: f64, v: v128) -> f64 {
    let lo = f64x2_promote_low_f32x4(v);
    let hi = f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(v, v));
    let s = f64x2_add(lo, hi);
    acc + (f64x2_extract_lane::<0>(s) + f64x2_extract_lane::<1>(s))
}

/// `out[q] = x . a_q` for `G` rows `a_q` of length `n` sharing each load of `x`.
#[inline(always)]
unsafe fn dots<const G: usize>(x: *const f32, a: [*const f32; G], n: usize, out: *mut f32) {
    let mut total = [0f64; G];
    let mut i = 0;
    while i < n {
        let end = if n - i > BLOCK { i + BLOCK } else { n };
        let mut acc = [f32x4_splat(0.0); G];
        while i + 4 <= end {
            let xv = ld(x.add(i));
            for q in 0..G {
                acc[q] = f32x4_add(acc[q], f32x4_mul(xv, ld(a[q].add(i))));
            }
            i += 4;
        }
        for q in 0..G {
            total[q] = flush(total[q], acc[q]);
        }
        while i < end {
            for q in 0..G {
                total[q] += (*x.add(i) * *a[q].add(i)) as f64;
            }
            i += 1;
        }
    }
    for q in 0..G {
        *out.add(q) = total[q] as f32;
    }
}

/// `t[r, k] = x[r, :] . a[k, :]`, four `A` rows per pass over `x[r]`.
unsafe fn project(x: *const f32, rows: usize, a: *const f32, inf: usize, rank: usize, t: *mut f32) {
    for r in 0..rows {
        let xr = x.add(r * inf);
        let tr = t.add(r * rank);
        let mut k = 0;
        while k + 4 <= rank {
            let a0 = a.add(k * inf);
            dots::<4>(xr, [a0, a0.add(inf), a0.add(2 * inf), a0.add(3 * inf)], inf, tr.add(k));
            k += 4;
        }
        while k < rank {
            dots::<1>(xr, [a.add(k * inf)], inf, tr.add(k));
            k += 1;
        }
    }
}

/// `B^T` (`[rank, out]`) in a fresh scratch block.
unsafe fn transposed_b(b: *const f32, out: usize, rank: usize) -> Option<Scratch> {
    let bt = Scratch::new(out.checked_mul(rank)?.checked_mul(4)?)?;
    transpose(b, out, rank, bt.f32());
    Some(bt)
}

pub unsafe fn lora_forward(
    x: *const f32, rows: usize, a: *const f32, b: *const f32, out: usize, inf: usize, rank: usize,
    scale: f32, y: *mut f32,
) -> i32 {
    let t = match rows.checked_mul(rank).and_then(|n| n.checked_mul(4)) {
        Some(bytes) => match Scratch::new(bytes) {
            Some(s) => s,
            None => return STATUS_OUT_OF_MEMORY,
        },
        None => return STATUS_OUT_OF_MEMORY,
    };
    let bt = match transposed_b(b, out, rank) {
        Some(s) => s,
        None => return STATUS_OUT_OF_MEMORY,
    };
    project(x, rows, a, inf, rank, t.f32());
    run(&Update { w: y, rows, cols: out, coef: t.f32(), c_row: rank, c_k: 1, vecs: bt.f32(), rank, scale });
    0
}
