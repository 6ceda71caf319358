//! Rollups: striped summary tables (SQL in `sql/rollups.sql`) kept from the source's triggers.
//!
//! Each row inserted into (or updated in) a source with rollups is added, in backend memory, to
//! the sums of its (rollup, period, group) for the running statement: by the AFTER INSERT OR
//! UPDATE row trigger; in COPY FROM into a plain table, by `llm_cost._copy_row()` as COPY reads
//! the row (`features::copy`, through `add_copied_row`); in other COPYs where nothing can skip or
//! change a row after the cost trigger, from the cost trigger (`features::copy::fast_path`). The COPY paths switch
//! the row trigger off for the statement so that no after-trigger event is queued per row. The
//! source's statement trigger (`usage::usage_statement_end`) then adds one row of sums per group
//! into the writing backend's own stripe (`stripes.rs`: an index probe and a HOT update, no SQL). A 10,000-row
//! COPY of one group writes one summary row per rollup; two backends never write the same row,
//! so writers of one group never wait for each other. Everything is in the writing transaction:
//! pending sums belong to the subtransaction that saw the row; an aborted subtransaction drops its
//! own, a committed one hands them to its parent, and whatever a statement trigger did not write
//! (rows inserted straight into a partition, whose statement triggers are not the root's) is
//! written before commit (`LIFECYCLE`, run by `pg::lifecycle`).

//!
//! The files, in the order a row meets them: `defs` (a source's rollups: column positions, read
//! once per backend), `accumulate` (the pending sums of a statement), `flush` (written at
//! statement end and before commit), `stripes` (the write into a table of sums, no SQL).
//! `sql/rollups.sql` holds the SQL side: the registry, `create_rollup`, the backfill and
//! `_rollup_defs`; the columns of a table of sums are `stripes::COLUMNS`, which SQL reads
//! through `llm_cost._stripes_columns()`.

mod accumulate;
mod defs;
mod flush;
pub mod hist;
pub mod stripes;

use accumulate::{add_row, Borrowed};
use defs::defs_for;
use pgrx::prelude::*;

use accumulate::{abort_sub, commit_sub};
pub use accumulate::{
    add_copied_row, clear_pending, copy_defs, defs_of, estimate_with, paths, Defs, Estimator,
};
pub use defs::{forget, forget_all, is_rollup_trigger};
use flush::forget_written;
pub use flush::{flush, flush_all, take_written, watch_written, Written};

/// Rollup sums in the transaction's lifecycle (`pg::lifecycle`): sums no statement trigger wrote
/// (rows inserted straight into a partition) are written before commit; sums of an aborted
/// (sub)transaction go with it.
pub static LIFECYCLE: crate::pg::lifecycle::Participant = crate::pg::lifecycle::Participant {
    pre_commit: flush_all,
    end: |_prepared| {
        clear_pending();
        forget_written();
    },
    sub_abort: abort_sub,
    sub_commit: commit_sub,
};

/// Whether a stored row counts as unpriced (`llm_cost_core::ledger::is_unpriced`, the rule the
/// row path applies), for SQL that sums raw rows (the rollup backfill): `p_has_source` whether
/// the table has a cost_source column and `p_source` its value; else the cost, the cost column's
/// default and the row's estimate as the column stores it.
#[pg_extern(immutable, parallel_safe, name = "_is_unpriced")]
fn is_unpriced(
    p_has_source: bool,
    p_source: Option<&str>,
    p_cost: Option<pgrx::AnyNumeric>,
    p_default: Option<pgrx::AnyNumeric>,
    p_estimate: Option<pgrx::AnyNumeric>,
) -> bool {
    llm_cost_core::ledger::is_unpriced(
        p_has_source.then_some(p_source),
        p_cost.as_ref(),
        p_default.as_ref(),
        || p_estimate,
    )
}

/// How a stored row's cost came to be (`llm_cost_core::ledger::stored`, the rule the row path
/// applies): provided, estimated or unpriced; arguments as `_is_unpriced`, the estimate needed
/// whenever the table has no cost_source column.
#[pg_extern(immutable, parallel_safe, name = "_cost_stored")]
pub fn cost_stored(
    p_has_source: bool,
    p_source: Option<&str>,
    p_cost: Option<pgrx::AnyNumeric>,
    p_default: Option<pgrx::AnyNumeric>,
    p_estimate: Option<pgrx::AnyNumeric>,
) -> &'static str {
    use llm_cost_core::ledger::Stored;
    match llm_cost_core::ledger::stored(
        p_has_source.then_some(p_source),
        p_cost.as_ref(),
        p_default.as_ref(),
        || p_estimate,
    ) {
        Stored::Provided => "provided",
        Stored::Estimated => "estimated",
        Stored::Unpriced => "unpriced",
    }
}

/// The stripe this backend adds its sums into: its slot number (1..max_connections+workers,
/// unique among running backends); a group whose row there a prepared transaction holds goes to
/// a later stride of the slot for that statement.
#[pg_extern(volatile, parallel_restricted, name = "_stripe")]
pub fn stripe() -> i32 {
    backend_slot()
}

#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
fn backend_slot() -> i32 {
    // SAFETY: reads this backend's id.
    unsafe { pg_sys::MyBackendId }
}

#[cfg(any(feature = "pg17", feature = "pg18"))]
fn backend_slot() -> i32 {
    // SAFETY: reads this backend's proc number.
    unsafe { pg_sys::MyProcNumber + 1 }
}

/// Whether a deleted row version was deleted by an UPDATE that moved the row to another partition
/// (PostgreSQL marks its ctid so; the AFTER trigger reads the version from the page).
unsafe fn moved_to_another_partition(t: pg_sys::HeapTuple) -> bool {
    if t.is_null() || (*t).t_data.is_null() {
        return false;
    }
    let ctid = (*(*t).t_data).t_ctid;
    let block = ((ctid.ip_blkid.bi_hi as u32) << 16) | ctid.ip_blkid.bi_lo as u32;
    ctid.ip_posid as u32 == pg_sys::MovedPartitionsOffsetNumber && block == u32::MAX
    // InvalidBlockNumber
}

/// AFTER INSERT OR UPDATE ... FOR EACH ROW on a source with rollups (and DELETE on a
/// partitioned one, for rows an UPDATE moves between partitions).
#[pg_trigger]
fn rollup_row_trigger<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let td = trigger.trigger_data();
    let event = td.tg_event;
    let relid = trigger.relid()?;
    if crate::pg::privilege::loading_dump(relid) {
        return Ok(None); // a restore: the dump carries the sums
    }
    // SAFETY: the trigger's open relation.
    let tupdesc = unsafe { (*td.tg_relation).rd_att };
    crate::pg::lifecycle::ensure_registered();
    let defs = defs_for(relid, td.tg_relation);
    if defs.rollups.is_empty() {
        return Ok(None);
    }
    // SAFETY: the trigger's tuples, deformed with their relation's descriptor.
    unsafe {
        let add = |tuple, sign| {
            let (values, nulls) = crate::pg::row::deform(tuple, tupdesc);
            add_row(
                &defs,
                &Borrowed {
                    values: &values,
                    nulls: &nulls,
                },
                sign,
                None,
            );
        };
        if pgrx::trigger_support::trigger_fired_by_insert(event) {
            add(td.tg_trigtuple, 1);
            accumulate::count_trigger_row();
        } else if pgrx::trigger_support::trigger_fired_by_update(event) {
            add(td.tg_trigtuple, -1);
            add(td.tg_newtuple, 1);
        } else if pgrx::trigger_support::trigger_fired_by_delete(event)
            && moved_to_another_partition(td.tg_trigtuple)
        {
            // A DELETE never changes a rollup, except this one: the first half of an UPDATE that
            // moved the row to another partition, whose second half is an INSERT there.
            add(td.tg_trigtuple, -1);
        }
    }
    Ok(None)
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;
