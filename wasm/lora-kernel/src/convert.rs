//! Half-precision conversions, 8 values per SIMD step. Tails (n % 8) go
//! through the same SIMD code on a padded stack copy, so every element gets
//! bit-identical treatment.
use crate::simd::*;

/// 8 u16 in `h` -> two f32x4 (bits) via `cvt` on each widened half.
#[inline(always)]
unsafe fn widen8<F: Fn(v128) -> v128 + Copy>(src: *const u16, dst: *mut f32, n: usize, cvt: F) {
    let mut i = 0;
    while i + 8 <= n {
        let h = core::ptr::read_unaligned(src.add(i) as *const v128);
        st(dst.add(i), cvt(u32x4_extend_low_u16x8(h)));
        st(dst.add(i + 4), cvt(u32x4_extend_high_u16x8(h)));
        i += 8;
    }
    if i < n {
        let mut tin = [0u16; 8];
        let mut tout = [0f32; 8];
        core::ptr::copy_nonoverlapping(src.add(i), tin.as_mut_ptr(), n - i);
        widen8(tin.as_ptr(), tout.as_mut_ptr(), 8, cvt);
        core::ptr::copy_nonoverlapping(tout.as_ptr(), dst.add(i), n - i);
    }
}

/// binary16 (in the low 16 bits of each u32 lane) -> f32 bits.
///
/// Only equality compares (x86 has no unsigned SIMD compare) and no step
/// sees a subnormal `f32` (x86 takes a slow microcode assist on those).
#[inline(always)]
fn f16_lanes(x: v128) -> v128 {
    let sign = i32x4_shl(v128_and(x, u32x4_splat(0x8000)), 16);
    let shifted = i32x4_shl(v128_and(x, u32x4_splat(0x7fff)), 13);
    let exponent = v128_and(shifted, u32x4_splat(0x0f80_0000));
    // Normal: rebias the exponent by 127 - 15.
    let normal = i32x4_add(shifted, u32x4_splat(0x3800_0000));
    // Inf / NaN: rebias once more, to the all-ones exponent; payload kept.
    let is_inf_nan = i32x4_eq(exponent, u32x4_splat(0x0f80_0000));
    let normal = i32x4_add(normal, v128_and(is_inf_nan, u32x4_splat(0x3800_0000)));
    // Zero / subnormal: read as 2^-14 * (1 + m / 1024), then subtract 2^-14
    // (exact: the result is m * 2^-24).
    let is_sub = i32x4_eq(exponent, u32x4_splat(0));
    let sub = f32x4_sub(
        i32x4_add(normal, u32x4_splat(0x0080_0000)),
        f32x4_splat(f32::from_bits(0x3880_0000)),
    );
    v128_or(sign, v128_bitselect(sub, normal, is_sub))
}

#[inline(always)]
fn bf16_lanes(x: v128) -> v128 {
    i32x4_shl(x, 16)
}

pub unsafe fn f16_to_f32(src: *const u16, dst: *mut f32, n: usize) {
    widen8(src, dst, n, f16_lanes);
}

pub unsafe fn bf16_to_f32(src: *const u16, dst: *mut f32, n: usize) {
    widen8(src, dst, n, bf16_lanes);
}

/// f32 bits -> binary16 in the low 16 bits, round to nearest even.
/// NaN becomes a quiet NaN keeping the top 9 payload bits and the sign.
/// Range tests are float compares (one x86 instruction each, false for NaN).
#[inline(always)]
fn f32_lanes(f: v128) -> v128 {
    let sign = v128_and(f, u32x4_splat(0x8000_0000));
    let a = v128_xor(f, sign);
    let is_nan = f32x4_ne(a, a);
    // |f| >= 65520 rounds to infinity.
    let overflow = f32x4_ge(a, f32x4_splat(65520.0));
    let nan = v128_or(u32x4_splat(0x7e00), v128_and(u32x4_shr(a, 13), u32x4_splat(0x03ff)));
    // |f| < 2^-14: the FPU rounds for us when adding 0.5 (ulp there = 2^-24).
    let is_sub = f32x4_lt(a, f32x4_splat(f32::from_bits(0x3880_0000)));
    let sub = i32x4_sub(f32x4_add(a, f32x4_splat(0.5)), u32x4_splat(0x3f00_0000));
    // Normal: rebias, add 0xfff plus the lowest kept mantissa bit, truncate.
    let odd = v128_and(u32x4_shr(a, 13), u32x4_splat(1));
    let norm = i32x4_add(a, i32x4_splat(-(112 << 23) + 0xfff));
    let norm = u32x4_shr(i32x4_add(norm, odd), 13);
    let finite = v128_bitselect(sub, norm, is_sub);
    let finite = v128_bitselect(u32x4_splat(0x7c00), finite, overflow);
    v128_or(u32x4_shr(sign, 16), v128_bitselect(nan, finite, is_nan))
}

pub unsafe fn f32_to_f16(src: *const f32, dst: *mut u16, n: usize) {
    let mut i = 0;
    while i + 8 <= n {
        let lo = f32_lanes(ld(src.add(i)));
        let hi = f32_lanes(ld(src.add(i + 4)));
        core::ptr::write_unaligned(dst.add(i) as *mut v128, u16x8_narrow_i32x4(lo, hi));
        i += 8;
    }
    if i < n {
        let mut tin = [0f32; 8];
        let mut tout = [0u16; 8];
        core::ptr::copy_nonoverlapping(src.add(i), tin.as_mut_ptr(), n - i);
        f32_to_f16(tin.as_ptr(), tout.as_mut_ptr(), 8);
        core::ptr::copy_nonoverlapping(tout.as_ptr(), dst.add(i), n - i);
    }
}
