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
    let mut found = false;
    scan_metadata(
        c"pg_dist_partition",
        c"pg_dist_partition_logical_relid_index",
        c"logicalrelid",
        pg_sys::F_OIDEQ,
        pg_sys::Datum::from(relid),
        |_, _, _| found = true,
    );
    found
}

/// Calls `each` with the descriptor, values and nulls of every row of the Citus metadata table
/// `table` (in pg_catalog) whose `key_column` equals `key` (compared with the function `eq`),
/// read through `index` with the catalog snapshot, as Citus reads its metadata: no SQL. Nothing
/// where the table or the column does not exist (the citus extension is not installed here).
fn scan_metadata(
    table: &std::ffi::CStr,
    index: &std::ffi::CStr,
    key_column: &std::ffi::CStr,
    eq: u32,
    key: pg_sys::Datum,
    mut each: impl FnMut(pg_sys::TupleDesc, &[pg_sys::Datum], &[bool]),
) {
    let catalog = pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE);
    // SAFETY: catalog look-ups with NUL-terminated names; the table is opened, scanned and
    // closed here under AccessShareLock; each tuple is deformed with the table's own descriptor
    // while the scan holds it, and `each` gets the values only for that time.
    unsafe {
        let meta = pg_sys::get_relname_relid(table.as_ptr(), catalog);
        if meta == pg_sys::InvalidOid {
            return;
        }
        let idx = pg_sys::get_relname_relid(index.as_ptr(), catalog);
        let attnum = pg_sys::get_attnum(meta, key_column.as_ptr());
        if attnum <= 0 {
            return;
        }
        let rel = pg_sys::try_table_open(meta, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        if rel.is_null() {
            return;
        }
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        let mut skey = pg_sys::ScanKeyData::default();
        pg_sys::ScanKeyInit(
            &mut skey,
            attnum,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::RegProcedure::from(eq),
            key,
        );
        let scan = pg_sys::systable_beginscan(
            rel,
            idx,
            idx != pg_sys::InvalidOid,
            std::ptr::null_mut(),
            1,
            &mut skey,
        );
        let mut values = vec![pg_sys::Datum::from(0usize); natts];
        let mut nulls = vec![true; natts];
        loop {
            let tup = pg_sys::systable_getnext(scan);
            if tup.is_null() {
                break;
            }
            pg_sys::heap_deform_tuple(tup, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            each(desc, &values, &nulls);
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
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

/// A shard as Citus's metadata (`pg_dist_shard`) describes it.
#[derive(Clone, Copy, Debug)]
pub struct Shard {
    pub logical: pg_sys::Oid,
    pub id: i64,
    /// Its hash range (NULL for a shard of a reference table).
    pub min: Option<i32>,
    pub max: Option<i32>,
}

/// Rows of `pg_dist_shard` whose `key_column` equals `key` (compared with `eq`), through the
/// index `index` (`scan_metadata`): this runs in every new worker backend for every shard it
/// writes. Columns by name, their types checked before their values are read.
fn dist_shards(
    index: &std::ffi::CStr,
    key_column: &std::ffi::CStr,
    eq: u32,
    key: pg_sys::Datum,
) -> Vec<Shard> {
    let mut out = Vec::new();
    let mut cols: Option<Option<[usize; 4]>> = None;
    scan_metadata(
        c"pg_dist_shard",
        index,
        key_column,
        eq,
        key,
        |desc, values, nulls| {
            // SAFETY: the descriptor is the scanned table's; attribute numbers are checked against
            // its natts before its attributes are read; text values are read only for text columns
            // (shard bounds: short, never compressed) and checked as UTF-8.
            unsafe {
                let cols = *cols.get_or_insert_with(|| {
                    let natts = (*desc).natts as usize;
                    let find = |name: &str, types: &[pg_sys::Oid]| {
                        (0..natts).find(|&i| {
                            let a = &*(*desc).attrs.as_ptr().add(i);
                            !a.attisdropped
                                && std::ffi::CStr::from_ptr(a.attname.data.as_ptr()).to_bytes()
                                    == name.as_bytes()
                                && types.contains(&a.atttypid)
                        })
                    };
                    Some([
                        find("logicalrelid", &[pg_sys::REGCLASSOID, pg_sys::OIDOID])?,
                        find("shardid", &[pg_sys::INT8OID])?,
                        find("shardminvalue", &[pg_sys::TEXTOID])?,
                        find("shardmaxvalue", &[pg_sys::TEXTOID])?,
                    ])
                });
                let Some([r, s, lo, hi]) = cols else { return };
                if nulls[r] || nulls[s] {
                    return;
                }
                let int4 = |i: usize| -> Option<i32> {
                    if nulls[i] {
                        return None;
                    }
                    let bytes = pgrx::varlena::varlena_to_byte_slice(values[i].cast_mut_ptr());
                    std::str::from_utf8(bytes).ok()?.trim().parse::<i32>().ok()
                };
                out.push(Shard {
                    logical: pg_sys::Oid::from(values[r].value() as u32),
                    id: values[s].value() as i64,
                    min: int4(lo),
                    max: int4(hi),
                });
            }
        },
    );
    out
}

/// The relation of shard `id` of `logical` on this node: the name Citus gives it
/// (`shard_name()`, qualified only outside the public schema, quoted as identifiers), in the
/// schema of `logical`. None where there is none (the shard lives on another node).
pub fn shard_rel(logical: pg_sys::Oid, id: i64) -> Option<pg_sys::Oid> {
    // Looked up each time (only when a backend reads a shard's definitions): an oid kept
    // across statements would outlive a re-created citus extension.
    let sig = "pg_catalog.shard_name(pg_catalog.regclass,pg_catalog.int8)";
    // SAFETY: to_regprocedure with a text argument: NULL (None) when there is no such function.
    let func = unsafe {
        pgrx::direct_function_call::<pg_sys::Oid>(pg_sys::to_regprocedure, &[sig.into_datum()])
    }?;
    // SAFETY: catalog look-ups of a relation's schema and name; the function takes (regclass,
    // int8) and returns text (checked by its signature above); strings are copied at once.
    unsafe {
        let nsp = pg_sys::get_rel_namespace(logical);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        let nspname = pg_sys::get_namespace_name(nsp);
        if nspname.is_null() {
            return None;
        }
        let quoted_nsp = std::ffi::CStr::from_ptr(pg_sys::quote_identifier(nspname))
            .to_string_lossy()
            .into_owned();
        let name = pg_sys::OidFunctionCall2Coll(
            func,
            pg_sys::InvalidOid,
            pg_sys::Datum::from(logical),
            pg_sys::Datum::from(id),
        );
        let name = pgrx::text_to_rust_str_unchecked(name.cast_mut_ptr()).to_string();
        let bare = name
            .strip_prefix(&format!("{quoted_nsp}."))
            .unwrap_or(&name);
        let unquoted = match bare.strip_prefix('"').and_then(|b| b.strip_suffix('"')) {
            Some(inner) => inner.replace("\"\"", "\""),
            None => bare.to_string(),
        };
        let c = std::ffi::CString::new(unquoted).ok()?;
        let rel = pg_sys::get_relname_relid(c.as_ptr(), nsp);
        (rel != pg_sys::InvalidOid).then_some(rel)
    }
}

/// The shard `rel` is on this node: its name ends in `_<shard id>`, `pg_dist_shard` has that
/// shard, and that shard's relation here is `rel`. None for anything else.
pub fn shard_of(rel: pg_sys::Oid) -> Option<Shard> {
    // SAFETY: a catalog look-up; the name is copied at once.
    let name = unsafe {
        let n = pg_sys::get_rel_name(rel);
        if n.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(n).to_string_lossy().into_owned()
    };
    let digits = name.rsplit_once('_')?.1;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: i64 = digits.parse().ok()?;
    let shard = dist_shards(
        c"pg_dist_shard_shardid_index",
        c"shardid",
        pg_sys::F_INT8EQ,
        pg_sys::Datum::from(id),
    )
    .into_iter()
    .next()?;
    (shard_rel(shard.logical, shard.id) == Some(rel)).then_some(shard)
}

/// The shard of `logical` whose hash range covers all of `shard`'s (so every row of that shard
/// belongs in it): checked, not assumed from co-location, which
/// `alter_distributed_table(..., cascade_to_colocated => false)` breaks. Hash ranges of one table
/// do not overlap: at most one covers.
pub fn covering_shard(logical: pg_sys::Oid, shard: &Shard) -> Option<i64> {
    let (min, max) = (shard.min?, shard.max?);
    dist_shards(
        c"pg_dist_shard_logical_relid_index",
        c"logicalrelid",
        pg_sys::F_OIDEQ,
        pg_sys::Datum::from(logical),
    )
    .into_iter()
    .find(|s| s.min.is_some_and(|m| m <= min) && s.max.is_some_and(|m| m >= max))
    .map(|s| s.id)
}

/// The relation `schema.name` denotes (identifiers quoted as `format('%I.%I')` writes them), or
/// None. Resolved by catalog look-ups without privilege checks: the caller is whoever inserts
/// into a shard, who need not have USAGE on the schema of the rollup's table of sums (what may
/// be named is checked by owner afterwards).
pub fn qualified_relid(name: &str) -> Option<pg_sys::Oid> {
    let parts = llm_cost_core::text::split_qualified(name)?;
    let [schema, rel] = parts.as_slice() else {
        return None;
    };
    let (schema, rel) = (
        std::ffi::CString::new(schema.as_str()).ok()?,
        std::ffi::CString::new(rel.as_str()).ok()?,
    );
    // SAFETY: catalog look-ups with NUL-terminated names (missing_ok: InvalidOid, no error).
    unsafe {
        let nsp = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        let relid = pg_sys::get_relname_relid(rel.as_ptr(), nsp);
        (relid != pg_sys::InvalidOid).then_some(relid)
    }
}
