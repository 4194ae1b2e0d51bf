//! A small multiplicative hasher for the matcher's lookup tables.
//!
//! The tables are keyed by short strings taken from events (field names, values) and rebuilt
//! from trusted rules, so std's DoS-resistant SipHash buys nothing here and costs a noticeable
//! share of a match. This is the well-known "Fx" hash (as used by rustc), written out so the
//! crate needs no dependency for it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A hash table from byte strings to values, compact for the lookups that miss: a probe
/// reads 8-byte slots (a 32-bit hash tag and an index) and touches the key only when the tag
/// matches. Event values are looked up in these tables once per leaf, and with thousands of
/// rules a table no longer stays in cache between events, so its footprint is its speed.
#[derive(Clone, Debug)]
pub(crate) struct KeyTable<V> {
    /// 0 is empty; otherwise the hash tag in the high half and index + 1 in the low half.
    slots: Vec<u64>,
    keys: Vec<Box<[u8]>>,
    values: Vec<V>,
}

impl<V> Default for KeyTable<V> {
    fn default() -> Self {
        KeyTable {
            slots: Vec::new(),
            keys: Vec::new(),
            values: Vec::new(),
        }
    }
}

#[inline]
fn hash_bytes(key: &[u8]) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(key);
    hasher.write_usize(key.len());
    // Fx leaves the low bits weak; mix so that every bit depends on the whole key.
    let mut h = hasher.finish();
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

impl<V> KeyTable<V> {
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<&V> {
        self.index_of(key).map(|index| &self.values[index])
    }

    #[inline]
    fn index_of(&self, key: &[u8]) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let h = hash_bytes(key);
        let tag = h >> 32;
        let mask = self.slots.len() - 1;
        let mut pos = h as usize & mask;
        loop {
            let slot = self.slots[pos];
            if slot == 0 {
                return None;
            }
            if slot >> 32 == tag {
                let index = (slot & 0xffff_ffff) as usize - 1;
                if *self.keys[index] == *key {
                    return Some(index);
                }
            }
            pos = (pos + 1) & mask;
        }
    }

    /// The value for `key`, inserted with `make` if absent.
    pub(crate) fn entry(&mut self, key: &[u8], make: impl FnOnce() -> V) -> &mut V {
        if let Some(index) = self.index_of(key) {
            return &mut self.values[index];
        }
        if (self.keys.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let index = self.keys.len();
        self.keys.push(key.into());
        self.values.push(make());
        self.place(hash_bytes(key), index);
        &mut self.values[index]
    }

    fn place(&mut self, h: u64, index: usize) {
        let mask = self.slots.len() - 1;
        let mut pos = h as usize & mask;
        while self.slots[pos] != 0 {
            pos = (pos + 1) & mask;
        }
        self.slots[pos] = (h >> 32 << 32) | (index as u64 + 1);
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(16);
        self.slots = vec![0; size];
        for index in 0..self.keys.len() {
            let h = hash_bytes(&self.keys[index]);
            self.place(h, index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_table_finds_what_was_inserted_and_nothing_else() {
        let mut table: KeyTable<u32> = KeyTable::default();
        assert!(table.get(b"").is_none());
        for i in 0..5000u32 {
            *table.entry(i.to_string().as_bytes(), || 0) += i;
        }
        *table.entry(b"", || 7) += 1;
        for i in 0..5000u32 {
            assert_eq!(table.get(i.to_string().as_bytes()), Some(&i));
        }
        assert_eq!(table.get(b""), Some(&8));
        assert!(table.get(b"5000").is_none());
        assert!(table.get(b"x").is_none());
    }
}
