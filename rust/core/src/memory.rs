//! How the engine uses memory: arrays mapped ahead, by the maker thread or by a caller who
//! reserves room, and in huge pages where they are read at random; hints to the processor about
//! what the batch loop reads next; and stores that bypass the cache for what it writes far ahead
//! of any read.
//!
//! A large array that is read at random, as the account log is, misses the processor's table of
//! page addresses on almost every read when it is mapped in pages of 4 KiB: each read then
//! waits for a walk of the page tables too. Mapped in pages of 2 MiB, the same array needs 512
//! times fewer entries. But the kernel here maps fresh memory in huge pages six times slower
//! than in small ones (10 against 1.5 ms for 4 MiB), so memory that must be mapped fast, as the
//! segments of a log that the batch loop fills at 1.8 GB/s, is mapped in small pages.

use std::alloc::{self, Layout};
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::panic::{self, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::{fmt, mem, process, slice, thread};

/// The size of a huge page on the platforms where the engine asks for them.
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the whole huge pages among the `bytes` bytes at `start` with huge
/// pages, where it supports them (on Linux with transparent huge pages enabled for advised
/// memory). Only advice: the memory keeps its contents, and a kernel that declines changes
/// nothing. Call it before the memory is first written, so that the first write maps a huge page.
#[cfg(all(target_os = "linux", not(feature = "portable-memory")))]
fn advise_huge_pages(start: *mut u8, bytes: usize) {
    let first = (start as usize).next_multiple_of(HUGE_PAGE);
    let last = (start as usize + bytes) / HUGE_PAGE * HUGE_PAGE;
    if first >= last {
        return;
    }
    // SAFETY: madvise with MADV_HUGEPAGE only changes how the kernel maps the range, which lies
    // inside memory the caller owns; it never changes the memory's contents. Its result is
    // ignored on purpose: declining is allowed.
    unsafe {
        libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_HUGEPAGE);
    }
}

/// Elsewhere there is no such advice for memory already allocated (Windows maps large pages
/// only for a privileged process that asks for them when it allocates), so none is given.
#[cfg(not(all(target_os = "linux", not(feature = "portable-memory"))))]
fn advise_huge_pages(_start: *mut u8, _bytes: usize) {}

/// The size of a page the kernel maps at a time (at least).
const PAGE: usize = 4096;

/// How much memory one call of `populate` maps: the kernel holds a lock of the process's memory
/// map while it does, which another thread's own mapping of memory then waits for.
#[cfg(target_os = "linux")]
const POPULATE_BYTES: usize = 1 << 20;

/// Has the kernel map every page of the `bytes` at `start` as a first write to each would,
/// without writing to them; false where the kernel cannot (before Linux 5.14), and then it
/// mapped none or some. One call maps a page in about two thirds of the time a write's page
/// fault takes here.
#[cfg(target_os = "linux")]
fn populate(start: *mut u8, bytes: usize) -> bool {
    for offset in (0..bytes).step_by(POPULATE_BYTES) {
        let chunk = POPULATE_BYTES.min(bytes - offset);
        // SAFETY: MADV_POPULATE_WRITE only maps the pages of the range, memory this process has
        // mapped, which it neither reads nor writes: what they hold stays as it was.
        let done = unsafe {
            libc::madvise(start.add(offset).cast(), chunk, libc::MADV_POPULATE_WRITE) == 0
        };
        if !done {
            return false;
        }
    }
    true
}

/// Elsewhere the kernel has no such call: the pages are mapped by writing to them.
#[cfg(not(target_os = "linux"))]
fn populate(_start: *mut u8, _bytes: usize) -> bool {
    false
}

/// Maps all the pages of `room` now, on the thread that calls it: writing to memory for the
/// first time makes the kernel map (and zero) it then, page by page. `populate` if `at_once`:
/// quicker, but the kernel holds the lock of the process's memory map meanwhile, so only a thread
/// that the batch loop waits for anyway asks for it. On the maker thread, then at the lowest
/// priority, a loop posting back to back waited up to 330 ms for that lock to map a segment of
/// its own, while the maker waited for a core.
fn map_pages<T>(room: &mut [MaybeUninit<T>], at_once: bool) {
    let (start, bytes) = (room.as_mut_ptr().cast::<u8>(), mem::size_of_val(room));
    if at_once && populate(start, bytes) {
        return;
    }
    for offset in (0..bytes).step_by(PAGE) {
        // SAFETY: the byte lies in `room`, memory that holds no value yet; any byte may be
        // written there. Volatile, because the compiler would otherwise drop a store that
        // nothing reads.
        unsafe { start.add(offset).write_volatile(0) };
    }
}

/// Memory of whole huge pages that starts at one, for a `HugeVec` that spans half a huge page
/// or more. On Linux it is mapped from the kernel directly, which can then grow it by moving its
/// pages, huge ones whole, to a larger place: growing a large account log by copying it had one
/// batch of accounts wait for the kernel to map every page of the copy (180 ms for 64 MiB here).
/// Elsewhere (and on Linux with the `portable-memory` feature, which tests that path) it comes
/// from the allocator, and grows by copying.
mod kernel_pages {
    use super::HUGE_PAGE;

    #[cfg(all(target_os = "linux", not(feature = "portable-memory")))]
    /// Maps `bytes` (whole huge pages) that start at a huge page; null if the kernel refuses.
    ///
    /// # Safety
    ///
    /// `bytes` is a non-zero multiple of `HUGE_PAGE`; the memory is given back with `unmap`.
    pub(super) unsafe fn map(bytes: usize) -> *mut u8 {
        // Room for the memory wherever in a huge page the mapping starts; the rest is unmapped.
        let Some(room) = bytes.checked_add(HUGE_PAGE) else {
            return std::ptr::null_mut();
        };
        let (read_write, private) =
            (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS);
        // SAFETY: a new anonymous mapping, which touches no memory of the program.
        let mapped = unsafe { libc::mmap(std::ptr::null_mut(), room, read_write, private, -1, 0) };
        if mapped == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        let mapped = mapped.cast::<u8>();
        let head = (mapped as usize).next_multiple_of(HUGE_PAGE) - mapped as usize;
        // SAFETY: the head and the tail lie in the mapping just made, outside the memory kept.
        unsafe {
            if head > 0 {
                libc::munmap(mapped.cast(), head);
            }
            if room - head > bytes {
                libc::munmap(mapped.add(head + bytes).cast(), room - head - bytes);
            }
            mapped.add(head)
        }
    }

    #[cfg(all(target_os = "linux", not(feature = "portable-memory")))]
    /// Gives back memory from `map` (or `remap`).
    ///
    /// # Safety
    ///
    /// `start` and `bytes` are those of memory from `map` or `remap`, used no more.
    pub(super) unsafe fn unmap(start: *mut u8, bytes: usize) {
        // SAFETY: the caller's promise. A failure could only leave the memory mapped.
        unsafe { libc::munmap(start.cast(), bytes) };
    }

    #[cfg(all(target_os = "linux", not(feature = "portable-memory")))]
    /// Moves the pages of the `bytes` at `start` (from `map`) into the first part of
    /// `new_bytes` that start at a huge page, and returns where; null if the kernel refuses,
    /// and then the memory stays where it was. The place made for the move is then left as it
    /// is: older kernels unmap it before checks that may still fail, and by then another
    /// thread may have mapped something there.
    ///
    /// # Safety
    ///
    /// As for `unmap`; `new_bytes` is a larger multiple of `HUGE_PAGE`. On success, the old
    /// place is used no more.
    pub(super) unsafe fn remap(start: *mut u8, bytes: usize, new_bytes: usize) -> *mut u8 {
        // A place of its own that starts at a huge page, which the pages then replace.
        // SAFETY: as for `map`.
        let target = unsafe { map(new_bytes) };
        if target.is_null() {
            return target;
        }
        let moving = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
        // SAFETY: both places are mappings of this module's own, which the move replaces.
        let moved = unsafe { libc::mremap(start.cast(), bytes, new_bytes, moving, target) };
        if moved == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        moved.cast()
    }

    #[cfg(not(all(target_os = "linux", not(feature = "portable-memory"))))]
    fn layout(bytes: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(bytes, HUGE_PAGE).expect("checked by the caller")
    }

    #[cfg(not(all(target_os = "linux", not(feature = "portable-memory"))))]
    pub(super) unsafe fn map(bytes: usize) -> *mut u8 {
        // SAFETY: the size is not zero.
        unsafe { std::alloc::alloc(layout(bytes)) }
    }

    #[cfg(not(all(target_os = "linux", not(feature = "portable-memory"))))]
    pub(super) unsafe fn unmap(start: *mut u8, bytes: usize) {
        // SAFETY: allocated by `map` (or `remap`) with this layout.
        unsafe { std::alloc::dealloc(start, layout(bytes)) };
    }

    #[cfg(not(all(target_os = "linux", not(feature = "portable-memory"))))]
    pub(super) unsafe fn remap(start: *mut u8, bytes: usize, new_bytes: usize) -> *mut u8 {
        // SAFETY: as for `map`; the old memory holds `bytes` and is freed once copied.
        unsafe {
            let target = map(new_bytes);
            if !target.is_null() {
                std::ptr::copy_nonoverlapping(start, target, bytes);
                unmap(start, bytes);
            }
            target
        }
    }
}

/// A vector whose records start at a huge page once they span one: the engine's account log,
/// and each segment of a log (`log::Log`). The allocator places a `Vec` of a few MiB a page or
/// so past a huge page's start, and the kernel backs with a huge page only a whole aligned 2 MiB
/// inside what was asked: half of a 4 MiB segment of transfers, no 1.5 MiB segment of movements
/// and no account log under 4 MiB got them. A `HugeVec` whose size is a multiple of a huge page
/// gets them all where the kernel grants them (`mapped`, `reserve`).
///
/// Reading the accounts of a batch at random, from pages of 4 KiB, waited for a walk of the page
/// tables at each of their pages that other work had pushed out of the processor's table since
/// the last batch: a tenth to a fifth of the time of a batch of 8189 transfers among 10,000
/// accounts, after a few milliseconds of other work.
pub(crate) struct HugeVec<T> {
    start: NonNull<T>,
    len: usize,
    capacity: usize,
}

// SAFETY: a `HugeVec` owns its records as a `Vec` does.
unsafe impl<T: Send> Send for HugeVec<T> {}
// SAFETY: as above; `&HugeVec` gives out only shared references to records.
unsafe impl<T: Sync> Sync for HugeVec<T> {}

impl<T> HugeVec<T> {
    pub(crate) const fn new() -> Self {
        Self { start: NonNull::dangling(), len: 0, capacity: 0 }
    }

    /// The layout of room for `capacity` records: from half a huge page on, whole huge pages
    /// starting at one, which the kernel can back with huge pages alone; below that, aligned to
    /// a cache line, where a huge page would mostly waste memory.
    fn layout(capacity: usize) -> Layout {
        const { assert!(size_of::<T>() > 0 && align_of::<T>() <= CACHE_LINE) };
        let bytes = size_of::<T>().checked_mul(capacity).expect("a vector fits in memory");
        let (bytes, align) = if bytes >= HUGE_PAGE / 2 {
            let bytes = bytes.checked_next_multiple_of(HUGE_PAGE);
            (bytes.expect("a vector fits in memory"), HUGE_PAGE)
        } else {
            (bytes, CACHE_LINE)
        };
        Layout::from_size_align(bytes, align).expect("a vector fits in memory")
    }

    /// An empty vector with room for `capacity` records, whose pages the kernel maps when they
    /// are first written.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        if capacity == 0 {
            return Self::new();
        }
        let layout = Self::layout(capacity);
        // SAFETY: the layout's size is not zero; the memory is freed in `drop` with the layout.
        let start = if layout.align() == HUGE_PAGE {
            unsafe { kernel_pages::map(layout.size()) }
        } else {
            unsafe { alloc::alloc(layout) }
        };
        let start = NonNull::new(start.cast()).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        Self { start, len: 0, capacity }
    }

    /// An empty vector with room for `capacity` records, all its pages mapped (`map_pages`, at
    /// once if `at_once`), in huge pages if `huge_pages` and the kernel grants them. The kernel
    /// may first have to gather free memory into huge pages, which took up to 20 ms here: so
    /// only threads that no batch waits for ask for them.
    pub(crate) fn mapped(capacity: usize, huge_pages: bool, at_once: bool) -> Self {
        let mut records = Self::with_capacity(capacity);
        if huge_pages {
            records.advise_huge_pages();
        }
        map_pages(records.spare_capacity_mut(), at_once);
        records
    }

    /// Advises huge pages for all the memory, before its first write: advice for a part of a
    /// mapping would split it in two, which the kernel then refuses to move (`reserve`).
    pub(crate) fn advise_huge_pages(&self) {
        let bytes = Self::layout(self.capacity).size();
        advise_huge_pages(self.start.as_ptr().cast(), bytes);
    }

    /// Makes room for `additional` more records: into memory twice the size, or as large as
    /// needed, and all the room its layout gives, in huge pages where the kernel grants them.
    pub(crate) fn reserve(&mut self, additional: usize) {
        if self.capacity - self.len >= additional {
            return;
        }
        let needed = self.len.checked_add(additional).expect("a vector fits in memory");
        let doubled = self.capacity.saturating_mul(2);
        let (old, new) = (Self::layout(self.capacity), Self::layout(needed.max(doubled)));
        let capacity = new.size() / size_of::<T>();
        if self.capacity > 0 && old.align() == HUGE_PAGE {
            // SAFETY: the memory was mapped with the old layout, and holds the records. The
            // pages moved keep their advice for huge pages, as do those the move adds.
            let start =
                unsafe { kernel_pages::remap(self.start.as_ptr().cast(), old.size(), new.size()) };
            self.start =
                NonNull::new(start.cast()).unwrap_or_else(|| alloc::handle_alloc_error(new));
            self.capacity = capacity;
        } else {
            let mut grown = Self::with_capacity(capacity);
            grown.advise_huge_pages();
            // SAFETY: both hold room for `len` records and do not overlap; the records move, and
            // the old vector, emptied, frees its memory without dropping them.
            unsafe {
                ptr::copy_nonoverlapping(self.start.as_ptr(), grown.start.as_ptr(), self.len)
            };
            (grown.len, self.len) = (self.len, 0);
            *self = grown;
        }
    }

    /// Appends copies of `record` until the vector holds `len` records.
    pub(crate) fn resize(&mut self, len: usize, record: T)
    where
        T: Copy,
    {
        self.reserve(len.saturating_sub(self.len));
        while self.len < len {
            // SAFETY: the place after the last record lies in the allocation and holds none.
            unsafe { self.start.add(self.len).write(record) };
            self.len += 1;
        }
    }

    pub(crate) fn push(&mut self, record: T) {
        self.reserve(1);
        // SAFETY: the place after the last record lies in the allocation and holds no record.
        unsafe { self.start.add(self.len).write(record) };
        self.len += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        self.len = self.len.checked_sub(1)?;
        // SAFETY: the record at the old last place was initialized, and is no longer counted.
        Some(unsafe { self.start.add(self.len).read() })
    }

    fn spare_capacity_mut(&mut self) -> &mut [MaybeUninit<T>] {
        // SAFETY: the places after the records lie in the allocation (or, with no allocation,
        // are none) and hold no record.
        unsafe {
            let spare = self.start.add(self.len).cast::<MaybeUninit<T>>();
            slice::from_raw_parts_mut(spare.as_ptr(), self.capacity - self.len)
        }
    }
}

impl HugeVec<u64> {
    /// A vector of `len` zeros. Memory of huge-page layout comes from the kernel zeroed, and its
    /// pages are mapped when first written.
    pub(crate) fn zeros(len: usize) -> Self {
        let mut zeros = Self::with_capacity(len);
        if Self::layout(len).align() != HUGE_PAGE {
            zeros.resize(len, 0);
            return zeros;
        }
        // The kernel maps anonymous memory zeroed: every one of the first `len` places holds a
        // valid u64, 0.
        zeros.len = len;
        zeros
    }

    /// A vector of `len` zeros whose pages are all mapped now, in huge pages where the kernel
    /// grants them (`mapped`, at once): for an array read and written at random from its first
    /// use on.
    pub(crate) fn mapped_zeros(len: usize) -> Self {
        if Self::layout(len).align() != HUGE_PAGE {
            return Self::zeros(len);
        }
        let mut zeros = Self::mapped(len, true, true);
        // As in `zeros`: mapping a page of the kernel's memory, by a write of zero or without
        // one, leaves it all zeros.
        zeros.len = len;
        zeros
    }
}

/// Frees `value` on the maker thread, or here if there is none: giving a large array back to
/// the kernel unmaps each of its pages, which the batch loop need not wait for.
pub(crate) fn drop_elsewhere<T: Send + 'static>(value: T) {
    let _ = Making::start(move || drop(value));
}

impl<T> Default for HugeVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// How many records it holds, not the records: a million of them say nothing.
impl<T> fmt::Debug for HugeVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HugeVec").field("len", &self.len).finish_non_exhaustive()
    }
}

impl<T> Deref for HugeVec<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: the first `len` places hold initialized records (with no allocation, `len`
        // is 0 and the pointer dangles, aligned, as an empty slice's may).
        unsafe { slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for HugeVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, borrowed mutably through `self`.
        unsafe { slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl<'a, T> IntoIterator for &'a HugeVec<T> {
    type Item = &'a T;
    type IntoIter = slice::Iter<'a, T>;

    fn into_iter(self) -> slice::Iter<'a, T> {
        self.iter()
    }
}

impl<T> Drop for HugeVec<T> {
    fn drop(&mut self) {
        // SAFETY: the records are initialized and dropped once, here.
        unsafe { ptr::drop_in_place::<[T]>(&mut **self) };
        if self.capacity > 0 {
            let (start, layout) = (self.start.as_ptr().cast(), Self::layout(self.capacity));
            // SAFETY: the memory was allocated in `with_capacity` with this layout (or moved
            // with it by `reserve`).
            if layout.align() == HUGE_PAGE {
                unsafe { kernel_pages::unmap(start, layout.size()) };
            } else {
                unsafe { alloc::dealloc(start, layout) };
            }
        }
    }
}

/// A value that the maker thread of this process is making: a segment of a log made ahead, or
/// the next array of an id index.
///
/// One thread makes them all, one at a time, in the order asked, in short slices. With a thread
/// per value, a loop posting ready batches back to back had up to nine of them mapping pages
/// beside it on a machine of two cores; the scheduler then took the loop's core away for a slice
/// of 4-6 ms now and then, and that batch took eight times its usual time. One maker uses at most
/// one core, and in slices of a tenth of a millisecond where it shares the loop's
/// (`maker::short_slices`).
#[derive(Debug)]
pub(crate) struct Making<T> {
    made: Arc<Made<T>>,
    /// The process that asked. A process forked from it meanwhile has no maker thread of this
    /// one: waiting for the value there would wait forever.
    process: u32,
}

/// Where the maker leaves a value: `Some(None)` if making it failed (panicked).
#[derive(Debug)]
struct Made<T> {
    value: Mutex<Option<Option<T>>>,
    done: Condvar,
}

impl<T: Send + 'static> Making<T> {
    /// Has the maker thread make a value with `make`, after those asked for before; `None` if
    /// the system refused the maker a thread, and then the caller makes the value itself when it
    /// needs it.
    pub(crate) fn start(make: impl FnOnce() -> T + Send + 'static) -> Option<Self> {
        let made = Arc::new(Made { value: Mutex::new(None), done: Condvar::new() });
        let slot = Arc::clone(&made);
        maker::ask(Box::new(move || {
            let value = panic::catch_unwind(AssertUnwindSafe(make)).ok();
            *lock(&slot.value) = Some(value);
            slot.done.notify_all();
        }))?;
        Some(Self { made, process: process::id() })
    }

    fn started_here(&self) -> bool {
        self.process == process::id()
    }

    /// As if this process were forked from the one that asked for the value.
    #[cfg(test)]
    pub(crate) fn seen_from_a_forked_process(mut self) -> Self {
        self.process = self.process.wrapping_add(1);
        self
    }

    /// Whether `finish` would answer without waiting.
    pub(crate) fn is_finished(&self) -> bool {
        !self.started_here() || lock(&self.made.value).is_some()
    }

    /// The value, once the maker has made it; `None` in a process forked since it was asked
    /// for, or if making it failed.
    pub(crate) fn finish(self) -> Option<T> {
        if !self.started_here() {
            return None;
        }
        let mut value = lock(&self.made.value);
        loop {
            if let Some(made) = value.take() {
                return made;
            }
            value = self.made.done.wait(value).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A lock that a panic elsewhere never poisons for good: what it guards is whole at each unlock.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The maker thread of this process, started when first asked.
mod maker {
    use std::sync::mpsc::{self, Sender};
    use std::sync::{Mutex, TryLockError};
    use std::{mem, process, thread};

    pub(super) type Job = Box<dyn FnOnce() + Send>;

    struct Maker {
        process: u32,
        jobs: Sender<Job>,
    }

    static MAKER: Mutex<Option<Maker>> = Mutex::new(None);

    /// How many times `ask` tries the lock, which another thread holds for a few microseconds
    /// at most, before it gives up.
    const TRIES: usize = 1000;

    /// Queues `job` for the maker; `None` if no maker could be had. It never blocks on the lock:
    /// in a process forked while another thread held it, nothing would ever release it, and the
    /// caller can always make the value itself.
    pub(super) fn ask(job: Job) -> Option<()> {
        let mut maker = (0..TRIES).find_map(|_| match MAKER.try_lock() {
            Ok(maker) => Some(maker),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => {
                thread::yield_now();
                None
            }
        })?;
        let job = match maker.as_ref().filter(|m| m.process == process::id()) {
            Some(m) => match m.jobs.send(job) {
                Ok(()) => return Some(()),
                Err(unsent) => unsent.0,
            },
            None => job,
        };
        let (jobs, queue) = mpsc::channel::<Job>();
        let run = move || {
            short_slices();
            queue.into_iter().for_each(|job| job());
        };
        thread::Builder::new().name("fastledger-maker".into()).spawn(run).ok()?;
        jobs.send(job).ok()?;
        // The maker of the process this one was forked from exists only there: leave its
        // queue as it is.
        mem::forget(maker.replace(Maker { process: process::id(), jobs }));
        Some(())
    }

    /// The slice of processor time the maker asks for at a time (the kernel's least).
    #[cfg(target_os = "linux")]
    const SLICE_NS: u64 = 100_000;

    /// Asks the scheduler to run the calling thread in short slices, at the priority of the
    /// threads beside it. Where the maker shares the batch loop's core, the loop then waits a
    /// tenth of a millisecond at a time instead of the usual 3 ms. It keeps the usual priority:
    /// at the lowest, it waited for a core for tens of milliseconds on a busy machine while
    /// holding the lock of the process's memory map, which a page fault takes, and the loop,
    /// mapping memory of its own, waited for it (a batch of 40 ms, and one of 198 ms). Kernels
    /// before 6.12 refuse the call and keep the usual slice.
    fn short_slices() {
        /// The kernel's `struct sched_attr` (its first version, of 56 bytes).
        #[cfg(target_os = "linux")]
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
            util_min: u32,
            util_max: u32,
        }
        #[cfg(target_os = "linux")]
        {
            let attr = SchedAttr {
                size: size_of::<SchedAttr>() as u32,
                policy: libc::SCHED_OTHER as u32,
                flags: 0,
                nice: 0,
                priority: 0,
                runtime: SLICE_NS,
                deadline: 0,
                period: 0,
                util_min: 0,
                util_max: 0,
            };
            // SAFETY: sched_setattr reads the attributes of `attr`, which lives through the
            // call, for the calling thread (0); a refusal changes nothing.
            unsafe {
                libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0);
            }
        }
    }
}

/// The size of a cache line on the processors the engine runs on.
const CACHE_LINE: usize = 64;

/// Starts reading every cache line of `value` into the cache, so that a read of it soon after
/// does not wait for memory. Only a hint: it changes nothing the program sees.
#[inline]
pub(crate) fn prefetch<T>(value: &T) {
    // A value that does not start a line (a record of a Python buffer) spans one line more.
    let value = (value as *const T).cast::<u8>();
    let start = value.wrapping_sub(value as usize % CACHE_LINE);
    let end = value as usize + core::mem::size_of::<T>();
    for offset in (0..end - start as usize).step_by(CACHE_LINE) {
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

/// A record type whose every byte is initialized (no padding) and whose size and alignment are
/// multiples of 16 bytes, so that `stream` may copy it in 16-byte pieces.
///
/// # Safety
///
/// Implement it only for such a type (`repr(C)`, fields that tile it exactly).
pub(crate) unsafe trait Plain: Copy {}

/// A record of two numbers, which may be streamed: for the tests of this module and of logs.
#[cfg(test)]
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Pair(pub(crate) usize, pub(crate) usize);

// SAFETY: two 8-byte fields tile the 16 bytes exactly.
#[cfg(test)]
unsafe impl Plain for Pair {}

/// Appends `record` to `records`, which has room for it, with non-temporal stores: they go to
/// memory without first reading the lines they fill into the cache, and without pushing other
/// lines out of it. For a log that the batch loop writes far ahead of any read of it.
///
/// The stores are weakly ordered: before the memory they wrote is read again, by this thread
/// or (after it is handed over) by another, this thread must call `store_fence`.
pub(crate) fn stream<T: Plain>(records: &mut HugeVec<T>, record: &T) {
    const { assert!(size_of::<T>() % 16 == 0 && align_of::<T>() % 16 == 0) };
    let slot = records.spare_capacity_mut().first_mut().expect("room for the record");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `from` and `to` are 16-byte aligned (`T` is) and span one `T` each, every byte of
    // which `record` has initialized (`T: Plain`); `slot` is memory `records` owns.
    unsafe {
        use core::arch::x86_64::{__m128i, _mm_stream_si128};
        let from = (record as *const T).cast::<__m128i>();
        let to = slot.as_mut_ptr().cast::<__m128i>();
        for piece in 0..size_of::<T>() / 16 {
            _mm_stream_si128(to.add(piece), from.add(piece).read());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    slot.write(*record);
    // The slot after the last record now holds a whole record.
    records.len += 1;
}

/// Fences the non-temporal stores of this thread if it unwinds from a panic before it could
/// fence them as it does on the way out: the thread that streamed them must.
pub(crate) struct FenceOnUnwind;

impl Drop for FenceOnUnwind {
    fn drop(&mut self) {
        if thread::panicking() {
            store_fence();
        }
    }
}

/// Orders the non-temporal stores of this thread before all its later loads and stores: after
/// it, the memory they wrote reads as written, here and on any thread this one hands it to.
#[inline]
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a fence has no operands and no effect beyond ordering.
    unsafe {
        core::arch::x86_64::_mm_sfence();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn a_huge_vec_starts_at_a_huge_page_once_it_spans_one_and_keeps_its_records() {
        let small = HugeVec::<Pair>::with_capacity(3);
        assert_eq!(small.start.as_ptr() as usize % CACHE_LINE, 0);
        let huge_page_of_pairs = HUGE_PAGE / size_of::<Pair>();
        for mut records in [
            HugeVec::with_capacity(huge_page_of_pairs),
            HugeVec::mapped(huge_page_of_pairs, true, false),
            HugeVec::mapped(huge_page_of_pairs, false, true),
        ] {
            assert_eq!(records.start.as_ptr() as usize % HUGE_PAGE, 0);
            assert!(records.is_empty());
            for n in 1..=3 {
                stream(&mut records, &Pair(n, !n));
            }
            store_fence();
            assert_eq!(*records, [Pair(1, !1), Pair(2, !2), Pair(3, !3)]);
            records[0].0 = 7;
            assert_eq!((records.pop(), records.len()), (Some(Pair(3, !3)), 2));
            assert_eq!(records.iter().map(|p| p.0).collect::<Vec<_>>(), [7, 2]);
            assert_eq!(
                (records.pop(), records.pop(), records.pop()),
                (Some(Pair(2, !2)), Some(Pair(7, !1)), None)
            );
        }
    }

    #[test]
    fn a_huge_vec_mapped_in_part_of_a_huge_page_still_grows() {
        // 3 MiB: the advice covers the whole mapping, which stays one and can be moved.
        let capacity = 3 * HUGE_PAGE / 2 / size_of::<Pair>();
        let mut records = HugeVec::mapped(capacity, true, true);
        for n in 0..=capacity {
            records.push(Pair(n, !n));
        }
        assert_eq!((records.len(), records[capacity]), (capacity + 1, Pair(capacity, !capacity)));
        assert!(records.capacity() > capacity);
    }

    #[test]
    fn a_huge_vec_resizes_with_copies_of_a_record() {
        let mut records = HugeVec::new();
        records.resize(3, Pair(1, 2));
        records.push(Pair(7, 7));
        let count = HUGE_PAGE / size_of::<Pair>() + 1;
        records.resize(count, Pair(3, 4));
        assert_eq!(records.len(), count);
        assert_eq!(records[..5], [Pair(1, 2), Pair(1, 2), Pair(1, 2), Pair(7, 7), Pair(3, 4)]);
        assert!(records[4..].iter().all(|&p| p == Pair(3, 4)));
        records.resize(2, Pair(0, 0));
        assert_eq!(records.len(), count, "it never shrinks");
    }

    #[test]
    fn a_huge_vec_grows_into_huge_pages_with_its_records() {
        let mut records = HugeVec::new();
        assert_eq!((records.len(), records.capacity(), records.pop()), (0, 0, None));
        let count = HUGE_PAGE / size_of::<Pair>() + 5;
        for n in 0..count {
            records.push(Pair(n, !n));
        }
        assert!(records.iter().enumerate().all(|(n, &p)| p == Pair(n, !n)));
        assert!(records.capacity() >= count);
        assert_eq!(records.start.as_ptr() as usize % HUGE_PAGE, 0);
        let capacity = records.capacity();
        assert_eq!(capacity * size_of::<Pair>() % HUGE_PAGE, 0, "whole huge pages");
        records.reserve(capacity - count);
        assert_eq!(records.capacity(), capacity, "room enough already");
        while records.len() <= capacity {
            records.push(Pair(0, 0));
        }
        assert_eq!(records.capacity(), 2 * capacity, "room doubles");
        assert_eq!(records[count - 1], Pair(count - 1, !(count - 1)));
    }

    #[test]
    fn a_value_is_taken_in_its_own_process_and_never_waited_for_in_a_forked_one() {
        let (release, wait) = mpsc::channel::<()>();
        let made = Making::start(move || wait.recv().map_or(0, |()| 7));
        let made = made.expect("a thread");
        assert!(!made.is_finished());
        release.send(()).expect("the thread waits");
        while !made.is_finished() {
            thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(made.finish(), Some(7));
        // As in a process forked while the thread ran: that thread never finishes there.
        let (_held, never) = mpsc::channel::<()>();
        let make = move || never.recv().map_or(0, |()| 7);
        let made = Making::start(make).expect("a thread").seen_from_a_forked_process();
        assert!(made.is_finished(), "nothing to wait for");
        assert_eq!(made.finish(), None);
    }
}
