//! Hints about memory: to the kernel about the engine's largest arrays, and to the processor
//! about what the batch loop reads next.
//!
//! A large array that is read at random, as the id index is, misses the processor's table of
//! page addresses on almost every read when it is mapped in pages of 4 KiB: each read then
//! waits for a walk of the page tables too. Mapped in pages of 2 MiB, the same array needs 512
//! times fewer entries, and the kernel maps it with 512 times fewer page faults.

/// The size of a huge page on the platforms where the engine asks for them.
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the whole huge pages inside `memory` with huge pages, where it
/// supports them (on Linux with transparent huge pages enabled for advised memory). Only
/// advice: the memory keeps its contents, and a kernel that declines changes nothing.
/// Call it before the memory is first written, so that the first write maps a huge page.
pub(crate) fn advise_huge_pages<T>(memory: &mut [T]) {
    let start = memory.as_mut_ptr() as usize;
    let end = start + core::mem::size_of_val(memory);
    let first = start.next_multiple_of(HUGE_PAGE);
    let last = end / HUGE_PAGE * HUGE_PAGE;
    if first >= last {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: madvise with MADV_HUGEPAGE only changes how the kernel maps the range, which lies
    // inside memory this slice owns; it never changes the memory's contents. Its result is
    // ignored on purpose: declining is allowed.
    unsafe {
        libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_HUGEPAGE);
    }
}

/// The size of a cache line on the processors the engine runs on.
const CACHE_LINE: usize = 64;

/// Starts reading every cache line of `value` into the cache, so that a read of it soon after
/// does not wait for memory. Only a hint: it changes nothing the program sees.
#[inline]
pub(crate) fn prefetch<T>(value: &T) {
    let start = (value as *const T).cast::<u8>();
    for offset in (0..core::mem::size_of::<T>()).step_by(CACHE_LINE) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch reads nothing the program sees and never faults, and the address
        // lies inside a live value in any case.
        unsafe {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(start.add(offset).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (start, offset);
    }
}
