//! Thin unaligned load/store helpers over `core::arch::wasm32`.
pub use core::arch::wasm32::*;

/// Loads 4 `f32` from a possibly unaligned address.
#[inline(always)]
pub unsafe fn ld(p: *const f32) -> v128 {
    core::ptr::read_unaligned(p as *const v128)
}

/// Stores 4 `f32` to a possibly unaligned address.
#[inline(always)]
pub unsafe fn st(p: *mut f32, v: v128) {
    core::ptr::write_unaligned(p as *mut v128, v)
}

/// Loads one `f32` and splats it to all 4 lanes.
#[inline(always)]
pub unsafe fn splat(p: *const f32) -> v128 {
    v128_load32_splat(p as *const u32)
}

/// Adds the squares of the 4 lanes of `v` (promoted to `f64`) to `acc`.
#[inline(always)]
pub fn add_squares_f64(acc: v128, v: v128) -> v128 {
    let lo = f64x2_promote_low_f32x4(v);
    let hi = f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(v, v));
    f64x2_add(acc, f64x2_add(f64x2_mul(lo, lo), f64x2_mul(hi, hi)))
}
