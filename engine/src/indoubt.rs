//! The writer's table of in-doubt intents (appended, no outcome yet): a fixed-capacity
//! open-addressing hash map allocated at open, so appends and outcomes never allocate.

use tradewal_codec::{Fill, InDoubt, Lsn, TradeIntent};

#[derive(Clone, Copy)]
struct Entry {
    lsn: Lsn, // 0 = empty
    intent: Option<TradeIntent>,
    /// Its latest partial fill.
    fill: Option<Fill>,
}

const EMPTY: Entry = Entry { lsn: 0, intent: None, fill: None };

/// Fixed-capacity map LSN → intent with linear probing and backward-shift deletion.
pub(crate) struct InDoubtTable {
    slots: Box<[Entry]>,
    mask: usize,
    len: usize,
    limit: usize,
    /// Entries not in their home slot. While it is 0 every entry sits at home, so a removal
    /// leaves nothing to shift back and `remove` is O(1) (with identity hashing and sequential
    /// LSNs the live entries form long contiguous runs, and scanning the run after each removed
    /// entry was a fifth of the writer's time at high rates).
    displaced: usize,
}

impl InDoubtTable {
    /// A table holding up to `limit` entries (load factor <= 1/2).
    pub(crate) fn new(limit: usize) -> Self {
        assert!(limit > 0);
        let cap = (limit * 2).next_power_of_two();
        InDoubtTable { slots: vec![EMPTY; cap].into_boxed_slice(), mask: cap - 1, len: 0, limit, displaced: 0 }
    }

    fn home(&self, lsn: Lsn) -> usize {
        // Identity: LSNs are sequential, so live entries sit in neighbouring slots (cache-friendly)
        // and collide only with an entry a whole table-length older that is still in doubt.
        lsn as usize & self.mask
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, lsn: Lsn) -> bool {
        self.find(lsn).is_some()
    }

    /// The intent at `lsn` and its latest partial fill, when in doubt.
    pub(crate) fn get(&self, lsn: Lsn) -> Option<(&TradeIntent, Option<&Fill>)> {
        let e = &self.slots[self.find(lsn)?];
        Some((e.intent.as_ref().expect("occupied slot"), e.fill.as_ref()))
    }

    /// Records a partial fill of the in-doubt intent at `lsn`; false when absent.
    pub(crate) fn set_fill(&mut self, lsn: Lsn, fill: Fill) -> bool {
        let Some(i) = self.find(lsn) else { return false };
        self.slots[i].fill = Some(fill);
        true
    }

    fn find(&self, lsn: Lsn) -> Option<usize> {
        let mut i = self.home(lsn);
        loop {
            let e = &self.slots[i];
            if e.lsn == 0 {
                return None;
            }
            if e.lsn == lsn {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Inserts; the caller guarantees the limit (the producers' counter), asserted here.
    pub(crate) fn insert(&mut self, lsn: Lsn, intent: TradeIntent, fill: Option<Fill>) {
        assert!(lsn != 0);
        assert!(self.len < self.limit, "in-doubt table over its limit {}", self.limit);
        let mut i = self.home(lsn);
        while self.slots[i].lsn != 0 {
            assert!(self.slots[i].lsn != lsn, "LSN {lsn} inserted twice");
            i = (i + 1) & self.mask;
        }
        self.slots[i] = Entry { lsn, intent: Some(intent), fill };
        self.len += 1;
        if i != self.home(lsn) {
            self.displaced += 1;
        }
    }

    /// Removes; false when absent.
    pub(crate) fn remove(&mut self, lsn: Lsn) -> bool {
        let Some(mut i) = self.find(lsn) else { return false };
        if i != self.home(lsn) {
            self.displaced -= 1;
        }
        self.slots[i] = EMPTY;
        self.len -= 1;
        // Backward-shift the following cluster so lookups never stop early. Only displaced
        // entries can need it: none left, nothing to do.
        let mut j = (i + 1) & self.mask;
        while self.displaced > 0 && self.slots[j].lsn != 0 {
            let h = self.home(self.slots[j].lsn);
            // Move entry j into hole i if its home is not in (i, j] cyclically.
            let dist_hole = j.wrapping_sub(i) & self.mask;
            let dist_home = j.wrapping_sub(h) & self.mask;
            if dist_home >= dist_hole {
                self.slots[i] = self.slots[j];
                self.slots[j] = EMPTY;
                if i == h {
                    self.displaced -= 1;
                }
                i = j;
            }
            j = (j + 1) & self.mask;
        }
        true
    }

    /// Fills `out` (cleared first, capacity reserved at open) with all entries in LSN order.
    pub(crate) fn sorted_into(&self, out: &mut Vec<InDoubt>) {
        out.clear();
        assert!(out.capacity() >= self.len, "checkpoint scratch too small");
        out.extend(self.slots.iter().filter_map(|e| e.intent.map(|intent| InDoubt { lsn: e.lsn, intent, fill: e.fill })));
        out.sort_unstable_by_key(|d| d.lsn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tradewal_codec::{Side, Symbol};

    fn intent(n: i64) -> TradeIntent {
        TradeIntent {
            ts_ns: n,
            symbol: Symbol::new("X").unwrap(),
            side: Side::Sell,
            price: 1.0,
            qty: 1.0,
            stop_loss: 0.0,
            take_profit: 0.0,
            cl_ord_id: None,
            tag: None,
            group: None,
        }
    }

    #[test]
    fn matches_a_btreemap_model() {
        let mut t = InDoubtTable::new(300);
        let mut model = BTreeMap::new();
        let mut x: u64 = 0x1234_5678;
        let mut next = 1u64;
        let mut max_displaced = 0;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 != 0 && model.len() < 300 {
                let fill = (next % 7 == 0).then_some(Fill { qty: 0.5, avg_price: 1.0, venue_order_id: None, ts_ns: next as i64 });
                t.insert(next, intent(next as i64), fill);
                model.insert(next, (intent(next as i64), fill));
                next += 1;
            } else if !model.is_empty() {
                // remove a random present key, or try an absent one
                let k = if x % 5 == 0 { next + 7 } else { *model.keys().nth((x as usize / 3) % model.len()).unwrap() };
                assert_eq!(t.remove(k), model.remove(&k).is_some());
            }
            assert_eq!(t.len(), model.len());
            let displaced = t.slots.iter().enumerate().filter(|(i, e)| e.lsn != 0 && *i != t.home(e.lsn)).count();
            assert_eq!(t.displaced, displaced, "displaced counter matches the slots");
            max_displaced = max_displaced.max(displaced);
        }
        assert!(max_displaced > 0, "the run displaced entries, so the backward shift was exercised");
        let mut out = Vec::with_capacity(300);
        t.sorted_into(&mut out);
        let want: Vec<_> = model.iter().map(|(&lsn, &(intent, fill))| InDoubt { lsn, intent, fill }).collect();
        assert_eq!(out, want);
        for k in model.keys() {
            assert!(t.contains(*k));
        }
    }
}
