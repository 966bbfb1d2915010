//! A stack-like bump allocator over the module's linear memory.
//!
//! Blocks are 16-byte aligned. Freeing the most recent block pops it; when no
//! block is live the arena resets to the heap base, so a caller that allocates,
//! computes and frees reuses the same (grown) memory on every call.
use core::arch::wasm32::{memory_grow, memory_size};

const PAGE: u64 = 65536;

extern "C" {
    static __heap_base: u8;
}

static mut TOP: usize = 0;
static mut LIVE: usize = 0;

fn round16(n: usize) -> Option<usize> {
    Some(n.checked_add(15)? & !15)
}

unsafe fn heap_base() -> usize {
    round16(&__heap_base as *const u8 as usize).unwrap_or(0)
}

pub unsafe fn allocate(bytes: usize) -> *mut u8 {
    if LIVE == 0 {
        TOP = heap_base();
    }
    let size = match round16(bytes) {
        Some(0) => 16,
        Some(s) => s,
        None => return core::ptr::null_mut(),
    };
    let start = TOP;
    let end = match start.checked_add(size) {
        Some(e) => e as u64,
        None => return core::ptr::null_mut(),
    };
    let have = memory_size::<0>() as u64 * PAGE;
    if end > have {
        let pages = ((end - have + PAGE - 1) / PAGE) as usize;
        if memory_grow::<0>(pages) == usize::MAX {
            return core::ptr::null_mut();
        }
    }
    TOP = end as usize;
    LIVE += 1;
    start as *mut u8
}

pub unsafe fn release(ptr: *mut u8, bytes: usize) {
    if LIVE == 0 || ptr.is_null() {
        return;
    }
    LIVE -= 1;
    let size = match round16(bytes) {
        Some(0) | None => 16,
        Some(s) => s,
    };
    if (ptr as usize).wrapping_add(size) == TOP {
        TOP = ptr as usize;
    }
    if LIVE == 0 {
        TOP = heap_base();
    }
}
