//! Citus metadata, read only where the citus extension is installed (llm_cost does not depend on
//! it). The SQL side has the same questions in sql/citus.sql.

use super::spi;
use pgrx::prelude::*;

thread_local! {
    /// Whether Citus was found loaded, once looked up (it never changes in a backend: Citus only
    /// loads from shared_preload_libraries, before any statement).
    static LOADED: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether the Citus library is loaded in this backend (its settings exist): a settings look-up
/// the first time, no catalog access; false on every server without Citus.
pub fn loaded() -> bool {
    LOADED.with(|l| match l.get() {
        Some(v) => v,
        None => {
            // SAFETY: GetConfigOption with missing_ok returns NULL for an unknown setting.
            let v = unsafe {
                !pg_sys::GetConfigOption(c"citus.propagate_set_commands".as_ptr(), true, false)
                    .is_null()
            };
            // Only a statement's answer is kept: during shared_preload_libraries (llm_cost's
            // own _PG_init, before Citus's when listed first) the answer may still change.
            // SAFETY: reads a flag of the backend's start-up state.
            if unsafe { !pg_sys::process_shared_preload_libraries_in_progress } {
                l.set(Some(v));
            }
            v
        }
    })
}

/// Whether the citus extension is installed in this database: its metadata table exists (a
/// catalog cache look-up, no query).
pub fn installed() -> bool {
    // SAFETY: a catalog name look-up; a NUL-terminated name.
    let metadata = unsafe {
        pg_sys::get_relname_relid(
            c"pg_dist_partition".as_ptr(),
            pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE),
        )
    };
    metadata != pg_sys::InvalidOid
}

/// Whether `relid` is a table Citus distributes (or replicates): a row of `pg_dist_partition`,
/// read through its index on `logicalrelid` with the catalog snapshot (no SQL: this runs for
/// every COPY, on the workers once per shard of a multi-shard statement, where planning a query
/// through Citus's planner cost more than the look-up). False where the citus extension is not
/// installed in this database.
pub fn is_citus_table(relid: pg_sys::Oid) -> bool {
    let catalog = pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE);
    // SAFETY: catalog name look-ups with NUL-terminated names.
    let (meta, index) = unsafe {
        (
            pg_sys::get_relname_relid(c"pg_dist_partition".as_ptr(), catalog),
            pg_sys::get_relname_relid(c"pg_dist_partition_logical_relid_index".as_ptr(), catalog),
        )
    };
    if meta == pg_sys::InvalidOid {
        return false;
    }
    // SAFETY: the table is opened, scanned and closed here under AccessShareLock; the scan key
    // compares the oid column `logicalrelid` (looked up by name) with oideq; the tuple is only
    // tested for existence.
    unsafe {
        let attnum = pg_sys::get_attnum(meta, c"logicalrelid".as_ptr());
        if attnum <= 0 {
            return false;
        }
        let rel = pg_sys::try_table_open(meta, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        if rel.is_null() {
            return false;
        }
        let mut key = pg_sys::ScanKeyData::default();
        pg_sys::ScanKeyInit(
            &mut key,
            attnum,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::RegProcedure::from(pg_sys::F_OIDEQ),
            pg_sys::Datum::from(relid),
        );
        let scan = pg_sys::systable_beginscan(
            rel,
            index,
            index != pg_sys::InvalidOid,
            std::ptr::null_mut(),
            1,
            &mut key,
        );
        let found = !pg_sys::systable_getnext(scan).is_null();
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        found
    }
}

/// Sets each (setting, value) with `SET LOCAL` for the rest of the transaction, here and on every
/// worker taking part in it, now or later in the transaction. Citus sends a `SET LOCAL` on to the
/// workers when `citus.propagate_set_commands` is `local` (and the statement runs in a
/// transaction block): that setting is `local` for the duration of these statements only (a GUC
/// nest level, as a function's `SET` clause), so the caller's own SETs are not sent on because
/// of this. Setting names are quoted part by part, values as literals.
pub fn set_local_everywhere(settings: &[(&std::ffi::CStr, &str)]) {
    spi::with_settings(&[(c"citus.propagate_set_commands", c"local")], || {
        for (name, value) in settings {
            let name = name
                .to_string_lossy()
                .split('.')
                .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(".");
            let value = quote_literal(value);
            spi::run(&format!("SET LOCAL {name} = {value}")).unwrap_or_else(|e| {
                super::fail::internal(format!(
                    "llm_cost: could not set {name} on the workers: {e}"
                ))
            });
        }
    })
}

fn quote_literal(value: &str) -> String {
    // (a GUC value holds no NUL)
    let c = std::ffi::CString::new(value.replace('\0', "")).unwrap_or_default();
    // SAFETY: a NUL-terminated string in, a palloc'd NUL-terminated string out, copied at once.
    unsafe {
        let q = pg_sys::quote_literal_cstr(c.as_ptr());
        let s = std::ffi::CStr::from_ptr(q).to_string_lossy().into_owned();
        pg_sys::pfree(q.cast());
        s
    }
}
