//! An open-addressing index from 64-bit hashes to positions in a table the
//! caller keeps, for tables built once and then only read on the RADIUS
//! hot path (the local accounts).
//!
//! Why not `HashMap`: the slot a key probes first follows from its hash
//! alone, so a receive batch can start loading the slots of all its
//! lookups before deciding the first (`prefetch`), and then the entries
//! behind them (`first`). Lookups of a batch are independent; their cache
//! misses overlap instead of following each other. A `HashMap` does not
//! say where a key's bucket is.
//!
//! Linear probing, at most 80 % full; a slot keeps the hash's high 32 bits
//! beside the position, so that a probe reads an entry only when those
//! match.

/// Starts loading the cache line at `p` without waiting for it. A hint: an
/// address that is not mapped is ignored, never read.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch reads nothing the program sees and does not
        // fault on any address (SSE is part of x86_64's baseline).
        #[allow(unused_unsafe)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The high half of the hash.
    tag: u32,
    /// Position + 1; 0 is an empty slot.
    pos: u32,
}

pub(crate) struct FlatIndex {
    slots: Box<[Slot]>,
    mask: usize,
    /// Slots taken.
    len: usize,
}

impl std::fmt::Debug for FlatIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatIndex").field("slots", &self.slots.len()).finish()
    }
}

impl Default for FlatIndex {
    fn default() -> Self {
        FlatIndex::with_capacity(0)
    }
}

fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl FlatIndex {
    /// Room for `capacity` positions (below `u32::MAX`), never more: a
    /// power of two of slots, at most 80 % full (a lookup probes about
    /// three slots then, and a slot is 8 bytes: mostly one cache line).
    pub(crate) fn with_capacity(capacity: usize) -> FlatIndex {
        let n = (capacity.max(4) * 5 / 4 + 1).next_power_of_two();
        FlatIndex {
            slots: vec![Slot::default(); n].into_boxed_slice(),
            mask: n - 1,
            len: 0,
        }
    }

    /// The first slot `hash` probes. The lowest bit is left to the caller
    /// (the local directory tells users from MACs by it).
    fn home(&self, hash: u64) -> usize {
        (hash >> 1) as usize & self.mask
    }

    /// Indexes `pos` under `hash`; where `same` says an indexed position
    /// holds the same key, `pos` replaces it and the old one is returned.
    pub(crate) fn insert(&mut self, hash: u64, pos: usize, same: impl Fn(usize) -> bool) -> Option<usize> {
        let stored = u32::try_from(pos + 1).expect("fewer than u32::MAX entries");
        let mut i = self.home(hash);
        loop {
            if self.slots[i].pos == 0 {
                // A full table would make every probe endless.
                assert!(self.len + 1 < self.slots.len(), "FlatIndex over its capacity");
                self.len += 1;
                self.slots[i] = Slot {
                    tag: tag(hash),
                    pos: stored,
                };
                return None;
            }
            let s = &mut self.slots[i];
            if s.tag == tag(hash) && same(s.pos as usize - 1) {
                let old = s.pos as usize - 1;
                s.pos = stored;
                return Some(old);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The position indexed under `hash` for which `is` holds.
    pub(crate) fn find(&self, hash: u64, is: impl Fn(usize) -> bool) -> Option<usize> {
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s.pos == 0 {
                return None;
            }
            if s.tag == tag(hash) && is(s.pos as usize - 1) {
                return Some(s.pos as usize - 1);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The first position `find(hash, ..)` would look at: for loading its
    /// entry ahead of the lookup. Not a lookup (the key is not compared).
    pub(crate) fn first(&self, hash: u64) -> Option<usize> {
        self.find(hash, |_| true)
    }

    /// Puts `entry` into `entries` under `hash`: in place of the entry
    /// `same` says has its key, if there is one (the later one wins).
    pub(crate) fn upsert<T>(&mut self, entries: &mut Vec<T>, hash: u64, entry: T, same: impl Fn(&T, &T) -> bool) {
        match self.find(hash, |q| same(&entries[q], &entry)) {
            Some(old) => entries[old] = entry,
            None => {
                self.insert(hash, entries.len(), |_| false);
                entries.push(entry);
            }
        }
    }

    /// Starts loading the slot `hash` probes first.
    pub(crate) fn prefetch(&self, hash: u64) {
        prefetch(&self.slots[self.home(hash)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_through_collisions_and_replaces_the_same_key() {
        let keys: Vec<u64> = (0..1000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let mut ix = FlatIndex::with_capacity(keys.len() + 3);
        for (p, k) in keys.iter().enumerate() {
            assert_eq!(ix.insert(*k, p, |q| keys[q] == *k), None);
        }
        // Same home slot and tag, different keys: both kept, told apart by `is`.
        let twin = keys[0] ^ 1;
        let mut all = keys.clone();
        all.push(twin);
        assert_eq!(ix.insert(twin, 1000, |q| all[q] == twin), None);
        for (p, k) in all.iter().enumerate() {
            assert_eq!(ix.find(*k, |q| all[q] == *k), Some(p));
        }
        assert_eq!(ix.first(keys[5]), Some(5));
        // A key that is not there: an empty slot ends the probe.
        let absent = 0x1234_5678_9abc_def1;
        assert_eq!(ix.find(absent, |q| all[q] == absent), None);
        // Replacing a key gives back its old position.
        all.push(keys[7]);
        assert_eq!(ix.insert(keys[7], 1001, |q| all[q] == keys[7]), Some(7));
        assert_eq!(ix.find(keys[7], |q| all[q] == keys[7]), Some(1001));
        ix.prefetch(absent);
    }

    #[test]
    fn full_collisions_probe_on() {
        // Every hash on one home slot: linear probing still finds each.
        let keys: Vec<u64> = (0..50u64).map(|i| i << 40).collect();
        let mut ix = FlatIndex::with_capacity(keys.len());
        for (p, k) in keys.iter().enumerate() {
            ix.insert(*k, p, |q| keys[q] == *k);
        }
        for (p, k) in keys.iter().enumerate() {
            assert_eq!(ix.find(*k, |q| keys[q] == *k), Some(p));
        }
    }

    #[test]
    #[should_panic(expected = "over its capacity")]
    fn never_fills_up() {
        let mut ix = FlatIndex::with_capacity(4);
        for k in 0..64u64 {
            ix.insert(k << 33, k as usize, |_| false);
        }
    }
}
