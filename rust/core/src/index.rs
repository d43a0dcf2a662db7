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
//! Growing moves every slot into an array twice the size. A large index moves them a few at each
//! insert, in the order of their slots, which is the order of their homes in the new array too
//! (`Moving`): the new array is then written from its start to its end, and the kernel maps its
//! pages a few at each insert. Moving them all at once, into an array the kernel mapped page by
//! page as the copy and the new ids reached it, had one batch wait 120 ms for 6 million ids.

use core::hash::BuildHasher;
use core::mem;

use foldhash::fast::RandomState;

use crate::log::{partition_point, Log};
use crate::memory::{self, HugeVec, Plain};

/// The most records a log may hold: three quarters of the most slots a 32-bit tag can address
/// (2^32), and so also a count whose positions, plus one, fit in 32 bits.
pub const LOG_MAX: usize = 3 << 30;

/// A slot holds `tag << 32 | (position + 1)`; zero is a free slot.
const FREE: u64 = 0;

/// A slot of the array being moved from whose id was removed: no position plus one reaches it
/// (`LOG_MAX`), and unlike a free slot it does not end a probe.
const REMOVED: u64 = u64::MAX;

/// The fewest slots an index has: a power of two.
const SLOTS_MIN: usize = 16;

/// The fewest slots of an array whose ids move into the next a few at each insert
/// (`MOVED_PER_INSERT`) when the index grows: those of a smaller one move at once, in well under
/// a millisecond.
const MOVE_SLOTS_MIN: usize = 1 << 14;

/// How many slots of the old array each insert moves into the new one while an index grows.
/// Moving all at once had one batch wait for the whole copy: 120 ms for 6 million ids here. The
/// old array of n slots, three quarters full when the growth began, is passed after n / 8
/// inserts, and by then the new ids placed ahead of the move (`Moving::place_ahead`) have filled
/// at most another eighth of it.
const MOVED_PER_INSERT: usize = 8;

fn tag_of(slot: u64) -> u32 {
    (slot >> 32) as u32
}

fn position_of(slot: u64) -> usize {
    (slot as u32 - 1) as usize
}

/// An array of slots with linear probing, and how a tag finds its home there.
#[derive(Debug)]
struct Table {
    /// A power of two of slots.
    slots: HugeVec<u64>,
    /// The home of a tag is `tag >> shift`: its top bits, as many as the slots need.
    shift: u32,
}

impl Table {
    fn new(slots: HugeVec<u64>) -> Self {
        let count = slots.len();
        assert!(count.is_power_of_two() && count <= 1 << 32);
        Self { slots, shift: 32 - count.trailing_zeros() }
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

    /// Where `id`, whose tag is `tag`, is, or the free slot where the probe for it stopped.
    #[inline]
    fn probe(&self, tag: u32, id: u128, id_at: impl Fn(usize) -> u128) -> Result<usize, usize> {
        let mut i = self.home(tag);
        loop {
            let slot = self.slots[i];
            if slot == FREE {
                return Err(i);
            }
            if tag_of(slot) == tag && slot != REMOVED && id_at(position_of(slot)) == id {
                return Ok(i);
            }
            i = self.next(i);
        }
    }

    /// The position in the first slot of the probe for `tag` that has that tag.
    #[inline]
    fn likely_position(&self, tag: u32) -> Option<usize> {
        let mut i = self.home(tag);
        loop {
            let slot = self.slots[i];
            if slot == FREE {
                return None;
            }
            if tag_of(slot) == tag && slot != REMOVED {
                return Some(position_of(slot));
            }
            i = self.next(i);
        }
    }

    /// Puts `slot` in the first free slot from its home.
    #[inline]
    fn place(&mut self, slot: u64) {
        let mut i = self.home(tag_of(slot));
        while self.slots[i] != FREE {
            i = self.next(i);
        }
        self.slots[i] = slot;
    }

    /// Frees the slot at `hole` by a backward shift: each later slot of the run that may sit in
    /// the hole (its home is not between the hole and it) moves back, so that no probe stops
    /// early at the hole.
    fn remove_at(&mut self, mut hole: usize) {
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
    }
}

/// The array an index grew from, while its ids move into the new one in the order of their
/// slots, whose homes in the new array come in the same order: so the new array is written from
/// its start to its end, and the kernel maps its pages one after the other, a few at each insert,
/// rather than most of them at the first batch after the growth, which new ids reach at random.
#[derive(Debug)]
struct Moving {
    table: Table,
    /// Its slots before this one are in the new array too. A removed id is marked `REMOVED`,
    /// not freed, so that a probe of the old array still finds every id it holds.
    moved: usize,
    /// The lowest old home of the new ids that went to the new array because their probe of the
    /// old one wrapped past its end, behind the move (its slot count if none did).
    wrapped_from: usize,
}

impl Moving {
    fn new(table: Table) -> Self {
        let wrapped_from = table.slots.len();
        Self { table, moved: 0, wrapped_from }
    }

    /// Whether the new array may hold an id of `tag`: only if the move has passed its old home,
    /// or if it wrapped. A probe of the new array for any other id would read a page the move
    /// has not written yet, which made the kernel map it (a fault of its own for each of most
    /// pages of the array, in the first batch after a growth): this probe reads nothing.
    #[inline]
    fn new_array_may_hold(&self, tag: u32) -> bool {
        let home = self.table.home(tag);
        home < self.moved || home >= self.wrapped_from
    }

    /// Puts `slot` into the old array if its place there lies ahead of the move, which then
    /// takes it to the new array in order; returns whether it did. The new ids whose homes the
    /// move has passed go straight to the new array, into the pages it has written already.
    fn place_ahead(&mut self, slot: u64) -> bool {
        let home = self.table.home(tag_of(slot));
        if home < self.moved {
            return false;
        }
        let mut i = home;
        while self.table.slots[i] != FREE {
            i = self.table.next(i);
        }
        // A probe that wrapped past the end of the array stopped behind the move.
        if i < home {
            self.wrapped_from = self.wrapped_from.min(home);
            return false;
        }
        self.table.slots[i] = slot;
        true
    }
}

#[derive(Debug)]
pub(crate) struct IdIndex {
    /// At most three quarters of its slots taken, counting the ids still to move from `moving`.
    table: Table,
    /// The array before the last growth, while its ids move into `table`.
    moving: Option<Moving>,
    len: usize,
    hasher: RandomState,
}

impl Default for IdIndex {
    fn default() -> Self {
        Self::with_slots(free_slots(SLOTS_MIN), RandomState::default())
    }
}

/// How many slots an index of `ids` ids needs: a power of two, at most three quarters full.
fn slot_count(ids: usize) -> usize {
    (ids * 4 / 3 + 1).next_power_of_two().max(SLOTS_MIN)
}

/// An array of `count` free slots, whose pages the kernel maps when the ids moving in first
/// reach them (`Moving`).
fn free_slots(count: usize) -> HugeVec<u64> {
    HugeVec::zeros(count)
}

impl IdIndex {
    fn with_slots(slots: HugeVec<u64>, hasher: RandomState) -> Self {
        Self { table: Table::new(slots), moving: None, len: 0, hasher }
    }

    #[inline]
    fn tag(&self, id: u128) -> u32 {
        (self.hasher.hash_one(id) >> 32) as u32
    }

    /// The position of `id`, where `id_at(position)` is the id of the record at a position.
    #[inline]
    pub(crate) fn get(&self, id: u128, id_at: impl Fn(usize) -> u128) -> Option<usize> {
        let tag = self.tag(id);
        if self.new_array_may_hold(tag) {
            if let Ok(i) = self.table.probe(tag, id, &id_at) {
                return Some(position_of(self.table.slots[i]));
            }
        }
        let old = self.moving.as_ref()?;
        old.table.probe(tag, id, &id_at).ok().map(|i| position_of(old.table.slots[i]))
    }

    /// Starts reading the home slot of `id`, so that a `get` or `insert` of it soon after
    /// finds it in the cache. Changes nothing.
    #[inline]
    pub(crate) fn prefetch(&self, id: u128) {
        let tag = self.tag(id);
        if self.new_array_may_hold(tag) {
            memory::prefetch(&self.table.slots[self.table.home(tag)]);
        }
        if let Some(old) = &self.moving {
            memory::prefetch(&old.table.slots[old.table.home(tag)]);
        }
    }

    /// Where `id` most likely is: the position in the first slot of its probe whose tag is the
    /// tag of `id`, found without reading the log (an id of another record has that tag once in
    /// four billion). Only for prefetching the record, once `prefetch` has brought the slot in.
    #[inline]
    pub(crate) fn likely_position(&self, id: u128) -> Option<usize> {
        let tag = self.tag(id);
        let found = self.new_array_may_hold(tag).then(|| self.table.likely_position(tag));
        let found = found.flatten();
        found.or_else(|| self.moving.as_ref().and_then(|old| old.table.likely_position(tag)))
    }

    /// Whether the current array may hold an id of `tag` (see `Moving::new_array_may_hold`).
    #[inline]
    fn new_array_may_hold(&self, tag: u32) -> bool {
        self.moving.as_ref().is_none_or(|old| old.new_array_may_hold(tag))
    }

    /// Indexes a new id (the caller has checked that it is not indexed yet) at `position`.
    #[inline]
    pub(crate) fn insert(&mut self, id: u128, position: usize) {
        assert!(position < LOG_MAX, "a log holds at most {LOG_MAX} records");
        self.reserve(1);
        let slot = u64::from(self.tag(id)) << 32 | (position as u64 + 1);
        match &mut self.moving {
            Some(old) => {
                if !old.place_ahead(slot) {
                    self.table.place(slot);
                }
                self.move_some(MOVED_PER_INSERT);
            }
            None => self.table.place(slot),
        }
        self.len += 1;
    }

    /// Moves the next `count` slots of the old array, if any, into the new one.
    fn move_some(&mut self, count: usize) {
        let Some(old) = &mut self.moving else { return };
        let end = (old.moved + count).min(old.table.slots.len());
        for &slot in &old.table.slots[old.moved..end] {
            if slot != FREE && slot != REMOVED {
                self.table.place(slot);
            }
        }
        old.moved = end;
        if end == old.table.slots.len() {
            memory::drop_elsewhere(self.moving.take());
        }
    }

    /// Forgets `id`; returns its position, if it was indexed.
    pub(crate) fn remove(&mut self, id: u128, id_at: impl Fn(usize) -> u128) -> Option<usize> {
        let tag = self.tag(id);
        let mut position = None;
        if let Ok(i) = self.table.probe(tag, id, &id_at) {
            position = Some(position_of(self.table.slots[i]));
            self.table.remove_at(i);
        }
        if let Some(old) = &mut self.moving {
            if let Ok(i) = old.table.probe(tag, id, &id_at) {
                position = position.or(Some(position_of(old.table.slots[i])));
                old.table.slots[i] = REMOVED;
            }
        }
        self.len -= usize::from(position.is_some());
        position
    }

    /// Makes room for `additional` more ids, so that a batch grows the array at most once.
    #[inline]
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = self.len + additional;
        if needed > self.table.slots.len() / 4 * 3 {
            self.grow(needed);
        }
    }

    /// Makes room for `additional` more ids now, in an array whose pages are all mapped (in
    /// huge pages where the kernel grants them), moving every id there at once: inserts then
    /// never grow the array, and never wait for the kernel to map a page of it.
    pub(crate) fn reserve_mapped(&mut self, additional: usize) {
        let needed = self.len + additional;
        if needed > self.table.slots.len() / 4 * 3 {
            self.grow_into(HugeVec::mapped_zeros(slot_count(needed)));
            self.move_some(usize::MAX);
        }
    }

    #[cold]
    fn grow(&mut self, needed: usize) {
        self.grow_into(free_slots(slot_count(needed)));
    }

    fn grow_into(&mut self, slots: HugeVec<u64>) {
        // An index grows from one array at a time: the rest of an earlier growth moves now.
        self.move_some(usize::MAX);
        let mut grown = Self::with_slots(slots, self.hasher.clone());
        grown.len = self.len;
        let old = mem::replace(self, grown).table;
        let small = old.slots.len() < MOVE_SLOTS_MIN;
        self.moving = Some(Moving::new(old));
        if small {
            self.move_some(usize::MAX);
        }
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

    /// Makes room for the samples of `additional` more ids in order: growing the samples by
    /// doubling mapped fresh pages for them in one batch (2 ms for the 32,768th sample here).
    pub(crate) fn reserve_in_order(&mut self, additional: usize) {
        self.samples.reserve(additional.div_ceil(SAMPLE_EVERY));
    }

    /// Makes room for `additional` more ids out of order, so that a batch grows the index of
    /// them at most once.
    #[inline]
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.others.reserve(additional);
    }

    /// Makes room for `additional` more ids out of order now, all of it mapped
    /// (`IdIndex::reserve_mapped`).
    pub(crate) fn reserve_out_of_order(&mut self, additional: usize) {
        self.others.reserve_mapped(additional);
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
    fn a_mapped_reservation_keeps_the_ids_and_grows_no_more_while_the_reserved_ids_come() {
        let ids: Vec<u128> =
            (1..=100_000u128).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
        let mut index = IdIndex::default();
        for (position, &id) in ids[..1000].iter().enumerate() {
            index.insert(id, position);
        }
        index.reserve_mapped(ids.len() - 1000);
        assert!(index.moving.is_none(), "every id moved at once");
        let slots = index.table.slots.len();
        assert_eq!(slots, slot_count(ids.len()));
        for (position, &id) in ids.iter().enumerate().skip(1000) {
            index.insert(id, position);
        }
        assert_eq!(index.table.slots.len(), slots, "no growth");
        for (position, &id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, |p| ids[p]), Some(position));
        }
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
        assert_eq!(index.table.slots.len(), SLOTS_MIN);
        for (removed, &id) in ids.iter().enumerate() {
            assert_eq!(index.remove(id, |p| ids[p]), Some(removed));
            for (position, &other) in ids.iter().enumerate() {
                let expected = (position > removed).then_some(position);
                assert_eq!(index.get(other, |p| ids[p]), expected);
            }
        }
        assert_eq!(index.len, 0);
        assert!(index.table.slots.iter().all(|&slot| slot == FREE));
    }

    #[test]
    fn a_large_index_moves_its_ids_a_few_at_each_insert_and_finds_each_one_meanwhile() {
        let grow_at = MOVE_SLOTS_MIN / 4 * 3;
        let ids: Vec<u128> = (1..=grow_at as u128 * 2).map(|i| i * 0x9E37_79B9).collect();
        let id_at = |p: usize| ids[p];
        let mut index = IdIndex::default();
        index.reserve(MOVE_SLOTS_MIN / 2);
        assert_eq!(index.table.slots.len(), MOVE_SLOTS_MIN);
        for (position, &id) in ids[..=grow_at].iter().enumerate() {
            index.insert(id, position);
        }
        assert_eq!(index.table.slots.len(), MOVE_SLOTS_MIN * 2);
        assert!(index.moving.is_some(), "the ids move a few at a time");
        // Removed while moving: one moved already, one not yet, and one placed after the growth.
        let removed = [3, grow_at - 3, grow_at];
        for position in removed {
            assert_eq!(index.remove(ids[position], id_at), Some(position));
            assert_eq!(index.remove(ids[position], id_at), None);
        }
        let mut position = grow_at + 1;
        while index.moving.is_some() {
            for p in (0..position).step_by(997).filter(|p| !removed.contains(p)) {
                assert_eq!(index.get(ids[p], id_at), Some(p));
            }
            index.insert(ids[position], position);
            // Another id of the same tag (1 in 4 billion, of 400,000 here) may come first.
            assert!(index.likely_position(ids[position]).is_some());
            position += 1;
        }
        assert!(position - grow_at <= MOVE_SLOTS_MIN / MOVED_PER_INSERT + 1);
        assert_eq!(index.len, position - removed.len());
        for (p, &id) in ids[..position].iter().enumerate() {
            let expected = (!removed.contains(&p)).then_some(p);
            assert_eq!(index.get(id, id_at), expected);
        }
        assert_eq!(index.table.slots.iter().filter(|&&slot| slot != FREE).count(), index.len);
    }

    #[test]
    fn reserving_keeps_a_quarter_of_the_slots_free() {
        let mut index = IdIndex::default();
        index.reserve(1_000);
        assert!(index.table.slots.len() * 3 >= 1_000 * 4);
        let before = index.table.slots.len();
        index.reserve(1_000);
        assert_eq!(index.table.slots.len(), before);
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
