//! COPY FROM into a tracked table: the rollups fed from the rows COPY stores without an
//! after-trigger event per row, and (PostgreSQL 14+, `batched`) the rows priced as COPY reads
//! them so that COPY keeps its batched inserts.
//!
//! Two paths, both for COPY FROM only, both falling back to the row triggers whenever they
//! cannot prove the row is stored exactly as they saw it:
//! * `fast_path`: the cost trigger hands each row it priced to this module (registered by
//!   `lib.rs` with `usage::after_insert_priced`: the cost trigger does not know COPY); when the
//!   trigger is the last BEFORE row trigger of a plain table, the row goes into the statement's
//!   rollup sums here and the rollup row trigger is switched off for the statement;
//! * `batched`: no row trigger at all; COPY's WHERE clause prices each row in place
//!   (`llm_cost._copy_row`).

use pgrx::prelude::*;

#[cfg(llm_cost_copy_shim)]
pub mod batched;

/// How many inserted rows this backend has added to rollups through the COPY paths
/// (`copy_rows`: the cost trigger's fast path or `copy.rs`) and through the rollup row trigger
/// (`trigger_rows`), since it started;
/// `copy_priced_rows`: rows COPY FROM priced without the cost trigger (`copy.rs`).
#[pg_extern(volatile, parallel_restricted, name = "_rollup_paths")]
pub fn rollup_paths() -> TableIterator<
    'static,
    (
        name!(copy_rows, i64),
        name!(trigger_rows, i64),
        name!(copy_priced_rows, i64),
    ),
> {
    let (a, b) = crate::features::rollups::paths();
    TableIterator::once((a, b, copy_priced_rows()))
}

thread_local! {
    /// Rows COPY FROM priced without the cost trigger in this backend (`copy.rs` counts them).
    static COPY_PRICED: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

fn copy_priced_rows() -> i64 {
    COPY_PRICED.with(|c| c.get())
}

/// One more row priced as COPY read it (for `_rollup_paths`).
pub fn count_copy_priced() {
    COPY_PRICED.with(|c| c.set(c.get() + 1));
}

/// The address of PostgreSQL's `CopyFromErrorCallback`, as COPY stores it in its error context.
/// Taking `pg_sys::CopyFromErrorCallback`'s address in this library gives a stub of ours, not
/// that address, so ask the dynamic linker (once).
pub fn copy_error_callback() -> Option<usize> {
    extern "C" {
        fn dlsym(
            handle: *mut std::ffi::c_void,
            symbol: *const std::ffi::c_char,
        ) -> *mut std::ffi::c_void;
    }
    #[cfg(target_os = "macos")]
    const RTLD_DEFAULT: *mut std::ffi::c_void = -2isize as *mut std::ffi::c_void;
    #[cfg(not(target_os = "macos"))]
    const RTLD_DEFAULT: *mut std::ffi::c_void = std::ptr::null_mut();
    static ADDR: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *ADDR.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; the result is only compared as an address.
        let p = unsafe { dlsym(RTLD_DEFAULT, c"CopyFromErrorCallback".as_ptr()) };
        (!p.is_null()).then_some(p as usize)
    })
}

/// COPY fast path, called by the cost trigger (BEFORE INSERT ... FOR EACH ROW, which `lib.rs`
/// hands this function through `usage::after_insert_priced`) with the row it is about to return: if the row certainly gets stored exactly as it is now, adds it to the
/// statement's sums here and returns true; the rollup row trigger `llm_cost_rollup` is then
/// switched off for the rest of the statement (queueing and firing an after-trigger event per row
/// costs more than the rest of the rollup work together).
///
/// "Certainly stored as it is now" holds when all of these do:
/// * the row comes from COPY FROM (the innermost error context is COPY's: no ON CONFLICT, no
///   nested statement between COPY and this trigger; COPY's WHERE clause has already run);
/// * this trigger is the last BEFORE INSERT row trigger of the table (triggers fire in name
///   order; none after it can change or skip the row) and the table is a plain table (an FDW
///   may decline a row);
/// * no rollup reads a generated column (computed after BEFORE triggers).
///
/// Anything else that stops the row (a constraint, a unique index, a partition bound) is an
/// error that aborts the statement, and the aborted (sub)transaction drops the sums with it.
///
/// The row trigger is switched off in the statement's own copy of the trigger list (the
/// `ResultRelInfo`'s, which `tg_trigger` points into; PostgreSQL copies the relation's trigger
/// list into it in the same order), never in the relation cache: the next statement gets a
/// fresh copy with the trigger on. The pointer arithmetic is checked against the trigger's OID
/// before anything is written.
///
/// # Safety
/// called by the cost trigger with its own `TriggerData` (whose relation `relid` names) and the row it is about to return, deformed with that relation's descriptor.
pub unsafe fn fast_path(
    td: &pg_sys::TriggerData,
    relid: pg_sys::Oid,
    values: &[pg_sys::Datum],
    nulls: &[bool],
    units: Option<(i32, i128)>,
) -> bool {
    let top = pg_sys::error_context_stack;
    if top.is_null() || (*top).callback.map(|f| f as usize) != copy_error_callback() {
        return false;
    }
    let rel = td.tg_relation;
    if (*(*rel).rd_rel).relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char {
        return false;
    }
    let desc = (*rel).trigdesc;
    if desc.is_null() || td.tg_trigger.is_null() {
        return false;
    }
    let all = std::slice::from_raw_parts((*desc).triggers, (*desc).numtriggers as usize);
    let me = (*td.tg_trigger).tgoid;
    let Some(mine) = all.iter().position(|t| t.tgoid == me) else {
        return false;
    };
    let before_row_insert = (pg_sys::TRIGGER_TYPE_ROW
        | pg_sys::TRIGGER_TYPE_BEFORE
        | pg_sys::TRIGGER_TYPE_INSERT) as i16;
    if all[mine + 1..]
        .iter()
        .any(|t| t.tgtype & before_row_insert == before_row_insert)
    {
        return false;
    }
    let Some(rollup) = all.iter().position(|t| {
        crate::features::rollups::is_rollup_trigger(std::ffi::CStr::from_ptr(t.tgname).to_bytes())
    }) else {
        return false;
    };
    let origin = pg_sys::TRIGGER_FIRES_ON_ORIGIN as std::ffi::c_char;
    let disabled = pg_sys::TRIGGER_DISABLED as std::ffi::c_char;
    if all[rollup].tgenabled != origin || all[mine].tgenabled != origin {
        return false; // disabled by the DBA, or set to fire in other replication roles: leave it alone
    }
    // The statement's copy of the rollup trigger.
    let target = td.tg_trigger.offset(rollup as isize - mine as isize);
    if (*target).tgoid != all[rollup].tgoid {
        return false;
    }
    let defs = crate::features::rollups::defs_of(relid, rel);
    // Once switched off for this statement, every row is added here (the conditions hold for
    // the whole COPY); before that, check the ones that depend on the rollups.
    if (*target).tgenabled != disabled {
        if defs.is_empty() || defs.reads_generated() {
            return false;
        }
        (*target).tgenabled = disabled;
    }
    crate::features::rollups::add_copied_row(&defs, values, nulls, units);
    true
}
