//! Optimizer updates in place over flat `f32` tensors, as PyTorch's
//! single-tensor `AdamW` (decoupled decay) and `SGD` compute them, plus the
//! sum of squares and scaling that `clip_grad_norm_` needs. Four lanes at a
//! time; the tail is done one by one with the same operations.
use crate::simd::*;

/// AdamW, one step: `p *= decay; m += (g - m)(1 - b1); v = v b2 + (1 - b2) g^2;
/// p -= step_size * m / (sqrt(v) / bc2_sqrt + eps)`.
pub unsafe fn adamw(
    p: *mut f32, g: *const f32, m: *mut f32, v: *mut f32, n: usize,
    decay: f32, beta1: f32, beta2: f32, eps: f32, step_size: f32, bc2_sqrt: f32,
) {
    let (vd, omb1, vb2, omb2) = (f32x4_splat(decay), f32x4_splat(1.0 - beta1), f32x4_splat(beta2), f32x4_splat(1.0 - beta2));
    let (veps, vstep, vbc2) = (f32x4_splat(eps), f32x4_splat(step_size), f32x4_splat(bc2_sqrt));
    let mut i = 0;
    while i + 4 <= n {
        let gi = ld(g.add(i));
        let mi = f32x4_add(ld(m.add(i)), f32x4_mul(f32x4_sub(gi, ld(m.add(i))), omb1));
        let vi = f32x4_add(f32x4_mul(ld(v.add(i)), vb2), f32x4_mul(omb2, f32x4_mul(gi, gi)));
        let denom = f32x4_add(f32x4_div(f32x4_sqrt(vi), vbc2), veps);
        let pi = f32x4_sub(f32x4_mul(ld(p.add(i)), vd), f32x4_mul(vstep, f32x4_div(mi, denom)));
        st(m.add(i), mi);
        st(v.add(i), vi);
        st(p.add(i), pi);
        i += 4;
    }
    while i < n {
        let gi = *g.add(i);
        let mi = *m.add(i) + (gi - *m.add(i)) * (1.0 - beta1);
        let vi = *v.add(i) * beta2 + (1.0 - beta2) * (gi * gi);
        let denom = sqrt_f32(vi) / bc2_sqrt + eps;
        *m.add(i) = mi;
        *v.add(i) = vi;
        *p.add(i) = *p.add(i) * decay - step_size * (mi / denom);
        i += 1;
    }
}

/// SGD, one step: `d = g + wd p`; with momentum `buf = first ? d : buf mu + (1 - damp) d`,
/// `d = nesterov ? d + mu buf : buf`; `p -= lr d`.
pub unsafe fn sgd(
    p: *mut f32, g: *const f32, buf: *mut f32, n: usize,
    lr: f32, momentum: f32, dampening: f32, weight_decay: f32, nesterov: bool, first: bool,
) {
    for i in 0..n {
        let mut d = *g.add(i);
        if weight_decay != 0.0 {
            d += weight_decay * *p.add(i);
        }
        if momentum != 0.0 {
            let b = if first { d } else { *buf.add(i) * momentum + (1.0 - dampening) * d };
            *buf.add(i) = b;
            d = if nesterov { d + momentum * b } else { b };
        }
        *p.add(i) -= lr * d;
    }
}

/// `sum g[i]^2`, accumulated in `f64`.
pub unsafe fn sum_squares(g: *const f32, n: usize) -> f64 {
    let mut s = f64x2_splat(0.0);
    let mut i = 0;
    while i + 4 <= n {
        s = add_squares_f64(s, ld(g.add(i)));
        i += 4;
    }
    let mut total = f64x2_extract_lane::<0>(s) + f64x2_extract_lane::<1>(s);
    while i < n {
        let v = *g.add(i) as f64;
        total += v * v;
        i += 1;
    }
    total
}

/// `g[i] *= f`.
pub unsafe fn scale(g: *mut f32, n: usize, f: f32) {
    let vf = f32x4_splat(f);
    let mut i = 0;
    while i + 4 <= n {
        st(g.add(i), f32x4_mul(ld(g.add(i)), vf));
        i += 4;
    }
    while i < n {
        *g.add(i) *= f;
        i += 1;
    }
}

/// `sqrt` without `std`: one lane of the SIMD square root (exact, IEEE).
#[inline(always)]
fn sqrt_f32(x: f32) -> f32 {
    f32x4_extract_lane::<0>(f32x4_sqrt(f32x4_splat(x)))
}
