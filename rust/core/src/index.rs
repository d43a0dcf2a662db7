//! An index from record ids to their positions in a log: the engine's id maps.
//!
//! A map from u128 id to position would keep each id twice (in the map and in the log) and take
//! 32 bytes a slot. This index keeps only the position and 32 bits of the id's hash (its tag) in
//! one 8-byte slot, and compares a candidate's id in the log.
//!
//! It is one array of slots with linear probing: an id's home slot is given by the top bits of
//! its tag, and it sits in the first free slot from there. A new id (the common case of a
//! create) is known to be new after reading one cache line, and `prefetch` lets the batch loop
//! start that read several events early, so that the misses of a batch overlap rather than
//! queue: with a million transfers the array fills megabytes that every create reads at random.
//! Since the home comes from the tag alone, growing the array never reads the log.
//!
//! Growing a large index moves every slot into an array twice the size, and most of that time
//! is the kernel zeroing the new array's pages as they are first written. So once a large index
//! is five eighths full, another thread makes the next array, in huge pages, and writes all its
//! slots (`free_slots`), and the growth at three quarters takes it ready: a pause of one batch
//! becomes much shorter.

use core::hash::BuildHasher;

use foldhash::fast::RandomState;

use crate::log::{partition_point, Log};
use crate::memory::{self, HugeVec, Making, Plain};

/// The most records a log may hold: three quarters of the most slots a 32-bit tag can address
/// (2^32), and so also a count whose positions, plus one, fit in 32 bits.
pub const LOG_MAX: usize = 3 << 30;

/// A slot holds `tag << 32 | (position + 1)`; zero is a free slot.
const FREE: u64 = 0;

/// The fewest slots an index has: a power of two.
const SLOTS_MIN: usize = 16;

/// The fewest slots for which the next array is made ahead on another thread, in huge pages
/// (4 MiB): a smaller one is made in well under a millisecond.
const PREPARE_SLOTS_MIN: usize = 1 << 19;

fn tag_of(slot: u64) -> u32 {
    (slot >> 32) as u32
}

fn position_of(slot: u64) -> usize {
    (slot as u32 - 1) as usize
}

#[derive(Debug)]
pub(crate) struct IdIndex {
    /// A power of two of slots, at most three quarters of them taken.
    slots: HugeVec<u64>,
    len: usize,
    /// The home of a tag is `tag >> shift`: its top bits, as many as the slots need.
    shift: u32,
    /// Past this many ids, `reserve` leaves its fast path: to prepare the next array, or to
    /// grow into it.
    busy_at: usize,
    /// The next array, twice the size, being made on another thread.
    next_slots: Option<Making<HugeVec<u64>>>,
    hasher: RandomState,
}

impl Default for IdIndex {
    fn default() -> Self {
        Self::with_slots(free_slots(SLOTS_MIN, false), RandomState::default())
    }
}

/// An array of `count` free slots, in huge pages if `huge_pages` and the kernel grants them:
/// only a thread that no batch waits for asks for those (see `HugeVec::mapped`).
fn free_slots(count: usize, huge_pages: bool) -> HugeVec<u64> {
    let mut slots = HugeVec::with_capacity(count);
    if huge_pages {
        slots.advise_huge_pages();
    }
    slots.resize(count, FREE);
    slots
}

impl IdIndex {
    fn with_slots(slots: HugeVec<u64>, hasher: RandomState) -> Self {
        let count = slots.len();
        assert!(count.is_power_of_two() && count <= 1 << 32);
        let shift = 32 - count.trailing_zeros();
        let grow_at = count / 4 * 3;
        let busy_at = if count >= PREPARE_SLOTS_MIN { count / 8 * 5 } else { grow_at };
        Self { slots, len: 0, shift, busy_at, next_slots: None, hasher }
    }

    #[inline]
    fn tag(&self, id: u128) -> u32 {
        (self.hasher.hash_one(id) >> 32) as u32
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        // A shift of 32 would overflow a u32; a u64 takes it (one slot: every home is 0).
        (u64::from(tag) >> self.shift) as usize
    }

    #[inline]
    fn next(&self, slot_index: usize) -> usize {
        (slot_index + 1) & (self.slots.len() - 1)
    }

    /// Where `id` is, or the free slot where the probe for it stopped.
    #[inline]
    fn probe(&self, id: u128, id_at: impl Fn(usize) -> u128) -> Result<usize, usize> {
        let tag = self.tag(id);
        let mut i = self.home(tag);
        loop {
            let slot = self.slots[i];
            if slot == FREE {
                return Err(i);
            }
            if tag_of(slot) == tag && id_at(position_of(slot)) == id {
                return Ok(i);
            }
            i = self.next(i);
        }
    }

    /// The position of `id`, where `id_at(position)` is the id of the record at a position.
    #[inline]
    pub(crate) fn get(&self, id: u128, id_at: impl Fn(usize) -> u128) -> Option<usize> {
        self.probe(id, id_at).ok().map(|i| position_of(self.slots[i]))
    }

    /// Starts reading the home slot of `id`, so that a `get` or `insert` of it soon after
    /// finds it in the cache. Changes nothing.
    #[inline]
    pub(crate) fn prefetch(&self, id: u128) {
        memory::prefetch(&self.slots[self.home(self.tag(id))]);
    }

    /// Where `id` most likely is: the position in the first slot of its probe whose tag is the
    /// tag of `id`, found without reading the log (an id of another record has that tag once in
    /// four billion). Only for prefetching the record, once `prefetch` has brought the slot in.
    #[inline]
    pub(crate) fn likely_position(&self, id: u128) -> Option<usize> {
        let tag = self.tag(id);
        let mut i = self.home(tag);
        loop {
            let slot = self.slots[i];
            if slot == FREE {
                return None;
            }
            if tag_of(slot) == tag {
                return Some(position_of(slot));
            }
            i = self.next(i);
        }
    }

    /// Indexes a new id (the caller has checked that it is not indexed yet) at `position`.
    #[inline]
    pub(crate) fn insert(&mut self, id: u128, position: usize) {
        assert!(position < LOG_MAX, "a log holds at most {LOG_MAX} records");
        self.reserve(1);
        let tag = self.tag(id);
        let mut i = self.home(tag);
        while self.slots[i] != FREE {
            i = self.next(i);
        }
        self.slots[i] = u64::from(tag) << 32 | (position as u64 + 1);
        self.len += 1;
    }

    /// Forgets `id`; returns its position, if it was indexed.
    pub(crate) fn remove(&mut self, id: u128, id_at: impl Fn(usize) -> u128) -> Option<usize> {
        let mut hole = self.probe(id, id_at).ok()?;
        let position = position_of(self.slots[hole]);
        // Backward shift: each later slot of the run that may sit in the hole (its home is not
        // between the hole and it) moves back, so that no probe stops early at the hole.
        let mask = self.slots.len() - 1;
        let mut i = self.next(hole);
        while self.slots[i] != FREE {
            let home = self.home(tag_of(self.slots[i]));
            if i.wrapping_sub(home) & mask >= i.wrapping_sub(hole) & mask {
                self.slots[hole] = self.slots[i];
                hole = i;
            }
            i = self.next(i);
        }
        self.slots[hole] = FREE;
        self.len -= 1;
        Some(position)
    }

    /// Makes room for `additional` more ids, so that a batch grows the array at most once.
    #[inline]
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = self.len + additional;
        if needed > self.busy_at {
            self.make_room(needed);
        }
    }

    #[cold]
    fn make_room(&mut self, needed: usize) {
        let grow_at = self.slots.len() / 4 * 3;
        if needed > grow_at {
            self.grow(needed);
        } else if self.next_slots.is_none() {
            let count = self.slots.len() * 2;
            // Without a thread (the system refused one), `grow` makes the array itself.
            self.next_slots = Making::start("fastledger-index", move || free_slots(count, true));
            self.busy_at = grow_at;
        }
    }

    #[cold]
    fn grow(&mut self, needed: usize) {
        let count = (needed * 4 / 3 + 1).next_power_of_two().max(SLOTS_MIN);
        let prepared = self.next_slots.take().and_then(Making::finish);
        let slots = prepared.filter(|slots| slots.len() == count);
        let slots = slots.unwrap_or_else(|| free_slots(count, false));
        let mut grown = Self::with_slots(slots, self.hasher.clone());
        for &slot in self.slots.iter().filter(|&&slot| slot != FREE) {
            let mut i = grown.home(tag_of(slot));
            while grown.slots[i] != FREE {
                i = grown.next(i);
            }
            grown.slots[i] = slot;
        }
        grown.len = self.len;
        *self = grown;
    }
}

/// An index of ids that usually come in ascending order, as time-ordered ids (such as
/// `fastledger.id()`) and counters do: the engine's index of transfer ids.
///
/// An id larger than every id before it is known to be new without a read of memory, and goes
/// to the end of a sorted run. Through an `IdIndex`, the same create reads and writes a line of
/// a large array at random, which took a third of the time of a transfer. While every id has
/// come in order, the run is the log itself: the first `prefix` records, each at its own
/// position, stored nowhere else but for the id of every `SAMPLE_EVERY`th, which narrows a
/// search to that many records of the log. After the first id out of order
/// the run goes on in a log of (id, position) entries streamed in order, whose segments other
/// threads map ahead. Finding an id of the run is a binary search, whose first steps read the
/// same few lines for every search and whose last steps, for a recent id, read recent lines.
/// Ids out of order go to an `IdIndex`; a new one costs a search of the run as well.
///
/// Every id of the index is at most the last of the run, and an id of the run can be removed
/// only while it is the last: so removals must undo insertions newest first, as the rollback of
/// a linked chain does.
#[derive(Debug, Default)]
pub(crate) struct RunIndex {
    /// How many records, from the first, hold ascending ids that are their own run.
    prefix: usize,
    /// The ids of the prefix's records at positions 0, `SAMPLE_EVERY`, 2 * `SAMPLE_EVERY`...
    samples: Vec<u128>,
    /// The id of the prefix's last record, kept here: reading it in the log, where it was just
    /// streamed, would fence on every search.
    prefix_last: u128,
    /// The ids after the prefix that were larger than every id before them, with positions.
    run: Log<RunEntry>,
    /// The largest indexed id, which every create reads: the run log's last, or the prefix's.
    last: Option<u128>,
    /// Every other id.
    others: IdIndex,
}

/// How many records of the prefix one sample stands for. A search reads the samples (16 bytes
/// for 64 records, 244 KiB for a million) and then takes at most 7 steps among 64 neighbouring
/// records of the log, where a search of the log alone would take all its steps among records 128
/// bytes apart, the last ones each on a line and the deepest on a page of their own.
const SAMPLE_EVERY: usize = 64;

/// An id of the run and its position.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunEntry {
    id: u128,
    position: u32,
    /// Always zero: the bytes that the alignment of `id` adds, named so that every byte of an
    /// entry is written (`memory::Plain`).
    padding: [u32; 3],
}

// SAFETY: `repr(C)`, and its fields tile its 32 bytes exactly; `id` aligns it to 16 bytes.
unsafe impl Plain for RunEntry {}

const _: () = assert!(size_of::<RunEntry>() == 32);

impl RunIndex {
    fn prefix_last(&self) -> Option<u128> {
        (self.prefix > 0).then_some(self.prefix_last)
    }

    /// Whether `id` is larger than every indexed id: then it is not indexed.
    #[inline]
    fn after_run(&self, id: u128) -> bool {
        self.last.is_none_or(|last| id > last)
    }

    fn run_position(&self, id: u128, id_at: impl Fn(usize) -> u128) -> Option<usize> {
        if self.prefix_last().is_some_and(|last| id <= last) {
            // The last sample at most `id` starts the stretch of the prefix that may hold it.
            let sampled = self.samples.partition_point(|&sample| sample <= id).checked_sub(1)?;
            let first = sampled * SAMPLE_EVERY;
            let count = SAMPLE_EVERY.min(self.prefix - first);
            let at = first + partition_point(count, |offset| id_at(first + offset) < id);
            return (id_at(at) == id).then_some(at);
        }
        let at = self.run.partition_point(|entry| entry.id < id);
        let entry = self.run.get(at).filter(|entry| entry.id == id)?;
        Some(entry.position as usize)
    }

    /// The position of `id`, where `id_at(position)` is the id of the record at a position.
    #[inline]
    pub(crate) fn get(&self, id: u128, id_at: impl Fn(usize) -> u128) -> Option<usize> {
        if self.after_run(id) {
            return None;
        }
        let other = (self.others.len > 0).then(|| self.others.get(id, &id_at)).flatten();
        other.or_else(|| self.run_position(id, id_at))
    }

    /// As `IdIndex::prefetch`, for an id out of order; an id after the run reads nothing.
    #[inline]
    pub(crate) fn prefetch(&self, id: u128) {
        if !self.after_run(id) {
            self.others.prefetch(id);
        }
    }

    /// As `IdIndex::likely_position`, for an id out of order: the run is searched by `get`.
    #[inline]
    pub(crate) fn likely_position(&self, id: u128) -> Option<usize> {
        self.others.likely_position(id)
    }

    /// Indexes a new id (the caller has checked that it is not indexed yet) at `position`.
    #[inline]
    pub(crate) fn insert(&mut self, id: u128, position: usize) {
        if self.after_run(id) {
            assert!(position < LOG_MAX, "a log holds at most {LOG_MAX} records");
            if self.run.is_empty() && position == self.prefix {
                if self.prefix % SAMPLE_EVERY == 0 {
                    self.samples.push(id);
                }
                self.prefix += 1;
                self.prefix_last = id;
            } else {
                let entry = RunEntry { id, position: position as u32, padding: [0; 3] };
                self.run.push_streaming(&entry);
            }
            self.last = Some(id);
        } else {
            self.others.insert(id, position);
        }
    }

    /// Orders the entries streamed into the run before what this thread does next, as
    /// `Log::fence`.
    pub(crate) fn fence(&self) {
        self.run.fence();
    }

    /// Forgets `id`, the newest indexed id; returns its position, if it was indexed.
    pub(crate) fn remove(&mut self, id: u128, id_at: impl Fn(usize) -> u128) -> Option<usize> {
        if self.last != Some(id) {
            return self.others.remove(id, id_at);
        }
        let position = match self.run.pop() {
            Some(entry) => entry.position as usize,
            None => {
                self.prefix -= 1;
                if self.prefix % SAMPLE_EVERY == 0 {
                    self.samples.pop();
                }
                if let Some(last) = self.prefix.checked_sub(1) {
                    self.prefix_last = id_at(last);
                }
                self.prefix
            }
        };
        self.last = self.run.last().map(|entry| entry.id).or(self.prefix_last());
        Some(position)
    }

    /// Makes room for `additional` more ids out of order, so that a batch grows the index of
    /// them at most once.
    #[inline]
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.others.reserve(additional);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn finds_removes_and_survives_growth() {
        let ids: Vec<u128> = (0..10_000u128).map(|i| (i << 64) | (i * 7)).collect();
        let mut index = IdIndex::default();
        for (position, &id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, |p| ids[p]), None);
            index.insert(id, position);
        }
        for (position, &id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, |p| ids[p]), Some(position));
        }
        assert_eq!(index.get(u128::MAX, |p| ids[p]), None);
        assert_eq!(index.remove(ids[5], |p| ids[p]), Some(5));
        assert_eq!(index.remove(ids[5], |p| ids[p]), None);
        assert_eq!(index.get(ids[5], |p| ids[p]), None);
        assert_eq!(index.get(ids[6], |p| ids[p]), Some(6));
    }

    #[test]
    fn the_likely_position_of_an_indexed_id_is_its_position() {
        let ids: Vec<u128> = (1..=50_000u128).map(|i| i << 70 | i).collect();
        let mut index = IdIndex::default();
        for (position, &id) in ids.iter().enumerate() {
            index.insert(id, position);
            assert_eq!(index.likely_position(id), Some(position));
        }
        for (position, &id) in ids.iter().enumerate() {
            assert_eq!(index.likely_position(id), Some(position));
        }
    }

    #[test]
    fn removing_keeps_every_other_id_findable_in_a_crowded_index() {
        // A tiny index whose runs collide and wrap around its end: every removal must leave
        // each remaining id findable, as the backward shift promises.
        let ids: Vec<u128> = (1..=12u128).collect();
        let mut index = IdIndex::default();
        for (position, &id) in ids.iter().enumerate() {
            index.insert(id, position);
        }
        assert_eq!(index.slots.len(), SLOTS_MIN);
        for (removed, &id) in ids.iter().enumerate() {
            assert_eq!(index.remove(id, |p| ids[p]), Some(removed));
            for (position, &other) in ids.iter().enumerate() {
                let expected = (position > removed).then_some(position);
                assert_eq!(index.get(other, |p| ids[p]), expected);
            }
        }
        assert_eq!(index.len, 0);
        assert!(index.slots.iter().all(|&slot| slot == FREE));
    }

    #[test]
    fn a_large_index_grows_into_the_array_made_ahead_and_keeps_every_id() {
        let count = PREPARE_SLOTS_MIN / 4 * 3 + 1;
        let ids: Vec<u128> = (1..=count as u128).map(|i| i * 0x9E37_79B9).collect();
        let mut index = IdIndex::default();
        index.reserve(PREPARE_SLOTS_MIN / 2);
        assert_eq!(index.slots.len(), PREPARE_SLOTS_MIN);
        for (position, &id) in ids.iter().enumerate() {
            if position == PREPARE_SLOTS_MIN / 8 * 5 {
                assert!(index.next_slots.is_none());
            }
            index.insert(id, position);
            if position == PREPARE_SLOTS_MIN / 8 * 5 {
                assert!(index.next_slots.is_some(), "five eighths full: the next array is made");
            }
        }
        assert_eq!(index.slots.len(), PREPARE_SLOTS_MIN * 2);
        assert!(index.next_slots.is_none());
        for (position, &id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, |p| ids[p]), Some(position));
        }
    }

    #[test]
    fn reserving_keeps_a_quarter_of_the_slots_free() {
        let mut index = IdIndex::default();
        index.reserve(1_000);
        assert!(index.slots.len() * 3 >= 1_000 * 4);
        let before = index.slots.len();
        index.reserve(1_000);
        assert_eq!(index.slots.len(), before);
    }

    #[test]
    fn a_run_index_finds_what_a_map_finds_with_ids_in_and_out_of_order_and_removals() {
        // Ids mostly ascending with jumps back, and removals of the newest ids, as linked
        // chains roll back; each step is checked against a map.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut index, mut ids, mut model) = (RunIndex::default(), Vec::new(), HashMap::new());
        let mut high = 1u128 << 100;
        for _ in 0..50_000 {
            let roll = next() % 100;
            if roll < 5 && !ids.is_empty() {
                for _ in 0..=next() % 4 {
                    let Some(id) = ids.pop() else { break };
                    assert_eq!(index.remove(id, |p| ids_at(&ids, id, p)), model.remove(&id));
                }
                continue;
            }
            let id = if roll < 75 {
                high += u128::from(next() % 3) + 1;
                high
            } else {
                u128::from(next()) << 36 | u128::from(next() % 1000)
            };
            if model.contains_key(&id) {
                continue;
            }
            let found = index.get(id, |p| ids[p]);
            assert_eq!(found, None);
            index.insert(id, ids.len());
            model.insert(id, ids.len());
            ids.push(id);
            let probe = ids[(next() as usize) % ids.len()];
            assert_eq!(index.get(probe, |p| ids[p]), model.get(&probe).copied());
            assert_eq!(index.get(probe + 1, |p| ids[p]), model.get(&(probe + 1)).copied());
        }
        let in_run = index.prefix + index.run.len();
        assert!(index.prefix > 0 && in_run > 10_000 && index.others.len > 5_000, "all kinds");
        for (&id, &position) in &model {
            assert_eq!(index.get(id, |p| ids[p]), Some(position));
        }
    }

    #[test]
    fn ids_in_order_are_found_in_the_log_through_samples_and_removed_newest_first() {
        let ids: Vec<u128> = (1..=1_000u128).map(|i| i * 10).collect();
        let mut index = RunIndex::default();
        for (position, &id) in ids.iter().enumerate() {
            index.insert(id, position);
        }
        assert_eq!((index.prefix, index.samples.len(), index.run.len()), (1_000, 16, 0));
        for (position, &id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, |p| ids[p]), Some(position));
            assert_eq!(index.get(id - 5, |p| ids[p]), None);
        }
        for removed in (0..ids.len()).rev() {
            let id = ids[removed];
            assert_eq!(index.remove(id, |p| ids_at(&ids[..removed], id, p)), Some(removed));
            assert_eq!(index.samples.len(), removed.div_ceil(SAMPLE_EVERY));
            if let Some(&kept) = ids[..removed].last() {
                assert_eq!(index.get(kept, |p| ids[p]), Some(removed - 1));
            }
        }
        assert_eq!((index.prefix, index.last), (0, None));
    }

    #[test]
    fn rollbacks_across_the_samples_and_the_end_of_the_prefix_keep_every_id_findable() {
        // A prefix that ends just before, at or after a sample, an id out of order or none,
        // more ids in order (which then go to the run log), then newest-first removals in
        // steps of one to five with an id in order put back now and then.
        for prefix in [63u128, 64, 65, 127, 128, 129] {
            for out_of_order in [&[][..], &[105], &[105, 115], &[5]] {
                let mut log = Vec::new();
                let mut index = RunIndex::default();
                let add = |index: &mut RunIndex, log: &mut Vec<u128>, id: u128| {
                    assert_eq!(index.get(id, |p| log[p]), None);
                    index.insert(id, log.len());
                    log.push(id);
                };
                let in_order = (0..prefix).map(|i| 100 + 10 * i);
                let after = (0..200).map(|i| 100_000 + 10 * i);
                for id in in_order.chain(out_of_order.iter().copied()).chain(after) {
                    add(&mut index, &mut log, id);
                }
                assert_finds_exactly(&index, &log);
                for round in 1usize.. {
                    for _ in 0..=round % 5 {
                        let Some(&id) = log.last() else { break };
                        assert_eq!(index.remove(id, |p| log[p]), Some(log.len() - 1));
                        log.pop();
                    }
                    assert_finds_exactly(&index, &log);
                    let Some(&top) = log.iter().max() else { break };
                    if round % 3 == 0 {
                        add(&mut index, &mut log, top + 1);
                        assert_finds_exactly(&index, &log);
                    }
                }
                assert_eq!((index.prefix, index.last, index.run.len()), (0, None, 0));
            }
        }
    }

    /// Checks that `index` finds each id of `log` at its position and none of its neighbours,
    /// and that what it keeps of its prefix matches the log.
    fn assert_finds_exactly(index: &RunIndex, log: &[u128]) {
        for (position, &id) in log.iter().enumerate() {
            assert_eq!(index.get(id, |p| log[p]), Some(position), "{id}");
            for absent in [id - 1, id + 1].into_iter().filter(|near| !log.contains(near)) {
                assert_eq!(index.get(absent, |p| log[p]), None, "{absent}");
            }
        }
        assert_eq!(index.last, log.iter().max().copied());
        assert_eq!(index.samples.len(), index.prefix.div_ceil(SAMPLE_EVERY));
        let sampled = log.iter().step_by(SAMPLE_EVERY).take(index.samples.len());
        assert!(index.samples.iter().eq(sampled));
        if index.prefix > 0 {
            assert_eq!(index.prefix_last, log[index.prefix - 1]);
        }
    }

    /// The id at `position` of a log whose newest record, `removed`, was just popped.
    fn ids_at(ids: &[u128], removed: u128, position: usize) -> u128 {
        ids.get(position).copied().unwrap_or(removed)
    }
}
