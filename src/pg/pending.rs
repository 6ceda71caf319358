//! What a transaction's rows leave in backend memory until it is written (rollup sums, the
//! unknown models to list), kept per subtransaction: an aborted subtransaction (a rolled-back
//! savepoint, an exception block that caught an error) drops its own entries, a committed one
//! hands them to its parent. Statement triggers write the running subtransaction's entries; the
//! transaction writes whatever is left just before it commits (callbacks in `usage.rs`).

use pgrx::pg_sys::SubTransactionId;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Entries that can absorb others of the same kind.
pub trait Merge {
    fn merge(&mut self, other: Self);
}

impl<K: Eq + Hash, V: Merge, S: BuildHasher> Merge for HashMap<K, V, S> {
    fn merge(&mut self, other: Self) {
        for (k, v) in other {
            match self.entry(k) {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(v),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
    }
}

/// Entries per subtransaction that made them (innermost last).
pub struct PerSub<M> {
    subs: Vec<(SubTransactionId, M)>,
}

impl<M> Default for PerSub<M> {
    fn default() -> Self {
        PerSub { subs: Vec::new() }
    }
}

impl<M: Default + Merge> PerSub<M> {
    /// The entries of subtransaction `sub`, created empty if needed.
    pub fn of(&mut self, sub: SubTransactionId) -> &mut M {
        let i = match self.subs.iter().rposition(|(s, _)| *s == sub) {
            Some(i) => i,
            None => {
                self.subs.push((sub, M::default()));
                self.subs.len() - 1
            }
        };
        &mut self.subs[i].1
    }

    /// Removes and returns the entries of `sub`.
    pub fn take(&mut self, sub: SubTransactionId) -> Option<M> {
        let i = self.subs.iter().rposition(|(s, _)| *s == sub)?;
        Some(self.subs.remove(i).1)
    }

    /// Removes and returns everything (before commit, every subtransaction has ended).
    pub fn take_all(&mut self) -> Vec<M> {
        self.subs.drain(..).map(|(_, m)| m).collect()
    }

    /// Subtransaction `sub` committed: its entries now belong to `parent`.
    pub fn commit(&mut self, sub: SubTransactionId, parent: SubTransactionId) {
        if let Some(moved) = self.take(sub) {
            self.of(parent).merge(moved);
        }
    }

    /// The subtransactions that hold entries.
    pub fn holders(&self) -> Vec<SubTransactionId> {
        self.subs.iter().map(|(s, _)| *s).collect()
    }

    /// The transaction ended.
    pub fn clear(&mut self) {
        self.subs.clear();
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[derive(Default, Debug, PartialEq)]
    struct N(i64);
    impl Merge for N {
        fn merge(&mut self, o: N) {
            self.0 += o.0;
        }
    }

    fn add(
        p: &mut PerSub<HashMap<&'static str, N>>,
        sub: SubTransactionId,
        k: &'static str,
        n: i64,
    ) {
        p.of(sub).entry(k).or_default().0 += n;
    }

    #[test]
    fn committed_subtransactions_merge_into_their_parent_aborted_ones_vanish() {
        let mut p: PerSub<HashMap<&'static str, N>> = PerSub::default();
        add(&mut p, 1, "a", 1);
        add(&mut p, 2, "a", 10); // savepoint 2 in 1
        add(&mut p, 2, "b", 5);
        add(&mut p, 3, "a", 100); // savepoint 3 in 2, rolled back
        p.take(3);
        p.commit(2, 1);
        add(&mut p, 4, "b", 1000); // savepoint 4 in 1, committed
        p.commit(4, 1);
        let all = p.take_all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].get("a"), Some(&N(11)));
        assert_eq!(all[0].get("b"), Some(&N(1005)));
        assert!(p.take_all().is_empty());
    }

    #[test]
    fn commit_of_a_subtransaction_without_entries_changes_nothing() {
        let mut p: PerSub<HashMap<&'static str, N>> = PerSub::default();
        add(&mut p, 1, "a", 1);
        p.commit(7, 1);
        p.take(8);
        assert_eq!(p.take(1).map(|m| m.len()), Some(1));
    }
}
