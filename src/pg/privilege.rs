//! Whose rights llm_cost acts with (Postgres plumbing, no SQL objects of its own).
//!
//! Two situations need another user id than the session's:
//! - **on a table owner's behalf** (retention's purge, run by the worker or by
//!   `run_retention()`): as that owner, under a security-restricted operation, like autovacuum
//!   and REFRESH MATERIALIZED VIEW. Whatever the owner's triggers, defaults or index expressions
//!   run, they run with the owner's rights, not the purger's, and cannot change the session
//!   (SET ROLE, temporary objects, ...).
//! - **llm_cost's own bookkeeping** from inside a writer's statement (unknown models, rollup
//!   definitions): as the extension's owner, through internal functions that PUBLIC cannot
//!   execute. A hostile role cannot call them; the trigger code can.
//!
//! GUC changes made inside either are undone when it ends (a nest level, as for a function's
//! SET clause); an error undoes everything with the (sub)transaction.

use super::spi;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// The owner of the llm_cost extension in this database. Read each time (callers are rare:
/// unknown models once per statement, rollup definitions once per load, registry writes): an
/// extension dropped and created again by another role is never run as a stale owner.
pub fn extension_owner() -> pg_sys::Oid {
    spi::get_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'llm_cost'",
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "llm_cost: the extension is not installed in this database",
        )
        .hint("Run CREATE EXTENSION llm_cost in this database.")
        .raise()
    })
}

/// The owner of a relation, or None when it does not exist.
pub fn owner_of(relid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    // SAFETY: a catalog cache look-up released before returning; GETSTRUCT of a pg_class tuple.
    unsafe {
        let tup = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(relid),
        );
        if tup.is_null() {
            return None;
        }
        let form = ((*tup).t_data as *mut u8).add((*(*tup).t_data).t_hoff as usize)
            as *const pg_sys::FormData_pg_class;
        let owner = (*form).relowner;
        pg_sys::ReleaseSysCache(tup);
        Some(owner)
    }
}

/// Whether the current user has the rights of `role` (is it, or a member that inherits it).
pub fn has_rights_of(role: pg_sys::Oid) -> bool {
    // SAFETY: a privilege check on the syscache, in a transaction.
    unsafe { pg_sys::has_privs_of_role(pg_sys::GetUserId(), role) }
}

/// Runs `f` as `role`. `restricted`: as a security-restricted operation (what the table owner's
/// code may do is limited as in autovacuum). The session's user id and security context come
/// back when `f` returns or raises; settings changed inside are undone.
pub fn as_role<R>(role: pg_sys::Oid, restricted: bool, f: impl FnOnce() -> R) -> R {
    let (mut user, mut sec) = (pg_sys::InvalidOid, 0i32);
    // SAFETY: reads the current user and security context, restored below.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut sec) };
    let mut flags = sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32;
    if restricted {
        flags |= pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
    }
    // SAFETY: switches to the role's rights; restored below on success and on error.
    unsafe { pg_sys::SetUserIdAndSecContext(role, flags) };
    // SAFETY: a GUC nest level, undone below.
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    let r = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .catch_others(|e| {
            // The (sub)transaction's abort undoes the settings; the user id comes back now, so
            // nothing after the catch runs with the borrowed rights.
            // SAFETY: restores the user and context saved above before the error goes on.
            unsafe { pg_sys::SetUserIdAndSecContext(user, sec) };
            e.rethrow()
        })
        .execute();
    // SAFETY: undoes the nest level and restores the user and context saved above.
    unsafe {
        pg_sys::AtEOXact_GUC(true, nest);
        pg_sys::SetUserIdAndSecContext(user, sec);
    }
    r
}

/// Runs `f` as the owner of `relid` under a security-restricted operation, if the current user
/// has that owner's rights (a superuser has everyone's); otherwise 42501.
pub fn as_table_owner<R>(relid: pg_sys::Oid, what: &str, f: impl FnOnce() -> R) -> R {
    let owner = require_owner_rights(relid, what);
    as_role(owner, true, f)
}

/// The owner of `relid`, if the current user has that owner's rights (a superuser has
/// everyone's): otherwise 42501 "must be owner of <relid> to <what>"; 42P01 if it does not exist.
pub fn require_owner_rights(relid: pg_sys::Oid, what: &str) -> pg_sys::Oid {
    let Some(owner) = owner_of(relid) else {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!(
                "llm_cost: relation with OID {} does not exist",
                relid.to_u32()
            ),
        )
        .raise();
    };
    if !has_rights_of(owner) {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be owner of {} to {what}", relname(relid)),
        )
        .raise();
    }
    owner
}

/// Runs `f` (llm_cost's own bookkeeping SQL) as the extension's owner.
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    as_role(extension_owner(), true, f)
}

pub fn relname(relid: pg_sys::Oid) -> String {
    spi::get_one_with_args::<String>(
        "SELECT $1::pg_catalog.regclass::pg_catalog.text",
        &[relid.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| relid.to_u32().to_string())
}

/// Sets a setting until the end of the innermost `as_role` (GUC_ACTION_SAVE: undone when that
/// nest level ends, like a function's SET clause).
pub fn set_for_nest(name: &std::ffi::CStr, value: &str) {
    let v = std::ffi::CString::new(value).expect("setting value");
    // SAFETY: sets a GUC at the nest level the caller opened; NUL-terminated name and value.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            v.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}

/// Whether rows written into `relid` now are a dump being restored: the session has the
/// settings pg_dump's output and pg_restore set (`row_security = off` and
/// `check_function_bodies = off`; applications never turn both off) and the current user has the
/// rights of the table's owner (a restore runs as the owner or a superuser; anyone else's rows are
/// priced and rolled up as always). Such rows are stored as they are: their costs as dumped (never
/// re-priced at today's prices), no rollup sums added (the dump carries the sums), no unpriced
/// count, no budget alert: the dump carries all of them (docs/operations.md, "Backup and restore").
pub fn loading_dump(relid: pg_sys::Oid) -> bool {
    // SAFETY: plain reads of two GUC variables; the owner check is a syscache look-up.
    unsafe {
        !pg_sys::row_security
            && !pg_sys::check_function_bodies
            && pg_sys::pg_class_ownercheck(relid, pg_sys::GetUserId())
    }
}
