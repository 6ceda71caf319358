//! The one way llm_cost runs SQL of its own (Postgres plumbing).
//!
//! Every statement llm_cost runs itself, in a function, a trigger, a transaction callback or a
//! background worker, under a borrowed user id or not, goes through this module. For the
//! statement's duration `search_path` is pinned to `pg_catalog, pg_temp`:
//!
//! - types, functions and operators written without a schema resolve in `pg_catalog` first, and
//!   never in a schema a caller can create objects in (`public`, `"$user"`);
//! - `pg_temp` is listed last, so a session's temporary objects cannot stand in for a type or
//!   relation (a domain `pg_temp.oid` is not found before `pg_catalog.oid`); PostgreSQL never
//!   looks for functions or operators in `pg_temp` unless they are qualified.
//!
//! The pin is a GUC nest level, like a function's `SET search_path` clause: undone when the call
//! returns, and by the (sub)transaction's abort when it raises. SQL text still names llm_cost's
//! own objects with their schema (`llm_cost.x`) and user relations by quoted, qualified names or
//! OIDs. `cargo test` (`tests::no_raw_spi`) fails if code outside this file calls `Spi::` directly.
//!
//! SQL-language and PL/pgSQL functions in `sql/` carry `SET search_path = pg_catalog, pg_temp`
//! themselves (checked by the hostile-namespace integration test).

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::prelude::*;
use pgrx::spi::{Result, SpiClient};

/// The search path every internal statement runs under.
pub const PINNED_PATH: &str = "pg_catalog, pg_temp";

/// Runs `f` with `search_path` pinned to [`PINNED_PATH`]; the caller's path comes back when `f`
/// returns or raises.
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    with_settings(&[(c"search_path", c"pg_catalog, pg_temp")], f)
}

/// Runs `f` with each (setting, value) set for its duration only: a GUC nest level, like a
/// function's `SET` clauses, undone when `f` returns or raises. A `SET LOCAL` made inside `f` of
/// another setting stays for the transaction.
pub fn with_settings<R>(
    settings: &[(&std::ffi::CStr, &std::ffi::CStr)],
    f: impl FnOnce() -> R,
) -> R {
    // SAFETY: a GUC nest level, undone below on success and on error.
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in settings {
        // SAFETY: NUL-terminated strings; GUC_ACTION_SAVE ties the value to the nest level above.
        unsafe {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
    }
    let r = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .catch_others(|e| {
            // Restore now (an abort would too): nothing after a caught error runs with them.
            // SAFETY: undoes the nest level opened above before the error goes on.
            unsafe { pg_sys::AtEOXact_GUC(false, nest) };
            e.rethrow()
        })
        .execute();
    // SAFETY: undoes the nest level opened above.
    unsafe { pg_sys::AtEOXact_GUC(true, nest) };
    r
}

/// For a background worker, once after it connects: the whole process runs pinned (its default
/// would be `"$user", public`, writable by a database owner).
pub fn pin_for_process() {
    // SAFETY: NUL-terminated literals; PGC_S_OVERRIDE wins over any database or role setting.
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
}

pub fn get_one<A: FromDatum + IntoDatum>(query: &str) -> Result<Option<A>> {
    pinned(|| Spi::get_one::<A>(query))
}

pub fn get_one_with_args<A: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid<'_>],
) -> Result<Option<A>> {
    pinned(|| Spi::get_one_with_args::<A>(query, args))
}

pub fn get_two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    query: &str,
) -> Result<(Option<A>, Option<B>)> {
    pinned(|| Spi::get_two::<A, B>(query))
}

pub fn get_two_with_args<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid<'_>],
) -> Result<(Option<A>, Option<B>)> {
    pinned(|| Spi::get_two_with_args::<A, B>(query, args))
}

pub fn run(query: &str) -> Result<()> {
    pinned(|| Spi::run(query))
}

pub fn run_with_args(query: &str, args: &[DatumWithOid<'_>]) -> Result<()> {
    pinned(|| Spi::run_with_args(query, args))
}

/// An SPI connection whose every statement runs pinned (the pin covers the whole closure).
pub fn connect<R>(f: impl FnOnce(&SpiClient<'_>) -> R) -> R {
    pinned(|| Spi::connect(f))
}

pub fn connect_mut<R>(f: impl FnOnce(&mut SpiClient<'_>) -> R) -> R {
    pinned(|| Spi::connect_mut(f))
}

/// Runs `sql` (no NULL arguments) with the given snapshot (a check's own view of the data, as
/// budget alerts need), pinned; returns SPI's result code.
///
/// # Safety
/// `values` must be valid Datums of `types`; `snap` a registered snapshot or null.
pub unsafe fn execute_with_snapshot(
    sql: &str,
    types: &mut [pg_sys::Oid],
    values: &mut [pg_sys::Datum],
    snap: pg_sys::Snapshot,
) -> i32 {
    assert_eq!(types.len(), values.len());
    let sqlc = std::ffi::CString::new(sql).unwrap_or_default();
    pinned(|| {
        if pg_sys::SPI_connect() < 0 {
            crate::pg::fail::internal("llm_cost: SPI_connect failed");
        }
        let plan = pg_sys::SPI_prepare(sqlc.as_ptr(), types.len() as i32, types.as_mut_ptr());
        if plan.is_null() {
            crate::pg::fail::internal("llm_cost: could not prepare an internal statement");
        }
        let nulls = vec![b' ' as std::ffi::c_char; values.len()];
        let rc = pg_sys::SPI_execute_snapshot(
            plan,
            values.as_mut_ptr(),
            nulls.as_ptr(),
            snap,
            std::ptr::null_mut(),
            false,
            true,
            0,
        );
        pg_sys::SPI_finish();
        rc
    })
}

#[cfg(test)]
mod tests {
    /// Code outside this file reaches SPI only through it (tests inside `mod tests` may use
    /// `Spi::` directly: they run as the test's superuser, never on a user's behalf).
    #[test]
    fn no_raw_spi() {
        let mut bad = Vec::new();
        for (p, lines) in crate::pg::source_files(&["pg/spi.rs", "test_support.rs", "tests.rs"]) {
            for (i, line) in lines.iter().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if code.contains("Spi::") || code.contains("pg_sys::SPI_") {
                    bad.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "SQL run outside pg::spi (search_path not pinned):\n{}",
            bad.join("\n")
        );
    }
}
