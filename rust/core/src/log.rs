//! An append-only log of records that never move: the engine's transfer log, the movements
//! beside it, and the run of ascending transfer ids (`index::RunIndex`).
//!
//! A `Vec` grows by moving its records into memory twice the size, and the records written
//! after that land in pages the kernel maps one fault at a time while the batch loop waits. A
//! log keeps its records in segments of `SEGMENT_LEN` instead. From the time the newest segment
//! is half full (or when the engine prepares a log it is about to fill), the maker thread
//! (`memory::Making`) makes the next `SEGMENTS_AHEAD` and maps each of their pages, so the batch
//! loop finds them mapped when it gets there; a small log (half a segment) asks for none unless
//! prepared. A caller who knows how much it will post maps the segments up front (`reserve`), and
//! then the batch loop never waits for the kernel, however far it outruns the maker.
//!
//! Records are written with non-temporal stores (`push_streaming`): a store to a line that is
//! not in the cache first reads the line from memory, and the batch loop writes nearly three
//! lines a transfer (its record and its movement) that nothing reads soon after. Those stores
//! are weakly ordered, so a read of a record streamed since the last fence fences them first,
//! and the engine fences its logs before it returns from a batch.

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Index, IndexMut};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::memory::{self, HugeVec, Making, Plain};
use crate::types::Timestamped;

/// Records in a segment of a log of records of `record_size` bytes, as a power of two, so that
/// a position splits into a segment and an offset with a shift and a mask: at least 2^15, and as
/// many as fill whole huge pages, which the kernel can then back a segment with alone (4 MiB of
/// transfers, 6 MiB of movements, 2 MiB of run entries). A `Plain` record is a multiple of 16
/// bytes, so 2^17 of them always fill whole huge pages.
const fn segment_shift(record_size: usize) -> u32 {
    assert!(record_size > 0 && record_size % 16 == 0);
    let mut shift = 15;
    while (record_size << shift) % memory::HUGE_PAGE != 0 {
        shift += 1;
    }
    shift
}

/// How many segments are made ahead of the one being filled. Making one (4 MiB of transfers)
/// takes 1.5 ms here in memory the machine has used before and 5-11 ms in memory its host has
/// not handed it yet, while a batch loop posting 10,000,000 transfers a second fills one in 3 ms:
/// the maker keeps ahead only of a slower loop, or with memory reserved (`reserve`). Three give
/// it more than two segments' time for each. The cost is up to three segments of each log mapped
/// before they are needed (36 MiB for the transfer log, the movements and the run of ids).
const SEGMENTS_AHEAD: usize = 3;

pub(crate) struct Log<T> {
    /// Every segment but the last is full; the last may be empty (after `pop`). Read it
    /// through `segments`, `segments_mut` or after `fence_for`, which fence streamed stores,
    /// or directly for the records before `unfenced_from`.
    segments_unfenced: Vec<HugeVec<T>>,
    len: usize,
    /// The next segments, in order, each being made by the maker thread.
    next_segments: VecDeque<Making<HugeVec<T>>>,
    /// Empty segments mapped already, the next to be filled: one that `pop` emptied, and those
    /// that `reserve` made.
    ready: Vec<HugeVec<T>>,
    /// The position of the first record streamed (`push_streaming`) since the last store fence,
    /// or `FENCED`. Atomic only so that a read through `&self` may fence; one thread at a time
    /// uses a log.
    unfenced_from: AtomicUsize,
}

/// `unfenced_from` when every streamed record is fenced.
const FENCED: usize = usize::MAX;

impl<T> Default for Log<T> {
    fn default() -> Self {
        let unfenced_from = AtomicUsize::new(FENCED);
        Self {
            segments_unfenced: Vec::new(),
            len: 0,
            next_segments: VecDeque::new(),
            ready: Vec::new(),
            unfenced_from,
        }
    }
}

impl<T> Log<T> {
    const SEGMENT_SHIFT: u32 = segment_shift(size_of::<T>());
    const SEGMENT_LEN: usize = 1 << Self::SEGMENT_SHIFT;
    const OFFSET_MASK: usize = Self::SEGMENT_LEN - 1;

    /// The segment and the offset in it of the record at `position`.
    #[inline]
    fn place(position: usize) -> (usize, usize) {
        (position >> Self::SEGMENT_SHIFT, position & Self::OFFSET_MASK)
    }

    /// Orders the records streamed so far before what this thread does next. The thread that
    /// streams records calls it before another thread may use the log.
    pub(crate) fn fence(&self) {
        if self.unfenced_from.load(Relaxed) != FENCED {
            self.fence_now();
        }
    }

    /// Fences the streamed records before a read of the record at `position`, if it is one of
    /// them: a read of a record streamed before the last fence waits for nothing.
    #[inline]
    fn fence_for(&self, position: usize) {
        if position >= self.unfenced_from.load(Relaxed) {
            self.fence_now();
        }
    }

    fn fence_now(&self) {
        memory::store_fence();
        self.unfenced_from.store(FENCED, Relaxed);
    }

    #[inline]
    fn segments(&self) -> &Vec<HugeVec<T>> {
        self.fence();
        &self.segments_unfenced
    }

    #[inline]
    fn segments_mut(&mut self) -> &mut Vec<HugeVec<T>> {
        self.fence();
        &mut self.segments_unfenced
    }
}

/// How long the log is, not its records: formatting them would read them unfenced, and a
/// million of them say nothing.
impl<T> fmt::Debug for Log<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log").field("len", &self.len).finish_non_exhaustive()
    }
}

impl<T> Drop for Log<T> {
    fn drop(&mut self) {
        // Freeing memory is an access to it too.
        self.fence();
    }
}

impl<T: Plain + Send + 'static> Log<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn get(&self, position: usize) -> Option<&T> {
        self.fence_for(position);
        let (segment, offset) = Self::place(position);
        self.segments_unfenced.get(segment)?.get(offset)
    }

    pub(crate) fn last(&self) -> Option<&T> {
        self.get(self.len.checked_sub(1)?)
    }

    /// Appends `record` with non-temporal stores (`memory::stream`): for a log that is
    /// written far ahead of any read of it. Reads through the log fence them first; the
    /// thread that streams calls `fence` before it hands the log to another.
    pub(crate) fn push_streaming(&mut self, record: &T) {
        memory::stream(self.room(), record);
        let unfenced_from = self.unfenced_from.get_mut();
        *unfenced_from = (*unfenced_from).min(self.len);
        self.len += 1;
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        let segments = self.segments_mut();
        let record = segments.last_mut()?.pop()?;
        if segments.last().is_some_and(|s| s.is_empty()) && segments.len() > 1 {
            // Keep no empty segment behind a partly full one: the emptied one waits aside.
            let emptied = segments.pop().expect("the last segment was just read");
            self.ready.push(emptied);
        }
        self.len -= 1;
        Some(record)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.segments().iter().flatten()
    }

    /// The records from `start` on, in order.
    pub(crate) fn iter_from(&self, start: usize) -> impl Iterator<Item = &T> + '_ {
        let (segment, offset) = Self::place(start.min(self.len));
        let segments = self.segments().get(segment..).unwrap_or_default();
        segments.iter().flatten().skip(offset)
    }

    /// The number of records for which `is_before` holds, when it holds for a first part of
    /// the log and not for the rest (as `slice::partition_point`). It fences the records
    /// streamed since the last fence only if the point lies among them: a search for an old
    /// record, during a batch that streams new ones, waits for none of them.
    pub(crate) fn partition_point(&self, is_before: impl Fn(&T) -> bool) -> usize {
        let fenced = self.unfenced_from.load(Relaxed).min(self.len);
        let before = |position: usize| {
            let (segment, offset) = Self::place(position);
            is_before(&self.segments_unfenced[segment][offset])
        };
        let at = partition_point(fenced, before);
        if at < fenced {
            return at;
        }
        self.fence();
        fenced + partition_point(self.len - fenced, |offset| before(fenced + offset))
    }

    /// Maps now, on the calling thread, every page of the segments that `additional` more
    /// records need, so that appending them never waits for the kernel (`Engine::reserve`).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let room = |segment: &HugeVec<T>| Self::SEGMENT_LEN - segment.len();
        let last_room = self.segments_unfenced.last().map_or(0, room);
        let ready_room = self.ready.len() * Self::SEGMENT_LEN;
        let missing = additional.saturating_sub(last_room + ready_room);
        for _ in 0..missing.div_ceil(Self::SEGMENT_LEN) {
            self.ready.push(HugeVec::mapped(Self::SEGMENT_LEN, false, true));
        }
    }

    /// How many more records fit in the segments mapped already.
    #[cfg(test)]
    pub(crate) fn mapped_room(&self) -> usize {
        let last_room = self.segments_unfenced.last().map_or(0, |s| Self::SEGMENT_LEN - s.len());
        last_room + self.ready.len() * Self::SEGMENT_LEN
    }

    /// Has the maker thread make the first segment, for a log about to be written: its
    /// first records then find it mapped rather than wait for the kernel to map it page by page.
    pub(crate) fn prepare(&mut self) {
        if self.segments_unfenced.is_empty()
            && self.next_segments.is_empty()
            && self.ready.is_empty()
        {
            ask_for_segment(&mut self.next_segments);
        }
    }

    /// The oldest segment made ahead whose thread is done with it: the batch loop never waits
    /// for one, and rather maps a segment of its own, leaving those being made for the next.
    /// One that yields nothing (its thread failed, or belongs to the process this one was
    /// forked from) is dropped, and the next ready one taken.
    fn made_segment(&mut self) -> Option<HugeVec<T>> {
        while let Some(ready) = self.next_segments.iter().position(Making::is_finished) {
            let made = self.next_segments.remove(ready).and_then(Making::finish);
            if made.is_some() {
                return made;
            }
        }
        None
    }

    /// How many segments are being made ahead.
    #[cfg(test)]
    pub(crate) fn segments_ahead(&self) -> usize {
        self.next_segments.len()
    }

    /// Waits until every segment being made ahead is made.
    #[cfg(test)]
    pub(crate) fn wait_for_segments_ahead(&self) {
        while !self.next_segments.iter().all(Making::is_finished) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The segment the next record goes into, with room for it.
    fn room(&mut self) -> &mut HugeVec<T> {
        // Appending reads no record: no fence needed.
        if self.segments_unfenced.last().is_none_or(|s| s.len() == Self::SEGMENT_LEN) {
            let next = self.ready.pop().or_else(|| self.made_segment());
            let next = next.unwrap_or_else(|| HugeVec::with_capacity(Self::SEGMENT_LEN));
            self.segments_unfenced.push(next);
        }
        let segment = self.segments_unfenced.last_mut().expect("one was added if none had room");
        // One more segment is asked for when the newest is half full and when it is three
        // quarters full, while fewer than `SEGMENTS_AHEAD` are being made: a few at a time,
        // since the threads that make them share the processor with the batch loop (asked for
        // every eighth, the first batch that asked for two rounds took twice as long). None is
        // asked for while segments are ready: a reservation says how much will come, and
        // segments made in its last stretch, for records that may never come, slowed the
        // batches beside them (up to 9 ms against 0.4, in 5 of 6 runs of 10,000,000 transfers
        // with exactly that many reserved; none without that making).
        let filled = segment.len();
        if filled >= Self::SEGMENT_LEN / 2
            && filled % (Self::SEGMENT_LEN / 4) == 0
            && self.ready.is_empty()
            && self.next_segments.len() < SEGMENTS_AHEAD
        {
            ask_for_segment(&mut self.next_segments);
        }
        segment
    }
}

/// Has the maker thread make a segment, after whatever it was asked for before. Without a
/// maker (the system refused a thread), a segment is made when needed.
///
/// Segments are made in pages of 4 KiB. The kernel here maps 4 MiB of fresh memory in huge pages
/// in about 10 ms, six times as long as in small pages, and a loop posting ready batches back to
/// back fills a segment of transfers in 3 ms: a maker of huge pages fell behind, and the loop
/// then waited for pages itself. The log is written in order, so its stores miss the processor's
/// table of pages once per 4 KiB page, 32 transfers, which costs far less than the wait.
fn ask_for_segment<T: Send + 'static>(next_segments: &mut VecDeque<Making<HugeVec<T>>>) {
    let make = || HugeVec::mapped(Log::<T>::SEGMENT_LEN, false, false);
    next_segments.extend(Making::start(make));
}

impl<T: Timestamped + Plain + Send + 'static> Log<T> {
    /// Whether a record of this log, which is sorted by timestamp, has `timestamp`.
    pub(crate) fn holds_timestamp(&self, timestamp: u64) -> bool {
        let at = self.partition_point(|r| r.timestamp() < timestamp);
        self.get(at).is_some_and(|r| r.timestamp() == timestamp)
    }
}

impl<T> Index<usize> for Log<T> {
    type Output = T;

    #[inline]
    fn index(&self, position: usize) -> &T {
        self.fence_for(position);
        let (segment, offset) = Self::place(position);
        &self.segments_unfenced[segment][offset]
    }
}

impl<T> IndexMut<usize> for Log<T> {
    #[inline]
    fn index_mut(&mut self, position: usize) -> &mut T {
        let (segment, offset) = Self::place(position);
        &mut self.segments_mut()[segment][offset]
    }
}

/// The first index in `0..count` for which `before` is false, `before` holding for a prefix.
pub(crate) fn partition_point(count: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, count);
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::memory::Pair;

    fn pair(n: usize) -> Pair {
        Pair(n, !n)
    }

    const SEGMENT_LEN: usize = Log::<Pair>::SEGMENT_LEN;

    #[test]
    fn keeps_records_in_order_across_segments_and_pops_back_over_a_boundary() {
        let mut log = Log::default();
        let count = 2 * SEGMENT_LEN + 3;
        for n in 0..count {
            log.push_streaming(&pair(n));
            // A read of a record streamed since the last fence fences; one of an older does not.
            assert_eq!((log[n], log[n / 2]), (pair(n), pair(n / 2)));
        }
        assert_eq!(log.len(), count);
        assert!((0..count).all(|n| log[n] == pair(n) && log.get(n) == Some(&pair(n))));
        assert_eq!(log.get(count), None);
        assert!(log.iter().copied().eq((0..count).map(pair)));
        assert!(log.iter_from(SEGMENT_LEN - 1).map(|p| p.0).eq(SEGMENT_LEN - 1..count));
        assert_eq!(log.iter_from(count + 5).count(), 0);
        assert_eq!(log.partition_point(|p| p.0 < SEGMENT_LEN), SEGMENT_LEN);
        assert_eq!(log.partition_point(|p| p.0 < 7), 7);
        assert_eq!(log.partition_point(|_| true), count);
        for n in (SEGMENT_LEN - 2..count).rev() {
            assert_eq!(log.pop(), Some(pair(n)));
        }
        assert_eq!((log.len(), log.last()), (SEGMENT_LEN - 2, Some(&pair(SEGMENT_LEN - 3))));
        log.push_streaming(&pair(7));
        log.push_streaming(&pair(8));
        log.push_streaming(&pair(9));
        log[SEGMENT_LEN].1 = 10;
        assert_eq!((log[SEGMENT_LEN - 1], log[SEGMENT_LEN]), (pair(8), Pair(9, 10)));
        assert_eq!(log.len(), SEGMENT_LEN + 1);
    }

    #[test]
    fn a_search_fences_only_when_its_point_lies_among_streamed_records() {
        let mut log = Log::default();
        let unfenced_from = |log: &Log<Pair>| log.unfenced_from.load(Relaxed);
        for n in 0..SEGMENT_LEN + 100 {
            log.push_streaming(&pair(n));
        }
        log.fence();
        for n in SEGMENT_LEN + 100..SEGMENT_LEN + 150 {
            log.push_streaming(&pair(n));
        }
        assert_eq!(log.partition_point(|p| p.0 < 40), 40);
        assert_eq!(log.partition_point(|p| p.0 < SEGMENT_LEN + 1), SEGMENT_LEN + 1);
        assert_eq!(unfenced_from(&log), SEGMENT_LEN + 100, "old records are found unfenced");
        assert_eq!(log.partition_point(|p| p.0 < SEGMENT_LEN + 120), SEGMENT_LEN + 120);
        assert_eq!(unfenced_from(&log), FENCED);
        assert_eq!(log.partition_point(|p| p.0 < usize::MAX), SEGMENT_LEN + 150);
        assert_eq!(log.partition_point(|_| false), 0);
    }

    #[test]
    fn keeps_segments_ahead_from_half_a_segment_on() {
        let mut log = Log::default();
        // (records, segments being made once that many are pushed)
        let expected = [
            (SEGMENT_LEN / 2, 0),
            (SEGMENT_LEN / 2 + 1, 1),
            (SEGMENT_LEN * 3 / 4 + 1, 2),
            (SEGMENT_LEN + 1, 1),
            (SEGMENT_LEN * 3 / 2 + 1, 2),
            (SEGMENT_LEN * 7 / 4 + 1, SEGMENTS_AHEAD),
            (SEGMENT_LEN * 2 + 1, SEGMENTS_AHEAD - 1),
            (SEGMENT_LEN * 11 / 4 + 1, SEGMENTS_AHEAD),
        ];
        for (records, ahead) in expected {
            // A boundary takes a made segment only once it is made.
            log.wait_for_segments_ahead();
            for n in log.len()..records {
                log.push_streaming(&pair(n));
            }
            assert_eq!(log.next_segments.len(), ahead, "after {records} records");
        }
        assert!(log.segments().iter().all(|s| s.capacity() == SEGMENT_LEN));
    }

    #[test]
    fn a_prepared_log_writes_its_first_records_into_the_segment_made_ahead() {
        let mut log = Log::default();
        log.prepare();
        log.prepare();
        assert_eq!(log.segments_ahead(), 1, "one first segment, however often prepared");
        log.wait_for_segments_ahead();
        log.push_streaming(&pair(1));
        assert_eq!((log.segments_ahead(), log.segments().len()), (0, 1));
        log.prepare();
        assert_eq!(log.segments_ahead(), 0, "a log that holds records is past preparing");
        assert_eq!(log[0], pair(1));
    }

    #[test]
    fn a_boundary_takes_a_segment_once_it_is_made_and_an_emptied_one_first() {
        let mut log = Log::default();
        // A segment made ahead, told apart by its capacity, whose thread waits to be released.
        let (release, wait) = mpsc::channel::<()>();
        let make = move || {
            let _ = wait.recv();
            HugeVec::with_capacity(SEGMENT_LEN + 1)
        };
        log.next_segments.push_back(Making::start(make).expect("a thread"));
        log.push_streaming(&pair(0));
        assert_eq!(log.segments_ahead(), 1, "the loop did not wait: it took a segment of its own");
        release.send(()).expect("the thread waits");
        log.wait_for_segments_ahead();
        for n in 1..=SEGMENT_LEN {
            log.push_streaming(&pair(n));
        }
        let capacities: Vec<usize> = log.segments().iter().map(|s| s.capacity()).collect();
        assert_eq!(capacities, [SEGMENT_LEN, SEGMENT_LEN + 1]);
        // A rollback that empties the newest segment keeps it aside for the next record.
        assert_eq!(log.pop(), Some(pair(SEGMENT_LEN)));
        assert_eq!((log.segments().len(), log.ready.len()), (1, 1));
        log.push_streaming(&pair(7));
        assert_eq!((log.segments()[1].capacity(), log.ready.len()), (SEGMENT_LEN + 1, 0));
    }

    #[test]
    fn a_reserved_log_maps_the_segments_its_records_need_and_fills_them_first() {
        let mut log = Log::default();
        log.reserve(3 * SEGMENT_LEN + 1);
        assert_eq!((log.ready.len(), log.mapped_room()), (4, 4 * SEGMENT_LEN));
        log.reserve(4 * SEGMENT_LEN);
        assert_eq!(log.ready.len(), 4, "room enough already");
        for n in 0..SEGMENT_LEN + 10 {
            log.push_streaming(&pair(n));
        }
        assert_eq!((log.segments().len(), log.ready.len()), (2, 2));
        assert_eq!(log.segments_ahead(), 0, "no segment asked for while enough are reserved");
        log.reserve(3 * SEGMENT_LEN - 10);
        assert_eq!(log.ready.len(), 2, "the last segment and those ready have that room");
        log.reserve(3 * SEGMENT_LEN);
        assert_eq!((log.ready.len(), log.mapped_room()), (3, 4 * SEGMENT_LEN - 10));
        assert!(log.iter().copied().eq((0..SEGMENT_LEN + 10).map(pair)));
    }

    #[test]
    fn a_reserved_log_asks_for_segments_ahead_only_once_its_reserved_ones_are_taken() {
        let mut log = Log::default();
        log.reserve(2 * SEGMENT_LEN);
        for n in 0..SEGMENT_LEN * 3 / 2 {
            log.push_streaming(&pair(n));
            assert_eq!(log.segments_ahead(), 0, "a reserved segment is ready or half empty at {n}");
        }
        assert!(log.ready.is_empty());
        log.push_streaming(&pair(SEGMENT_LEN * 3 / 2));
        assert_eq!(
            log.segments_ahead(),
            1,
            "the last reserved one half full, the maker makes ahead"
        );
    }

    #[test]
    fn a_boundary_passes_over_a_segment_left_by_the_process_this_one_was_forked_from() {
        let mut log = Log::default();
        let left = Making::start(|| HugeVec::with_capacity(1));
        log.next_segments.push_back(left.expect("a thread").seen_from_a_forked_process());
        let made = Making::start(|| HugeVec::with_capacity(SEGMENT_LEN + 1));
        log.next_segments.push_back(made.expect("a thread"));
        log.wait_for_segments_ahead();
        log.push_streaming(&pair(0));
        assert_eq!(log.segments()[0].capacity(), SEGMENT_LEN + 1, "the made one, not its own");
        assert_eq!(log.segments_ahead(), 0);
    }

    #[test]
    fn a_segment_of_each_log_of_the_engine_fills_whole_huge_pages() {
        use crate::index::RunEntry;
        use crate::movement::Movement;
        use crate::types::Transfer;
        let bytes = [
            Log::<Transfer>::SEGMENT_LEN * size_of::<Transfer>(),
            Log::<Movement>::SEGMENT_LEN * size_of::<Movement>(),
            Log::<RunEntry>::SEGMENT_LEN * size_of::<RunEntry>(),
        ];
        assert_eq!(bytes.map(|b| b >> 20), [4, 6, 2], "MiB");
        assert!(bytes.iter().all(|b| b % memory::HUGE_PAGE == 0));
        assert_eq!(SEGMENT_LEN, 1 << 17, "2 MiB of 16-byte records");
    }

    #[test]
    fn an_empty_log_has_no_records() {
        let mut log: Log<Pair> = Log::default();
        assert!(log.is_empty() && log.last().is_none() && log.pop().is_none());
        assert_eq!((log.partition_point(|_| true), log.iter().count()), (0, 0));
    }
}
