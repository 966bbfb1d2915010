//! LoRA / DoRA math kernels for peft-edge, compiled to `wasm32-unknown-unknown`
//! with SIMD128. `#![no_std]`, no dependencies, no imports: the module only
//! exports its linear memory and the C-ABI functions below.
//!
//! Conventions shared by every export:
//! - pointers are byte offsets into this module's memory, obtained from [`alloc`];
//! - matrices are dense, row-major `f32`;
//! - the caller (the TypeScript wrapper) validates lengths and dims before
//!   calling, so the kernels do no bounds checks;
//! - merges work on a block of `W`'s rows at a time, so the caller can stream
//!   a large weight through a small window of this memory.
//!
//! Shapes follow PEFT: `A` is `[rank, in]`, `B` is `[out, rank]`.
//! Layout "out_in" stores `W` as `[out, in]`; "in_out" stores it as `[in, out]`.
#![no_std]

mod arena;
mod merge;
mod norms;
mod optim;
mod rank_update;
mod rescale;
mod simd;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// Allocates `bytes` bytes (16-byte aligned); returns 0 when memory cannot grow.
#[no_mangle]
pub extern "C" fn alloc(bytes: usize) -> *mut u8 {
    unsafe { arena::allocate(bytes) }
}

/// Frees a block returned by [`alloc`] (blocks are freed in reverse order).
#[no_mangle]
pub extern "C" fn dealloc(ptr: *mut u8, bytes: usize) {
    unsafe { arena::release(ptr, bytes) }
}

/// `dst[k * rows + r] = src[r * cols + k]`: transposes `B` (`[out, rank]`) to
/// the `[rank, out]` operand of [`merge_in_out`] (a small matrix).
#[no_mangle]
pub unsafe extern "C" fn transpose(src: *const f32, rows: usize, cols: usize, dst: *mut f32) {
    merge::transpose(src, rows, cols, dst)
}

/// Layout "out_in", rows `r0..r0+rows` of `W[out, in]`:
/// `w[rows, in] += scale * b[rows, rank] @ A[rank, in]`, where `w` and `b`
/// point at row `r0` of `W` and `B`. No `B @ A` temporary is formed.
#[no_mangle]
pub unsafe extern "C" fn merge_out_in(
    w: *mut f32, a: *const f32, b: *const f32,
    rows: usize, inf: usize, rank: usize, scale: f32,
) {
    merge::merge_out_in(w, a, b, rows, inf, rank, scale)
}

/// Layout "in_out", rows `i0..i0+rows` of `W[in, out]`:
/// `w[i, o] += scale * sum_k a[k * a_stride + i] * bt[k, o]`, where `w`
/// points at row `i0` of `W`, `a` at `A[0, i0]` (`a_stride` = in) and `bt` is
/// `B^T` (`[rank, out]`, see [`transpose`]).
#[no_mangle]
pub unsafe extern "C" fn merge_in_out(
    w: *mut f32, rows: usize, a: *const f32, a_stride: usize, bt: *const f32,
    out: usize, rank: usize, scale: f32,
) {
    merge::merge_in_out(w, rows, a, a_stride, bt, out, rank, scale)
}

/// DoRA norms, layout "out_in": merges rows like [`merge_out_in`] (in place,
/// on the caller's scratch copy) and adds each row's sum of squares to
/// `acc[r]` (`f64`). The norm of output feature `o` is `sqrt(acc[o])`.
#[no_mangle]
pub unsafe extern "C" fn dora_squares_out_in(
    w: *mut f32, a: *const f32, b: *const f32,
    rows: usize, inf: usize, rank: usize, scale: f32, acc: *mut f64,
) {
    merge::merge_out_in(w, a, b, rows, inf, rank, scale);
    norms::add_row_squares(w, rows, inf, acc)
}

/// DoRA norms, layout "in_out": merges rows like [`merge_in_out`] (in place,
/// on the caller's scratch copy) and adds each column's squares to `acc[o]`
/// (`f64`, length `out`), so the sums complete over all row blocks.
#[no_mangle]
pub unsafe extern "C" fn dora_squares_in_out(
    w: *mut f32, rows: usize, a: *const f32, a_stride: usize, bt: *const f32,
    out: usize, rank: usize, scale: f32, acc: *mut f64,
) {
    merge::merge_in_out(w, rows, a, a_stride, bt, out, rank, scale);
    norms::add_col_squares(w, rows, out, acc)
}

/// `W[r, :] *= f[r]` for a `[rows, cols]` matrix.
#[no_mangle]
pub unsafe extern "C" fn scale_rows(w: *mut f32, rows: usize, cols: usize, f: *const f32) {
    rescale::scale_rows(w, rows, cols, f)
}

/// `W[:, c] *= f[c]` for a `[rows, cols]` matrix.
#[no_mangle]
pub unsafe extern "C" fn scale_cols(w: *mut f32, rows: usize, cols: usize, f: *const f32) {
    rescale::scale_cols(w, rows, cols, f)
}

/// AdamW (torch.optim.AdamW, decoupled weight decay) on `n` floats in place.
/// `decay` = `1 - lr * weight_decay`, `step_size` = `lr / (1 - beta1^t)`,
/// `bc2_sqrt` = `sqrt(1 - beta2^t)` (computed by the caller in `f64`).
#[no_mangle]
pub unsafe extern "C" fn adamw_step(
    p: *mut f32, g: *const f32, m: *mut f32, v: *mut f32, n: usize,
    decay: f32, beta1: f32, beta2: f32, eps: f32, step_size: f32, bc2_sqrt: f32,
) {
    optim::adamw(p, g, m, v, n, decay, beta1, beta2, eps, step_size, bc2_sqrt)
}

/// SGD (torch.optim.SGD: weight decay, momentum, dampening, Nesterov) on `n`
/// floats in place; `first` (0/1) starts the momentum buffer at the gradient.
#[no_mangle]
pub unsafe extern "C" fn sgd_step(
    p: *mut f32, g: *const f32, buf: *mut f32, n: usize,
    lr: f32, momentum: f32, dampening: f32, weight_decay: f32, nesterov: u32, first: u32,
) {
    optim::sgd(p, g, buf, n, lr, momentum, dampening, weight_decay, nesterov != 0, first != 0)
}

/// Sum of squares of `n` floats (`f64`), for gradient norms.
#[no_mangle]
pub unsafe extern "C" fn sum_squares(g: *const f32, n: usize) -> f64 {
    optim::sum_squares(g, n)
}

/// `g[i] *= f` on `n` floats (gradient clipping).
#[no_mangle]
pub unsafe extern "C" fn scale_in_place(g: *mut f32, n: usize, f: f32) {
    optim::scale(g, n, f)
}
