//! Row access (plumbing): a tuple's columns deformed once, the tracked table a partition's row
//! belongs to, and a row's event time read the same way by every feature.

use super::spi;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// Partition -> the partitioned table at the top of its tree (the tracked table).
    static ROOTS: RefCell<HashMap<pg_sys::Oid, pg_sys::Oid>> = RefCell::new(HashMap::new());
}

/// The tracked table a row trigger's relation stands for: itself, or for a partition (where
/// PostgreSQL fires the cloned trigger) the root of its partition tree.
pub fn root_of(relid: pg_sys::Oid, rel: pg_sys::Relation) -> pg_sys::Oid {
    // SAFETY: rel is an open relation.
    if !unsafe { (*(*rel).rd_rel).relispartition } {
        return relid;
    }
    if let Some(r) = ROOTS.with(|m| m.borrow().get(&relid).copied()) {
        return r;
    }
    let root = spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT pg_catalog.pg_partition_root($1)::pg_catalog.oid",
        &[relid.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(relid);
    ROOTS.with(|m| m.borrow_mut().insert(relid, root));
    root
}

/// A relation changed: partition trees may have too.
pub fn forget_roots() {
    let _ = ROOTS.try_with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m.clear();
        }
    });
}

/// All columns of a tuple at once: (values, nulls), indexed by attribute number - 1.
///
/// # Safety
/// `tuple` must be a valid heap tuple of the relation whose descriptor `tupdesc` is; the values point into it and live as long as it does.
pub unsafe fn deform(
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
) -> (Vec<pg_sys::Datum>, Vec<bool>) {
    let n = (*tupdesc).natts as usize;
    let mut values = vec![pg_sys::Datum::from(0); n];
    let mut nulls = vec![true; n];
    pg_sys::heap_deform_tuple(tuple, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
    (values, nulls)
}

/// An event time as timestamptz microseconds: a timestamp (without time zone) or date is the
/// local time in `zone` (None: UTC), never in the session's TimeZone, so every writer of a table
/// reads the same instant (rollups and `_event_time_sql` in sql/usage.sql read it alike).
///
/// # Safety
/// `d` must be a Datum of type `typid` (timestamptz, timestamp or date); `zone`, when given, a text Datum.
pub unsafe fn event_time(d: pg_sys::Datum, typid: pg_sys::Oid, zone: Option<pg_sys::Datum>) -> i64 {
    let ts = match typid {
        pg_sys::TIMESTAMPOID => d,
        pg_sys::DATEOID => {
            match pgrx::direct_function_call_as_datum(pg_sys::date_timestamp, &[Some(d)]) {
                Some(t) => t,
                None => return 0,
            }
        }
        _ => return d.value() as i64,
    };
    match zone {
        // timestamp and timestamptz count microseconds from the same epoch: in UTC, the same.
        None => ts.value() as i64,
        Some(z) => {
            pgrx::direct_function_call_as_datum(pg_sys::timestamp_zone, &[Some(z), Some(ts)])
                .map(|d| d.value() as i64)
                .unwrap_or(0)
        }
    }
}

/// Text group values longer than this many bytes are keyed bounded (see [`bounded_text`]).
pub const GROUP_KEY_MAX_BYTES: usize = 200;

/// A text (or varchar) value as llm_cost keys it in a table of sums: unchanged up to
/// [`GROUP_KEY_MAX_BYTES`], else its first 160 characters, "…" and the md5 of the whole value. A
/// btree key is limited to about 2.7 kB and a row must never be refused for a long name (the raw
/// row keeps the full value). The same PostgreSQL functions (`left`, `md5`, `||`) compute it here
/// and in `llm_cost._rollup_select` (backfill, rebuild, reprice), so both land in one group.
///
/// # Safety
/// `d` must be a valid text or varchar Datum.
pub unsafe fn bounded_text(d: pg_sys::Datum) -> pg_sys::Datum {
    let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
    if pgrx::varlena::varsize_any_exhdr(v) <= GROUP_KEY_MAX_BYTES {
        return d;
    }
    let call = |f: unsafe fn(pg_sys::FunctionCallInfo) -> pg_sys::Datum,
                args: &[Option<pg_sys::Datum>]| {
        pgrx::direct_function_call_as_datum(f, args).unwrap_or(d)
    };
    let ellipsis = pg_sys::Datum::from(pg_sys::cstring_to_text(c"…".as_ptr()));
    let left = call(
        pg_sys::text_left,
        &[Some(d), Some(pg_sys::Datum::from(160i32))],
    );
    let md5 = call(pg_sys::md5_text, &[Some(d)]);
    let head = call(pg_sys::textcat, &[Some(left), Some(ellipsis)]);
    call(pg_sys::textcat, &[Some(head), Some(md5)])
}

/// [`bounded_text`] of a Rust string (a group value given as text, e.g. to check_budget).
pub fn bounded_str(s: &str) -> String {
    if s.len() <= GROUP_KEY_MAX_BYTES {
        return s.to_string();
    }
    let c = std::ffi::CString::new(s).unwrap_or_default();
    // SAFETY: a fresh text Datum from a NUL-terminated string, read back as a C string.
    unsafe {
        let t = bounded_text(pg_sys::Datum::from(pg_sys::cstring_to_text(c.as_ptr())));
        std::ffi::CStr::from_ptr(pg_sys::text_to_cstring(t.cast_mut_ptr()))
            .to_string_lossy()
            .into_owned()
    }
}
