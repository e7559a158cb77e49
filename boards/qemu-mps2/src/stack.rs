//! Peak stack use, measured by painting: fill the free stack below the current frame with a
//! pattern, run the code, and find the lowest word it overwrote.
#![allow(unsafe_code)] // reading and writing the free stack needs raw pointers

use core::ptr::{read_volatile, write_volatile};

const PATTERN: u32 = 0xA5C3_5A3C;
/// How far below the caller's frame to paint: more than any code measured here may use.
const PAINT_BYTES: usize = 32 * 1024;
/// Headroom left untouched right below the current stack pointer (this function's own frame).
const GUARD_BYTES: usize = 256;

/// Runs `f` and returns its result with the bytes of stack it used below the caller's frame.
#[inline(never)]
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let sp = cortex_m::register::msp::read() as usize;
    let top = (sp - GUARD_BYTES) & !3;
    let bottom = top - PAINT_BYTES;
    let mut addr = bottom;
    while addr < top {
        // SAFETY: [bottom, top) is free stack below the current frame, inside RAM.
        unsafe { write_volatile(addr as *mut u32, PATTERN) };
        addr += 4;
    }
    let result = f();
    let mut lowest = top;
    let mut addr = bottom;
    while addr < top {
        // SAFETY: as above; only reads.
        if unsafe { read_volatile(addr as *const u32) } != PATTERN {
            lowest = addr;
            break;
        }
        addr += 4;
    }
    (result, top - lowest)
}
