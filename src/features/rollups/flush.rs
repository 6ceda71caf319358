//! Writing the pending sums: at the end of every statement on a tracked table (the statement
//! trigger calls `flush`) and before commit (`flush_all`), one row of sums per (rollup, period,
//! group) added into this backend's stripe by `stripes::add_all`; the groups written into watched
//! tables of sums are remembered for the features watching them (budgets).

use super::accumulate::{key_bytes, Acc, Sum, PENDING};
use super::defs::SourceDefs;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    /// The (rollup, period, group)s this transaction wrote into watched stripes tables.
    static WRITTEN: RefCell<HashMap<Vec<u8>, Written, rustc_hash::FxBuildHasher>> = RefCell::new(Default::default());
}

/// A (period, group) of a rollup this transaction added sums to: what a feature watching that
/// rollup (budgets) needs to look at it again before commit.
pub struct Written {
    pub stripes: pg_sys::Oid,
    pub period: i64,
    /// Group values in group_by order (TopTransactionContext: valid until the transaction ends).
    pub group: Vec<Option<pg_sys::Datum>>,
    /// Their types.
    pub types: Vec<pg_sys::Oid>,
}

/// Which stripes tables to report in `take_written` (set once from `_PG_init`).
static WATCH: std::sync::OnceLock<fn(pg_sys::Oid) -> bool> = std::sync::OnceLock::new();

/// Has the groups written into stripes tables for which `watched` says yes remembered until
/// `take_written` (budgets: wired in lib.rs, so that rollups need not know them).
pub fn watch_written(watched: fn(pg_sys::Oid) -> bool) {
    let _ = WATCH.set(watched);
}

/// The watched groups written in this transaction (each once), forgetting them.
pub fn take_written() -> Vec<Written> {
    WRITTEN.with(|w| w.borrow_mut().drain().map(|(_, v)| v).collect())
}

/// The transaction ended: nothing written is left to look at.
pub(super) fn forget_written() {
    let _ = WRITTEN.try_with(|w| {
        if let Ok(mut w) = w.try_borrow_mut() {
            w.clear();
        }
    });
}

/// Writes the pending sums of the running (sub)transaction: one row of sums per (rollup,
/// period, group), added into this backend's stripe. Called at the end of every statement on a
/// tracked table.
pub fn flush() {
    let sub = crate::pg::lifecycle::current_subtransaction();
    let pending: Vec<(Vec<u8>, Acc)> = PENDING
        .with(|p| p.borrow_mut().take(sub))
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    write(pending);
}

/// Writes the sums still pending in this transaction before `rebuild_rollup` recomputes periods
/// from the rows (which include the rows behind those sums: written after the rebuild, they would
/// count twice). Sums pending in an enclosing subtransaction cannot be written from inside this
/// one (a rollback of this one would lose them): that case is refused.
#[pg_extern(volatile, parallel_unsafe)]
pub(super) fn _flush_pending_sums() {
    let sub = crate::pg::lifecycle::current_subtransaction();
    let outer = PENDING.with(|p| p.borrow().holders().into_iter().any(|s| s != sub));
    if outer {
        crate::pg::fail::user(pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "llm_cost: rows inserted earlier in this transaction, outside the current savepoint or exception block, are not yet in the rollups")
            .detail("Run llm_cost.rebuild_rollup() outside the savepoint, or in a transaction of its own.")
            .raise();
    }
    flush();
}

/// Writes every pending sum (before commit: the transaction's own subtransactions have all
/// ended, so everything pending belongs to it).
pub fn flush_all() {
    let pending: Vec<(Vec<u8>, Acc)> =
        PENDING.with(|p| p.borrow_mut().take_all().into_iter().flatten().collect());
    write(pending);
}

pub(super) fn write(pending: Vec<(Vec<u8>, Acc)>) {
    if pending.is_empty() {
        return;
    }
    // This backend's stripe: its slot (`stripes::next_stride` for a row a prepared transaction holds).
    let stripe = super::backend_slot();
    // Each rollup's (period, group) sums, projected from the pending ones. Rollups are told apart
    // by their stripes table, not by the definitions' identity: definitions reloaded in the
    // middle of a statement (any invalidation of the source) describe the same rollups, and
    // their sums must land in one summary row per group, not in two updates of it.
    type Groups =
        HashMap<Vec<u8>, (i64, Vec<Option<pg_sys::Datum>>, Sum), rustc_hash::FxBuildHasher>;
    let mut by_rollup: Vec<(Rc<SourceDefs>, usize, Groups)> = Vec::new();
    let mut key = Vec::with_capacity(128);
    for (_, acc) in pending {
        if acc.sum.is_zero() {
            continue;
        }
        for (ri, r) in acc.defs.rollups.iter().enumerate() {
            let group: Vec<Option<pg_sys::Datum>> =
                r.in_union.iter().map(|&u| acc.group[u]).collect();
            key.clear();
            key.extend_from_slice(&acc.defs.relid.to_u32().to_le_bytes());
            key.extend_from_slice(&r.layout.stripes.to_u32().to_le_bytes());
            key.extend_from_slice(&acc.periods[ri].to_le_bytes());
            for (g, v) in r.groups.iter().zip(&group) {
                // SAFETY: the group values were copied into TopTransactionContext with their attributes (g).
                unsafe { key_bytes(&mut key, *v, *g) };
            }
            let groups = match by_rollup
                .iter()
                .position(|(d, i, _)| d.rollups[*i].layout.stripes == r.layout.stripes)
            {
                Some(i) => &mut by_rollup[i].2,
                None => {
                    by_rollup.push((acc.defs.clone(), ri, Groups::default()));
                    &mut by_rollup.last_mut().unwrap().2
                }
            };
            match groups.get_mut(key.as_slice()) {
                Some((_, _, s)) => s.merge(&acc.sum),
                None => {
                    groups.insert(key.clone(), (acc.periods[ri], group, acc.sum.clone()));
                }
            }
        }
    }
    for (defs, ri, groups) in by_rollup {
        let groups: Vec<(Vec<u8>, (i64, Vec<Option<pg_sys::Datum>>, Sum))> =
            groups.into_iter().collect();
        let money: Vec<[pg_sys::Datum; 6]> =
            groups.iter().map(|(_, (_, _, s))| money_of(s)).collect();
        let sums: Vec<super::stripes::Sums> = groups
            .iter()
            .zip(money)
            .map(|((key, (period, group, s)), m)| super::stripes::Sums {
                key,
                period: *period,
                group,
                stripe,
                requests: s.requests,
                tokens: s.tokens,
                cost: m[0],
                unpriced: s.unpriced,
                errors: s.errors,
                latency_sum: s.latency_sum,
                latency_max: s.latency_max,
                first: s.first,
                last: s.last,
                cache_savings: m[1],
                cache_write_extra: m[2],
                error_cost: m[3],
                provided: s.provided,
                provided_cost: m[4],
                provided_list: m[5],
                hist: super::hist::int8_array(&llm_cost_core::hist::to_flat(&s.hist)),
                max_cost: s
                    .max_cost
                    .map(|u| crate::pg::money::cost_datum(llm_cost_core::pricing::Cost(u), -1)),
            })
            .collect();
        super::stripes::add_all(&defs.rollups[ri].layout, &sums);
        let r = &defs.rollups[ri];
        // (Budgets look at the groups written into tables of sums they watch; no budget watches
        // a shard's, and asking would load every budget in each new Citus worker backend.)
        if !defs.shard && WATCH.get().is_some_and(|w| w(r.layout.stripes)) {
            WRITTEN.with(|w| {
                let mut w = w.borrow_mut();
                for (key, (period, group, _)) in &groups {
                    w.entry(key.clone()).or_insert_with(|| Written {
                        stripes: r.layout.stripes,
                        period: *period,
                        group: group.clone(),
                        types: r.groups.iter().map(|a| a.typid).collect(),
                    });
                }
            });
        }
    }
}

/// The exact money sums of a group as numeric: cost, cache savings, cache write extra, error
/// cost, provided cost, list price of the provided rows.
pub(super) fn money_of(acc: &Sum) -> [pg_sys::Datum; 6] {
    let units = |u: i128| {
        super::accumulate::Exact {
            units: u,
            extra: None,
        }
        .datum()
    };
    [
        acc.cost.datum(),
        units(acc.cache_savings),
        units(acc.cache_write_extra),
        acc.error_cost.datum(),
        acc.provided_cost.datum(),
        units(acc.provided_list),
    ]
}
