//! An index from record ids to their positions in a log: the engine's id maps.
//!
//! A map from u128 id to position would keep each id twice (in the map and in the log) and take
//! 32 bytes a slot; with a million transfers its slots fill 32 MiB that every create writes at
//! random. This index keeps only the position and 32 bits of the id's hash, 8 bytes a slot, and
//! compares a candidate's id in the log. The stored hash bits are all that growing the table
//! needs, so a rehash never reads the log.

use core::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

/// The most records a log may hold: positions are stored in 32 bits.
pub const LOG_MAX: usize = u32::MAX as usize;

#[derive(Clone, Copy, Debug)]
struct Slot {
    position: u32,
    /// The high half of the id's hash, which the table's hash is made from.
    tag: u32,
}

/// The table's 64-bit hash of a slot: the tag twice, so that the bits the table takes for the
/// bucket (the low ones) and for its control byte (the top seven) both come from the tag.
fn table_hash(tag: u32) -> u64 {
    u64::from(tag) << 32 | u64::from(tag)
}

#[derive(Debug, Default)]
pub(crate) struct IdIndex {
    table: HashTable<Slot>,
    hasher: RandomState,
}

impl IdIndex {
    fn tag(&self, id: u128) -> u32 {
        (self.hasher.hash_one(id) >> 32) as u32
    }

    /// The position of `id`, where `id_at(position)` is the id of the record at a position.
    pub(crate) fn get(&self, id: u128, id_at: impl Fn(usize) -> u128) -> Option<usize> {
        let tag = self.tag(id);
        let found = self
            .table
            .find(table_hash(tag), |slot| slot.tag == tag && id_at(slot.position as usize) == id);
        found.map(|slot| slot.position as usize)
    }

    /// Indexes a new id (the caller has checked that it is not indexed yet) at `position`.
    pub(crate) fn insert(&mut self, id: u128, position: usize) {
        assert!(position < LOG_MAX, "a log holds at most {LOG_MAX} records");
        let tag = self.tag(id);
        let slot = Slot { position: position as u32, tag };
        self.table.insert_unique(table_hash(tag), slot, |slot| table_hash(slot.tag));
    }

    /// Forgets `id`; returns its position, if it was indexed.
    pub(crate) fn remove(&mut self, id: u128, id_at: impl Fn(usize) -> u128) -> Option<usize> {
        let tag = self.tag(id);
        let entry = self.table.find_entry(table_hash(tag), |slot| {
            slot.tag == tag && id_at(slot.position as usize) == id
        });
        entry.ok().map(|entry| entry.remove().0.position as usize)
    }

    /// Makes room for `additional` more ids, so that a batch grows the table at most once.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional, |slot| table_hash(slot.tag));
    }
}

#[cfg(test)]
mod tests {
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
}
