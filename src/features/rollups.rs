//! Rollups: striped summary tables (SQL in `sql/rollups.sql`) kept from the source's triggers.
//!
//! Each row inserted into (or updated in) a source with rollups is added, in backend memory, to
//! the sums of its (rollup, period, group) for the running statement: by the AFTER INSERT OR
//! UPDATE row trigger; in COPY FROM into a plain table, by `llm_cost._copy_row()` as COPY reads
//! the row (`copy.rs`, `add_copied_row`); in other COPYs where nothing can skip or change a row
//! after the cost trigger, by the cost trigger itself (`copy_fast_path`). The COPY paths switch
//! the row trigger off for the statement so that no after-trigger event is queued per row. The
//! source's statement trigger (`usage::usage_statement_end`) then adds one row of sums per group
//! into the writing backend's own stripe (`stripes.rs`: an index probe and a HOT update, no SQL). A 10,000-row
//! COPY of one group writes one summary row per rollup; two backends never write the same row,
//! so writers of one group never wait for each other. Everything is in the writing transaction:
//! pending sums belong to the subtransaction that saw the row; an aborted subtransaction drops its
//! own, a committed one hands them to its parent, and whatever a statement trigger did not write
//! (rows inserted straight into a partition, whose statement triggers are not the root's) is
//! written before commit (`LIFECYCLE`, run by `pg::lifecycle`).

use pgrx::prelude::*;
use crate::pg::spi;
use pgrx::IntoDatum;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

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
    let (a, b) = PATHS.with(|p| p.get());
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

/// Rollup sums in the transaction's lifecycle (`pg::lifecycle`): sums no statement trigger wrote
/// (rows inserted straight into a partition) are written before commit; sums of an aborted
/// (sub)transaction go with it; a backend whose transaction was prepared moves to another stripe.
pub static LIFECYCLE: crate::pg::lifecycle::Participant = crate::pg::lifecycle::Participant {
    pre_commit: flush_all,
    end: |prepared| {
        crate::features::stripes::transaction_ended(prepared);
        clear_pending();
        forget_written();
    },
    sub_abort: abort_sub,
    sub_commit: commit_sub,
};

/// The stripe this backend adds its sums into: its slot number (1..max_connections+workers,
/// unique among running backends), moved past stripes held by prepared transactions.
#[pg_extern(volatile, parallel_restricted, name = "_stripe")]
pub fn stripe() -> i32 {
    crate::features::stripes::stripe_for(backend_slot())
}

#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
fn backend_slot() -> i32 {
    unsafe { pg_sys::MyBackendId }
}

#[cfg(any(feature = "pg17", feature = "pg18"))]
fn backend_slot() -> i32 {
    unsafe { pg_sys::MyProcNumber + 1 }
}

#[derive(Clone, Copy)]
struct Att {
    attno: i32,
    typid: pg_sys::Oid,
    typmod: i32,
    len: i16,
    byval: bool,
    /// A generated column (computed after BEFORE triggers run).
    generated: bool,
}

struct RollupDef {
    grain: pg_sys::Datum, // text, TopMemoryContext
    zone: pg_sys::Datum,  // text, TopMemoryContext
    step_us: i64,         // more than one period, less than two
    groups: Vec<Att>,
    /// Position of each of `groups` in `SourceDefs::union`.
    in_union: Vec<usize>,
    /// Where the flush writes.
    layout: crate::features::stripes::Layout,
    /// Last period computed: [start, end).
    period: std::cell::Cell<(i64, i64)>,
}

/// The rollups of one source (`Defs` outside this module).
pub struct SourceDefs {
    /// The source (a partition has its own definitions, with its own column numbers).
    relid: pg_sys::Oid,
    /// Distinct per load: sums made with other definitions never merge with these.
    generation: u32,
    rollups: Vec<RollupDef>,
    /// Every column some rollup groups by, once.
    union: Vec<Att>,
    time: Option<Att>,
    cost: Option<Att>,
    model: Option<Att>,
    cost_source: Option<Att>,
    tokens: [Option<Att>; 4],
    error: Option<Att>,
    latency: Option<Att>,
    /// Without a cost_source column: the cost column's default, which the cost trigger stores
    /// for a row it could not price (NOT NULL cost columns).
    cost_default: Option<i128>,
    /// Zone of a timestamp or date time column (text, TopMemoryContext); None: UTC.
    zone: Option<pg_sys::Datum>,
}

impl SourceDefs {
    /// Whether a rollup reads a generated column (whose value a BEFORE trigger does not see).
    fn reads_generated(&self) -> bool {
        let fixed = [
            self.time,
            self.cost,
            self.model,
            self.cost_source,
            self.error,
            self.latency,
        ];
        fixed
            .iter()
            .chain(self.tokens.iter())
            .flatten()
            .any(|a| a.generated)
            || self
                .rollups
                .iter()
                .any(|r| r.groups.iter().any(|g| g.generated))
    }
}

/// Sums of a set of rows.
#[derive(Clone)]
struct Sum {
    requests: i64,
    tokens: [i64; 4],
    /// Cost sum in 10^-16 USD while every cost fits that scale (always, for estimated costs).
    cost: i128,
    /// Exact numeric sum (TopTransactionContext) of costs with more decimals than that, if any.
    cost_extra: Option<pg_sys::Datum>,
    unpriced: i64,
    errors: i64,
    latency_sum: i64,
    latency_max: Option<i64>,
    first: i64,
    last: i64,
}

/// Pending sums, for the running statement, of the rows of one source that share every rollup's
/// period and every column any of its rollups groups by. Each rollup's (period, group) is a
/// projection of it, made when the sums are written: a row costs one hash lookup however many
/// rollups its source has.
struct Acc {
    defs: Rc<SourceDefs>,
    /// Period start per rollup (as `defs.rollups`).
    periods: Vec<i64>,
    /// Values of `defs.union`, copied into TopTransactionContext.
    group: Vec<Option<pg_sys::Datum>>,
    sum: Sum,
}

thread_local! {
    static DEFS: RefCell<rustc_hash::FxHashMap<pg_sys::Oid, Rc<SourceDefs>>> = RefCell::new(Default::default());
    /// Pending sums per subtransaction that saw the rows, by entry key.
    static PENDING: RefCell<crate::pg::pending::PerSub<Sums>> = RefCell::new(Default::default());
    /// add_row's key buffer.
    static KEY: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(128));
    /// Rows this backend added to rollups by the COPY fast path and by the row trigger.
    static PATHS: std::cell::Cell<(i64, i64)> = const { std::cell::Cell::new((0, 0)) };
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
fn forget_written() {
    let _ = WRITTEN.try_with(|w| {
        if let Ok(mut w) = w.try_borrow_mut() {
            w.clear();
        }
    });
}

type Sums = HashMap<Vec<u8>, Acc, rustc_hash::FxBuildHasher>;

impl crate::pg::pending::Merge for Acc {
    fn merge(&mut self, other: Acc) {
        self.sum.merge(&other.sum);
    }
}

/// Drops cached rollup definitions (a source or a stripes table changed, or `llm_cost.rollups` did).
pub fn forget(relid: pg_sys::Oid) {
    let _ = DEFS.try_with(|d| {
        if let Ok(mut d) = d.try_borrow_mut() {
            if relid == pg_sys::InvalidOid {
                d.clear();
            } else {
                d.remove(&relid);
                d.retain(|_, defs| defs.rollups.iter().all(|r| r.layout.stripes != relid));
            }
        }
    });
}

/// Forget every definition (llm_cost.rollups or tracked_tables changed).
pub fn forget_all() {
    forget(pg_sys::InvalidOid);
}

/// Discards the pending sums of an aborted transaction.
pub fn clear_pending() {
    let _ = PENDING.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            p.clear();
        }
    });
}

/// A subtransaction aborted: its rows are gone, and so are their sums.
pub fn abort_sub(sub: pg_sys::SubTransactionId) {
    let _ = PENDING.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            p.take(sub);
        }
    });
}

/// A subtransaction committed: its pending sums now belong to its parent.
pub fn commit_sub(sub: pg_sys::SubTransactionId, parent: pg_sys::SubTransactionId) {
    let _ = PENDING.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            p.commit(sub, parent);
        }
    });
}

fn att_of(tupdesc: pg_sys::TupleDesc, attno: Option<i16>) -> Option<Att> {
    let attno = attno? as i32;
    if attno <= 0 {
        return None;
    }
    unsafe {
        let td = &*tupdesc;
        if attno > td.natts {
            return None;
        }
        let a = &*td.attrs.as_ptr().add((attno - 1) as usize);
        Some(Att {
            attno,
            typid: a.atttypid,
            typmod: a.atttypmod,
            len: a.attlen,
            byval: a.attbyval,
            generated: a.attgenerated != 0,
        })
    }
}

fn persistent_text(s: &str) -> pg_sys::Datum {
    unsafe { pgrx::PgMemoryContexts::TopMemoryContext.switch_to(|_| s.into_datum().expect("text")) }
}

/// `llm_cost_rollup`, or its copy on a Citus shard (`llm_cost_rollup_<shard id>`).
fn is_rollup_trigger(name: &[u8]) -> bool {
    name == b"llm_cost_rollup"
        || name
            .strip_prefix(b"llm_cost_rollup_")
            .is_some_and(|id| !id.is_empty() && id.iter().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod name_tests {
    #[test]
    fn rollup_trigger_names_on_tables_and_citus_shards() {
        assert!(super::is_rollup_trigger(b"llm_cost_rollup"));
        assert!(super::is_rollup_trigger(b"llm_cost_rollup_102008"));
        assert!(!super::is_rollup_trigger(b"llm_cost_rollup_"));
        assert!(!super::is_rollup_trigger(b"llm_cost_rollup_x1"));
        assert!(!super::is_rollup_trigger(b"llm_cost_rollups"));
        assert!(!super::is_rollup_trigger(b"llm_cost_price_102008"));
    }
}

/// The argument of the relation's `llm_cost_rollup` trigger: None without that trigger,
/// Some("") for the trigger of a plain table (definitions in the registry), Some(json) on a shard
/// of a Citus distributed table (definitions by column name: see `_rollup_shard_args`).
unsafe fn rollup_trigger_arg(rel: pg_sys::Relation) -> Option<String> {
    let desc = (*rel).trigdesc;
    if desc.is_null() {
        return None;
    }
    let all = std::slice::from_raw_parts((*desc).triggers, (*desc).numtriggers as usize);
    let t = all
        .iter()
        .find(|t| is_rollup_trigger(std::ffi::CStr::from_ptr(t.tgname).to_bytes()))?;
    if t.tgnargs < 1 || t.tgargs.is_null() {
        return Some(String::new());
    }
    Some(
        std::ffi::CStr::from_ptr(*t.tgargs)
            .to_string_lossy()
            .into_owned(),
    )
}

fn load_defs(
    relid: pg_sys::Oid,
    root: pg_sys::Oid,
    tupdesc: pg_sys::TupleDesc,
    shard_args: Option<&str>,
) -> SourceDefs {
    static GENERATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut out = SourceDefs {
        relid,
        generation,
        rollups: vec![],
        union: vec![],
        time: None,
        cost: None,
        model: None,
        cost_source: None,
        tokens: [None; 4],
        error: None,
        latency: None,
        cost_default: None,
        zone: None,
    };
    // Definitions are llm_cost's own bookkeeping: read as the extension's owner through a
    // function PUBLIC may not execute.
    let rows: Vec<_> = crate::pg::privilege::as_extension_owner(|| {
        spi::connect(|c| {
            let t = match shard_args {
                Some(args) => c.select(
                    "SELECT * FROM llm_cost._rollup_defs_shard($1, $2, $3::pg_catalog.jsonb)",
                    None,
                    &[relid.into(), root.into(), args.into()],
                )?,
                None => c.select(
                    "SELECT * FROM llm_cost._rollup_defs($1, $2)",
                    None,
                    &[root.into(), relid.into()],
                )?,
            };
            let mut v = Vec::new();
            for r in t {
                v.push((
                    r.get::<i64>(1)?.unwrap_or(0),
                    r.get::<String>(2)?.unwrap_or_default(),
                    r.get::<String>(3)?.unwrap_or_default(),
                    r.get::<Vec<i16>>(4)?.unwrap_or_default(),
                    [5, 6, 7, 8, 9, 10, 11, 12, 13, 14].map(|i| r.get::<i16>(i).ok().flatten()),
                    r.get::<pg_sys::Oid>(15)?.unwrap_or(pg_sys::InvalidOid),
                    r.get::<Vec<i16>>(16)?.unwrap_or_default(),
                    r.get::<Vec<i16>>(17)?.unwrap_or_default(),
                ));
            }
            Ok::<_, pgrx::spi::Error>(v)
        })
    })
    .unwrap_or_else(|e| error!("llm_cost: could not read rollup definitions: {e}"));
    if !rows.is_empty() {
        let (default, zone) = match shard_args {
            Some(args) => spi::get_two_with_args::<String, String>(
                "SELECT $1::pg_catalog.jsonb ->> 'cost_default', $1::pg_catalog.jsonb ->> 'zone'",
                &[args.into()],
            ),
            None => spi::get_two_with_args::<String, String>(
                // (a 0.1.0 schema, before ALTER EXTENSION UPDATE, has no time_zone column: UTC)
                "SELECT t.cost_default::pg_catalog.text, pg_catalog.to_jsonb(t) ->> 'time_zone' FROM llm_cost.tracked_tables t WHERE t.log_table = $1",
                &[root.into()],
            ),
        }
        .unwrap_or((None, None));
        out.zone = zone
            .filter(|z| !z.eq_ignore_ascii_case("UTC"))
            .map(|z| persistent_text(&z));
        out.cost_default = default
            .and_then(|t| <rust_decimal::Decimal as std::str::FromStr>::from_str(t.trim()).ok())
            .and_then(|d| {
                let d = d.normalize();
                (d.scale() <= 16).then(|| d.mantissa() * 10i128.pow(16 - d.scale()))
            });
    }
    for (id, grain, zone, groups, atts, stripes, stripes_groups, stripes_fixed) in rows {
        out.time = att_of(tupdesc, atts[0]);
        out.cost = att_of(tupdesc, atts[1]);
        out.model = att_of(tupdesc, atts[2]);
        out.cost_source = att_of(tupdesc, atts[3]);
        out.tokens = [
            att_of(tupdesc, atts[4]),
            att_of(tupdesc, atts[5]),
            att_of(tupdesc, atts[6]),
            att_of(tupdesc, atts[7]),
        ];
        out.error = att_of(tupdesc, atts[8]);
        out.latency = att_of(tupdesc, atts[9]);
        let groups: Vec<Att> = groups
            .iter()
            .filter_map(|a| att_of(tupdesc, Some(*a)))
            .collect();
        let in_union = groups
            .iter()
            .map(
                |g| match out.union.iter().position(|u| u.attno == g.attno) {
                    Some(i) => i,
                    None => {
                        out.union.push(*g);
                        out.union.len() - 1
                    }
                },
            )
            .collect();
        let fixed: [i16; 14] = stripes_fixed.try_into().unwrap_or_else(|_| {
            error!("llm_cost: the stripes table of rollup {id} is missing columns; recreate the rollup")
        });
        if stripes_groups.len() != groups.len() {
            error!("llm_cost: the group columns of rollup {id} no longer match its source and stripes table; recreate the rollup");
        }
        let step_us: i64 = match grain.as_str() {
            "hour" => 3_600_000_000 + 60_000_000,
            "day" => 26 * 3_600_000_000,
            "week" => 7 * 86_400_000_000 + 2 * 3_600_000_000,
            _ => 32 * 86_400_000_000,
        };
        out.rollups.push(RollupDef {
            grain: persistent_text(&grain),
            zone: persistent_text(&zone),
            step_us,
            groups,
            in_union,
            layout: crate::features::stripes::Layout {
                stripes,
                groups: stripes_groups,
                fixed,
                probe_keys: Default::default(),
            },
            period: std::cell::Cell::new((i64::MAX, i64::MIN)),
        });
    }
    out
}

fn defs_for(relid: pg_sys::Oid, rel: pg_sys::Relation) -> Rc<SourceDefs> {
    if let Some(d) = DEFS.with(|d| d.borrow().get(&relid).cloned()) {
        return d;
    }
    let root = crate::pg::row::root_of(relid, rel);
    let arg = unsafe { rollup_trigger_arg(rel) };
    let shard_args = arg.as_deref().filter(|a| !a.is_empty());
    let d = Rc::new(load_defs(relid, root, unsafe { (*rel).rd_att }, shard_args));
    if d.rollups.is_empty() && arg.as_deref() == Some("") {
        refuse_unfed_shard(root);
    }
    DEFS.with(|m| m.borrow_mut().insert(relid, d.clone()));
    d
}

/// A rollup trigger without definitions on a shard of a Citus distributed table: its rollups
/// were made before the table was distributed, and their sums stayed behind on the
/// coordinator. The statement fails rather than leave the rollups short of its rows.
fn refuse_unfed_shard(root: pg_sys::Oid) {
    let logical = crate::pg::privilege::as_extension_owner(|| {
        spi::get_one_with_args::<String>(
            "SELECT logical::pg_catalog.text FROM llm_cost._citus_shard_logical($1)",
            &[root.into()],
        )
    })
    .ok()
    .flatten();
    if let Some(table) = logical {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("llm_cost: the rollups of {table} were created before Citus distributed it: their sums cannot follow its shards"),
            "llm_cost.rollup_row_trigger",
        )
        .set_hint(format!("Call SELECT llm_cost.distribute_rollups('{table}') on the coordinator: their sums then move into shards next to the table's."))
        .report(PgLogLevel::ERROR);
        unreachable!();
    }
}

/// A row's columns, deformed once (values and nulls arrays, all columns; reading them one by one
/// with heap_getattr walks the tuple from its start for every column after the first
/// variable-width or NULL one).
struct Borrowed<'a> {
    values: &'a [pg_sys::Datum],
    nulls: &'a [bool],
}

impl Borrowed<'_> {
    fn get(&self, a: Option<Att>) -> Option<pg_sys::Datum> {
        let i = (a?.attno - 1) as usize;
        match self.nulls.get(i) {
            Some(false) => Some(self.values[i]),
            _ => None,
        }
    }
}

fn int_of(d: pg_sys::Datum, a: Att) -> i64 {
    match a.typid {
        pg_sys::INT2OID => d.value() as i16 as i64,
        pg_sys::INT4OID => d.value() as i32 as i64,
        _ => d.value() as i64,
    }
}

fn time_of(d: pg_sys::Datum, a: Att, zone: Option<pg_sys::Datum>) -> i64 {
    unsafe { crate::pg::row::event_time(d, a.typid, zone) }
}

impl RollupDef {
    fn period_start(&self, ts: i64) -> i64 {
        let (s, e) = self.period.get();
        if ts >= s && ts < e {
            return s;
        }
        let trunc = |t: i64| unsafe {
            pgrx::direct_function_call_as_datum(
                pg_sys::timestamptz_trunc_zone,
                &[
                    Some(self.grain),
                    Some(pg_sys::Datum::from(t)),
                    Some(self.zone),
                ],
            )
            .map(|d| d.value() as i64)
            .unwrap_or(t)
        };
        let start = trunc(ts);
        let end = trunc(start.saturating_add(self.step_us));
        if end > start {
            self.period.set((start, end));
        }
        start
    }
}

/// A group value as a rollup keys it: text and unbounded varchar values bounded as
/// `pg::row::bounded_text` says (the same rule as `llm_cost._rollup_select`).
unsafe fn group_value(row: &Borrowed, g: Att) -> Option<pg_sys::Datum> {
    let d = row.get(Some(g))?;
    // text, or varchar without a length (a varchar(n) value is short by declaration).
    if g.len != -1 || !(g.typid == pg_sys::TEXTOID || (g.typid == pg_sys::VARCHAROID && g.typmod < 0)) {
        return Some(d);
    }
    Some(crate::pg::row::bounded_text(d))
}

/// Appends a datum's identity to a group key: byte-equal values land in one group (values that
/// are equal but spelled differently meet again in the upsert).
unsafe fn key_bytes(key: &mut Vec<u8>, d: Option<pg_sys::Datum>, a: Att) {
    match d {
        None => key.push(0),
        Some(d) if a.byval => {
            key.push(1);
            key.extend_from_slice(&(d.value() as u64).to_le_bytes());
        }
        Some(d) if a.len > 0 => {
            key.push(2);
            key.extend_from_slice(std::slice::from_raw_parts(
                d.cast_mut_ptr::<u8>(),
                a.len as usize,
            ));
        }
        Some(d) if a.len == -1 => {
            let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
            let n = pgrx::varlena::varsize_any_exhdr(v);
            key.push(3);
            key.extend_from_slice(&(n as u32).to_le_bytes());
            key.extend_from_slice(std::slice::from_raw_parts(
                pgrx::varlena::vardata_any(v) as *const u8,
                n,
            ));
        }
        Some(d) => {
            let c = std::ffi::CStr::from_ptr(d.cast_mut_ptr::<std::ffi::c_char>());
            key.push(4);
            key.extend_from_slice(c.to_bytes_with_nul());
        }
    }
}

/// datumCopy into the current memory context (varlena values detoasted first).
unsafe fn datum_copy(d: pg_sys::Datum, byval: bool, len: i16) -> pg_sys::Datum {
    if byval {
        return d;
    }
    let (ptr, size) = if len == -1 {
        let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
        (v as *const u8, pgrx::varlena::varsize_any(v))
    } else if len > 0 {
        (d.cast_mut_ptr::<u8>() as *const u8, len as usize)
    } else {
        let c = std::ffi::CStr::from_ptr(d.cast_mut_ptr::<std::ffi::c_char>());
        (c.as_ptr() as *const u8, c.to_bytes_with_nul().len())
    };
    let dst = pg_sys::palloc(size) as *mut u8;
    std::ptr::copy_nonoverlapping(ptr, dst, size);
    pg_sys::Datum::from(dst)
}

unsafe fn copy_to_xact(d: pg_sys::Datum, a: Att) -> pg_sys::Datum {
    pgrx::PgMemoryContexts::TopTransactionContext.switch_to(|_| datum_copy(d, a.byval, a.len))
}

/// Adds a row (`sign` 1) or takes it away (-1). `units`: the row's cost in 10^-16 USD when the
/// caller already knows it (the cost trigger, which has just computed it), else read from the row.
unsafe fn add_row(defs: &Rc<SourceDefs>, row: &Borrowed, sign: i64, units: Option<i128>) {
    let ts = row
        .get(defs.time)
        .map(|d| time_of(d, defs.time.unwrap(), defs.zone))
        .unwrap_or_else(|| pg_sys::GetCurrentTransactionStartTimestamp());
    let tokens = defs
        .tokens
        .map(|a| row.get(a).map(|d| int_of(d, a.unwrap())).unwrap_or(0));
    let cost = row.get(defs.cost);
    let cost_units = match cost {
        None => None,
        Some(c) => units.or_else(|| crate::pg::money::numeric_units(c)),
    };
    if cost_units.is_none() {
        if let Some(c) = cost {
            if crate::pg::money::numeric_special(c) {
                ereport!(
                    ERROR,
                    pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    "llm_cost: a cost must be a finite number; NaN and Infinity cannot be added to a rollup"
                );
            }
        }
    }
    let unpriced = match defs.cost_source {
        Some(a) => row.get(Some(a)).is_some_and(|d| {
            let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
            std::slice::from_raw_parts(
                pgrx::varlena::vardata_any(v) as *const u8,
                pgrx::varlena::varsize_any_exhdr(v),
            ) == b"unpriced"
        }),
        // No cost_source column: the cost trigger stores NULL, or the column default (NOT NULL
        // columns), for a row it cannot price. A cost equal to the default is unpriced unless it
        // is exactly the row's estimate (a free call): the same answer before and after the
        // model gets a price, so a reprice moves the row out of unpriced_requests.
        None => match cost {
            None => true,
            Some(_) => {
                defs.cost_default.is_some()
                    && cost_units == defs.cost_default
                    && !estimate_is(defs, row, ts, &tokens, cost_units)
            }
        },
    };
    let error = row.get(defs.error).is_some();
    let latency = defs
        .latency
        .and_then(|a| row.get(Some(a)).map(|d| int_of(d, a)));

    let sub = pg_sys::GetCurrentSubTransactionId();
    KEY.with(|key| {
        let mut key = key.borrow_mut();
        key.clear();
        key.extend_from_slice(&defs.generation.to_le_bytes());
        for r in &defs.rollups {
            key.extend_from_slice(&r.period_start(ts).to_le_bytes());
        }
        for g in &defs.union {
            key_bytes(&mut key, group_value(row, *g), *g);
        }
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            let p = p.of(sub);
            let mut fresh = None;
            let acc = match p.get_mut(key.as_slice()) {
                Some(acc) => acc,
                None => fresh.insert(Acc {
                    defs: defs.clone(),
                    periods: defs.rollups.iter().map(|r| r.period_start(ts)).collect(),
                    group: defs
                        .union
                        .iter()
                        .map(|g| group_value(row, *g).map(|d| copy_to_xact(d, *g)))
                        .collect(),
                    sum: Sum::starting_at(ts),
                }),
            };
            let s = &mut acc.sum;
            add_i64(&mut s.requests, sign);
            for k in 0..4 {
                add_i64(&mut s.tokens[k], sign * tokens[k]);
            }
            if let Some(units) = cost_units {
                s.cost = s
                    .cost
                    .checked_add(sign as i128 * units)
                    .unwrap_or_else(|| out_of_range());
            } else if let Some(c) = cost {
                // More than 16 decimals: add exactly as numeric (rare: a provided cost).
                let c = if sign < 0 {
                    pgrx::direct_function_call_as_datum(pg_sys::numeric_uminus, &[Some(c)])
                        .unwrap_or(c)
                } else {
                    c
                };
                s.add_extra(c);
            }
            if unpriced {
                add_i64(&mut s.unpriced, sign);
            }
            if error {
                add_i64(&mut s.errors, sign);
            }
            if let Some(l) = latency {
                add_i64(&mut s.latency_sum, sign * l);
                if sign > 0 {
                    s.latency_max = Some(s.latency_max.map_or(l, |m| m.max(l)));
                }
            }
            if sign > 0 {
                s.first = s.first.min(ts);
                s.last = s.last.max(ts);
            }
            if let Some(acc) = fresh {
                p.insert(key.clone(), acc);
            }
        })
    });
}

/// Whether the catalog's estimate for a row, rounded as its cost column stores it, is `units`.
unsafe fn estimate_is(
    defs: &SourceDefs,
    row: &Borrowed,
    ts: i64,
    tokens: &[i64; 4],
    units: Option<i128>,
) -> bool {
    let Some(model) = row.get(defs.model) else {
        return false;
    };
    let v = pg_sys::pg_detoast_datum_packed(model.cast_mut_ptr());
    let b = std::slice::from_raw_parts(
        pgrx::varlena::vardata_any(v) as *const u8,
        pgrx::varlena::varsize_any_exhdr(v),
    );
    let u = llm_cost_core::pricing::Usage {
        input: tokens[0],
        output: tokens[1],
        cache_read: tokens[2],
        cache_write: tokens[3],
        cache_write_1h: 0,
    };
    // By model name alone: in a table without a cost_source column whose rows also name a
    // provider or service tier, an estimate at another host's price reads as provided here.
    match crate::features::catalog::price_call(
        std::str::from_utf8(b).unwrap_or(""),
        None,
        llm_cost_core::pricing::ServiceTier::Standard,
        &u,
        ts,
    ) {
        crate::features::catalog::Priced::Cost(c) => {
            let typmod = defs.cost.map_or(-1, |a| a.typmod);
            crate::pg::money::numeric_units(crate::pg::money::cost_datum(c, typmod)) == units
        }
        _ => false,
    }
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
    let tupdesc = unsafe { (*td.tg_relation).rd_att };
    crate::pg::lifecycle::ensure_registered();
    let defs = defs_for(relid, td.tg_relation);
    if defs.rollups.is_empty() {
        return Ok(None);
    }
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
            PATHS.with(|p| p.set((p.get().0, p.get().1 + 1)));
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

/// A sum the stripes table could not hold either (bigint): the statement fails, as the stripe
/// write would (release builds do not check overflow: wrapping would store a wrong total).
fn out_of_range() -> ! {
    ereport!(
        ERROR,
        pgrx::PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        "llm_cost: a rollup sum is out of range for bigint"
    );
}

fn add_i64(a: &mut i64, b: i64) {
    *a = a.checked_add(b).unwrap_or_else(|| out_of_range());
}

impl Sum {
    fn starting_at(ts: i64) -> Sum {
        Sum {
            requests: 0,
            tokens: [0; 4],
            cost: 0,
            cost_extra: None,
            unpriced: 0,
            errors: 0,
            latency_sum: 0,
            latency_max: None,
            first: ts,
            last: ts,
        }
    }

    /// Nothing to add (an UPDATE that moved nothing).
    fn is_zero(&self) -> bool {
        self.requests == 0
            && self.cost == 0
            && self.cost_extra.is_none()
            && self.tokens == [0; 4]
            && self.unpriced == 0
            && self.errors == 0
            && self.latency_sum == 0
    }

    /// Adds a numeric cost exactly (kept in TopTransactionContext).
    fn add_extra(&mut self, c: pg_sys::Datum) {
        self.cost_extra = Some(unsafe {
            pgrx::PgMemoryContexts::TopTransactionContext.switch_to(|_| match self.cost_extra {
                None => datum_copy(c, false, -1),
                Some(prev) => {
                    pgrx::direct_function_call_as_datum(pg_sys::numeric_add, &[Some(prev), Some(c)])
                        .unwrap_or(prev)
                }
            })
        });
    }

    /// Adds the sums of other rows.
    fn merge(&mut self, o: &Sum) {
        add_i64(&mut self.requests, o.requests);
        for k in 0..4 {
            add_i64(&mut self.tokens[k], o.tokens[k]);
        }
        self.cost = self
            .cost
            .checked_add(o.cost)
            .unwrap_or_else(|| out_of_range());
        if let Some(extra) = o.cost_extra {
            self.add_extra(extra);
        }
        add_i64(&mut self.unpriced, o.unpriced);
        add_i64(&mut self.errors, o.errors);
        add_i64(&mut self.latency_sum, o.latency_sum);
        self.latency_max = match (self.latency_max, o.latency_max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
    }
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
        let p = unsafe { dlsym(RTLD_DEFAULT, c"CopyFromErrorCallback".as_ptr()) };
        (!p.is_null()).then_some(p as usize)
    })
}

/// COPY fast path, called by the cost trigger (BEFORE INSERT ... FOR EACH ROW) with the row it
/// is about to return: if the row certainly gets stored exactly as it is now, adds it to the
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
pub unsafe fn copy_fast_path(
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
    let Some(rollup) = all
        .iter()
        .position(|t| is_rollup_trigger(std::ffi::CStr::from_ptr(t.tgname).to_bytes()))
    else {
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
    let defs = defs_for(relid, rel);
    // Once switched off for this statement, every row is added here (the conditions hold for
    // the whole COPY); before that, check the ones that depend on the rollups.
    if (*target).tgenabled != disabled {
        if defs.rollups.is_empty() || defs.reads_generated() {
            return false;
        }
        (*target).tgenabled = disabled;
    }
    add_copied_row(&defs, values, nulls, units);
    true
}

/// The rollups of a source, as the COPY path (`copy.rs`) holds them for a statement.
pub type Defs = Rc<SourceDefs>;

/// The rollups a COPY into `rel` can feed from its rows as read (before generated columns are
/// computed): None when it has none or one reads a generated column.
pub fn copy_defs(relid: pg_sys::Oid, rel: pg_sys::Relation) -> Option<Defs> {
    let defs = defs_for(relid, rel);
    (!defs.rollups.is_empty() && !defs.reads_generated()).then_some(defs)
}

/// Adds a row COPY is about to store (both COPY paths): `units` is the cost the caller just
/// computed, as (cost attno, 10^-16 USD), used when it is the column the rollups read.
pub unsafe fn add_copied_row(
    defs: &Defs,
    values: &[pg_sys::Datum],
    nulls: &[bool],
    units: Option<(i32, i128)>,
) {
    let units = units
        .filter(|(attno, _)| defs.cost.is_some_and(|a| a.attno == *attno))
        .map(|(_, u)| u);
    add_row(defs, &Borrowed { values, nulls }, 1, units);
    PATHS.with(|p| p.set((p.get().0 + 1, p.get().1)));
}

/// Writes the pending sums of the running (sub)transaction: one row of sums per (rollup,
/// period, group), added into this backend's stripe. Called at the end of every statement on a
/// tracked table.
pub fn flush() {
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
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
fn _flush_pending_sums() {
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let outer = PENDING.with(|p| p.borrow().holders().into_iter().any(|s| s != sub));
    if outer {
        ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "llm_cost: rows inserted earlier in this transaction, outside the current savepoint or exception block, are not yet in the rollups",
            "Run llm_cost.rebuild_rollup() outside the savepoint, or in a transaction of its own."
        );
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

fn write(pending: Vec<(Vec<u8>, Acc)>) {
    if pending.is_empty() {
        return;
    }
    let stripe = crate::features::stripes::stripe_for(backend_slot());
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
        let costs: Vec<pg_sys::Datum> = groups.iter().map(|(_, (_, _, s))| cost_of(s)).collect();
        let sums: Vec<crate::features::stripes::Sums> = groups
            .iter()
            .zip(costs)
            .map(
                |((key, (period, group, s)), cost)| crate::features::stripes::Sums {
                    key,
                    period: *period,
                    group,
                    stripe,
                    requests: s.requests,
                    tokens: s.tokens,
                    cost,
                    unpriced: s.unpriced,
                    errors: s.errors,
                    latency_sum: s.latency_sum,
                    latency_max: s.latency_max,
                    first: s.first,
                    last: s.last,
                },
            )
            .collect();
        crate::features::stripes::add_all(&defs.rollups[ri].layout, &sums);
        let r = &defs.rollups[ri];
        if WATCH.get().is_some_and(|w| w(r.layout.stripes)) {
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

/// The exact cost sum of a group as numeric.
fn cost_of(acc: &Sum) -> pg_sys::Datum {
    let cost = crate::pg::money::cost_datum(llm_cost_core::pricing::Cost(acc.cost), -1);
    match acc.cost_extra {
        Some(extra) => unsafe {
            pgrx::direct_function_call_as_datum(pg_sys::numeric_add, &[Some(cost), Some(extra)])
        }
        .unwrap_or(cost),
        None => cost,
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::test_support::{error_of, one};
    use pgrx::prelude::*;

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql)
            .expect("query failed")
            .unwrap_or(-1)
    }

    /// Rows in which the rollup and a GROUP BY over the source differ (0 when exact).
    fn mismatches(
        rollup: &str,
        source: &str,
        time_col: &str,
        grain: &str,
        group_cols: &[&str],
        cost_col: &str,
    ) -> i64 {
        let g: String = group_cols.iter().map(|c| format!(", {c}")).collect();
        // The shipped log groups by the model each row was priced as (priced_model); a rollup's
        // cost is SUM over the raw rows, NULL when none of its rows is priced.
        let sel: String = group_cols
            .iter()
            .map(|c| {
                if *c == "model" && source == "llm_cost.usage_events" {
                    ", priced_model AS model".to_string()
                } else {
                    format!(", {c}")
                }
            })
            .collect();
        let by: String = (0..group_cols.len())
            .map(|i| format!(", {}", i + 2))
            .collect();
        let q = format!(
            "WITH truth AS (
                SELECT date_trunc('{grain}', {time_col}::timestamptz, 'UTC') AS period_start{sel}, count(*)::bigint AS requests,
                       sum(input_tokens)::bigint AS input_tokens, sum(output_tokens)::bigint AS output_tokens,
                       sum({cost_col}) AS cost_usd
                  FROM {source} GROUP BY 1{by}),
             mine AS (SELECT period_start{g}, requests, input_tokens, output_tokens, cost_usd FROM {rollup})
             SELECT (SELECT count(*) FROM (SELECT * FROM truth EXCEPT SELECT * FROM mine) a)
                  + (SELECT count(*) FROM (SELECT * FROM mine EXCEPT SELECT * FROM truth) b)"
        );
        count(&q)
    }

    const DAILY: &[&str] = &["tenant_id", "user_id", "feature", "provider", "model"];

    /// Issue 18: reports group by the model a call was priced as, and an unpriced call is never $0.00.
    #[pg_test]
    fn reports_merge_spellings_and_never_show_unpriced_as_zero() {
        Spi::run(
            "INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, provider, input_tokens, output_tokens) VALUES
               ('2026-05-03 10:00+00', 'acme', 'u1', 'chat', 'openai/gpt-4o-mini', 'openai', 1000000, 0),
               ('2026-05-03 11:00+00', 'acme', 'u1', 'chat', 'gpt-4o-mini', NULL, 1000000, 0),
               ('2026-05-03 12:00+00', 'acme', 'u1', 'chat', 'models/gemini-2.5-flash', NULL, 1000000, 0),
               ('2026-05-03 13:00+00', 'acme', 'u1', 'chat', 'Gemini-2.5-Flash', NULL, 1000000, 0),
               ('2026-05-03 14:00+00', 'acme', 'u1', 'chat', 'my-fine-tuned-model', NULL, 1000, 1000),
               ('2026-05-03 15:00+00', 'acme', 'u1', 'chat', 'my-fine-tuned-model', NULL, 1000, 1000)",
        )
        .unwrap();
        assert_eq!(
            one("SELECT string_agg(model || '>' || priced_model, ', ' ORDER BY id) FROM llm_cost.usage_events").as_deref(),
            Some("openai/gpt-4o-mini>gpt-4o-mini, gpt-4o-mini>gpt-4o-mini, models/gemini-2.5-flash>gemini-2.5-flash, Gemini-2.5-Flash>gemini-2.5-flash, my-fine-tuned-model>my-fine-tuned-model, my-fine-tuned-model>my-fine-tuned-model")
        );
        assert_eq!(
            one("SELECT llm_cost.priced_model('openai/gpt-4o-mini')").as_deref(),
            Some("gpt-4o-mini")
        );
        assert_eq!(
            one("SELECT llm_cost.priced_model('no-such-model')").as_deref(),
            Some("no-such-model")
        );
        // One rollup group per model as priced; the sent spellings stay in the rows.
        assert_eq!(
            one("SELECT string_agg(model || ' ' || requests || ' ' || coalesce(cost_usd::text, 'NULL') || ' ' || unpriced_requests, '; ' ORDER BY model)
                   FROM llm_cost.usage_daily WHERE period_start = '2026-05-03'").as_deref(),
            Some("gemini-2.5-flash 2 0.6 0; gpt-4o-mini 2 0.3 0; my-fine-tuned-model 2 NULL 2")
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        // Reports: the unpriced model is counted and shown as unpriced, never $0.00.
        assert_eq!(
            one("SELECT string_agg(model || ' ' || requests || ' ' || llm_cost.format_cost(cost_usd) || ' ' || unpriced_requests, '; ' ORDER BY model)
                   FROM llm_cost.spend_by_model WHERE month = '2026-05-01'").as_deref(),
            Some("gemini-2.5-flash 2 $0.60 0; gpt-4o-mini 2 $0.30 0; my-fine-tuned-model 2 unpriced 2")
        );
        assert_eq!(
            one("SELECT llm_cost.format_cost(sum(cost_usd)) FROM llm_cost.usage_monthly")
                .as_deref(),
            Some("$0.90")
        );
        // A reprice once the model has a price moves its rows to their priced group.
        Spi::run("INSERT INTO llm_cost.model_aliases (alias, model) VALUES ('my-fine-tuned-model', 'gpt-4o')").unwrap();
        Spi::run("SELECT llm_cost.reprice('llm_cost.usage_events')").unwrap();
        assert_eq!(
            one("SELECT string_agg(model || ' ' || requests || ' ' || coalesce(cost_usd::text, 'NULL'), '; ' ORDER BY model)
                   FROM llm_cost.usage_daily WHERE period_start = '2026-05-03'").as_deref(),
            Some("gemini-2.5-flash 2 0.6; gpt-4o 2 0.025; gpt-4o-mini 2 0.3")
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
    }

    #[pg_test]
    fn track_maps_a_priced_model_column_of_your_table() {
        Spi::run(
            "CREATE TABLE public.pm_calls (created_at timestamptz NOT NULL DEFAULT now(), llm text, as_priced text, vc varchar(10),
                                          input_tokens int, output_tokens int, cost_usd numeric)",
        )
        .unwrap();
        for (sql, code) in [
            ("PERFORM llm_cost.track('public.pm_calls', model_column => 'llm', priced_model_column => 'nope')", "42703"),
            ("PERFORM llm_cost.track('public.pm_calls', model_column => 'llm', priced_model_column => 'vc')", "42804"),
            ("PERFORM llm_cost.track('public.pm_calls', model_column => 'llm', priced_model_column => 'llm')", "22023"),
        ] {
            let got = error_of(sql);
            assert!(got.starts_with(code), "{sql}: {got}");
        }
        Spi::run("SELECT llm_cost.track('public.pm_calls', model_column => 'llm', priced_model_column => 'as_priced')").unwrap();
        Spi::run(
            "SELECT llm_cost.create_rollup('public.pm_daily', 'public.pm_calls', 'day', '{llm}')",
        )
        .unwrap();
        Spi::run("INSERT INTO public.pm_calls (llm, input_tokens, output_tokens) VALUES ('openai/gpt-4o-mini', 1000000, 0), ('GPT-4o-mini', 1000000, 0), ('mystery', 1, 1)").unwrap();
        assert_eq!(
            one("SELECT string_agg(llm || ' ' || requests || ' ' || coalesce(cost_usd::text, 'NULL'), '; ' ORDER BY llm) FROM public.pm_daily").as_deref(),
            Some("gpt-4o-mini 2 0.3; mystery 1 NULL")
        );
        // An UPDATE of the model follows it.
        Spi::run("UPDATE public.pm_calls SET llm = 'gpt-4o' WHERE llm = 'mystery'").unwrap();
        assert_eq!(
            one("SELECT string_agg(DISTINCT as_priced, ',') FROM public.pm_calls").as_deref(),
            Some("gpt-4o,gpt-4o-mini")
        );
        assert_eq!(
            one(
                "SELECT string_agg(llm || ' ' || requests, '; ' ORDER BY llm) FROM public.pm_daily"
            )
            .as_deref(),
            Some("gpt-4o 1; gpt-4o-mini 2")
        );
    }

    #[pg_test]
    fn default_rollups_follow_inserts_updates_not_deletes() {
        Spi::run(
            "INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens, latency_ms, error) VALUES
               ('2026-03-01 10:00+00', 'acme', 'u1', 'chat', 'claude-sonnet-4-5', 1000, 200, 900, NULL),
               ('2026-03-01 11:00+00', 'acme', 'u1', 'chat', 'claude-sonnet-4-5', 3000, 100, 1500, 'timeout'),
               ('2026-03-02 09:00+00', 'acme', NULL, 'search', 'gpt-4o', 500, 50, 300, NULL),
               ('2026-03-02 09:30+00', NULL, NULL, NULL, 'mystery', 10, 10, NULL, NULL)",
        )
        .unwrap();
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, model, input_tokens, output_tokens) SELECT '2026-03-02 12:00+00', 'acme', 'u2', 'gpt-4o-mini', g, g FROM generate_series(1, 10000) g").unwrap();
        // Provided costs with more decimals than estimates ever have are summed exactly too.
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, model, input_tokens, output_tokens, cost_usd) VALUES
                    ('2026-03-02 13:00+00', 'acme', 'u3', 'gpt-4o', 1, 1, 0.123456789012345678901), ('2026-03-02 13:00+00', 'acme', 'u3', 'gpt-4o', 1, 1, 1.5)").unwrap();
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT cost_usd::text FROM llm_cost.usage_daily WHERE user_id = 'u3'"
            )
            .unwrap()
            .as_deref(),
            Some("1.623456789012345678901")
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_monthly",
                "llm_cost.usage_events",
                "occurred_at",
                "month",
                &["tenant_id", "user_id"],
                "cost_usd"
            ),
            0
        );
        // A 10,000-row statement wrote one summary row per group, not 10,000.
        assert_eq!(
            count("SELECT count(*) FROM llm_cost.usage_daily_stripes WHERE user_id = 'u2'"),
            1
        );
        assert_eq!(
            count("SELECT requests FROM llm_cost.usage_daily WHERE user_id = 'u2'"),
            10000
        );
        // Errors, unpriced calls and latency.
        assert_eq!(
            Spi::get_one::<String>("SELECT format('%s %s %s %s', requests, error_requests, latency_ms_sum, latency_ms_max) FROM llm_cost.usage_daily WHERE user_id = 'u1'").unwrap().as_deref(),
            Some("2 1 2400 1500")
        );
        assert_eq!(
            count("SELECT unpriced_requests FROM llm_cost.usage_daily WHERE model = 'mystery'"),
            1
        );
        // UPDATE moves rows between groups and periods.
        Spi::run("UPDATE llm_cost.usage_events SET model = 'gpt-4o', occurred_at = occurred_at + interval '1 day' WHERE user_id = 'u1'").unwrap();
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            count("SELECT count(*) FROM llm_cost.usage_daily WHERE model = 'claude-sonnet-4-5'"),
            0
        );
        // DELETE does not change a rollup: it is a ledger of what happened.
        let before = Spi::get_one::<String>(
            "SELECT sum(cost_usd)::text || '/' || sum(requests) FROM llm_cost.usage_daily",
        )
        .unwrap();
        Spi::run("DELETE FROM llm_cost.usage_events").unwrap();
        let after = Spi::get_one::<String>(
            "SELECT sum(cost_usd)::text || '/' || sum(requests) FROM llm_cost.usage_daily",
        )
        .unwrap();
        assert_eq!(before, after);
    }

    /// COPY FROM adds rows to the rollups from the cost trigger when nothing can skip or change
    /// a row after it, and through the rollup row trigger otherwise; both are exact.
    #[pg_test]
    fn copy_rows_reach_rollups_exactly_once() {
        let paths = || {
            Spi::get_two::<i64, i64>("SELECT copy_rows, trigger_rows FROM llm_cost._rollup_paths()")
                .unwrap()
        };
        let (c0, w0) = paths();
        let (c0, w0) = (c0.unwrap(), w0.unwrap());
        Spi::run("COPY (SELECT '2026-08-0' || (1 + g % 3), 't' || g % 4, 'u' || g % 7, 'chat', CASE WHEN g % 2 = 0 THEN 'gpt-4o' ELSE 'claude-sonnet-4-5' END, g, g % 13
                        FROM generate_series(1, 3000) g) TO '/tmp/llm_cost_pg_test_copy.tsv'").unwrap();
        let copy = |t: &str| {
            format!("COPY {t} (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_copy.tsv'")
        };
        Spi::run(&copy("llm_cost.usage_events")).unwrap();
        assert_eq!(paths(), (Some(c0 + 3000), Some(w0)));
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_monthly",
                "llm_cost.usage_events",
                "occurred_at",
                "month",
                &["tenant_id", "user_id"],
                "cost_usd"
            ),
            0
        );
        // The statement's copy of the trigger list was switched, not the table's: INSERT goes through the trigger.
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens) VALUES ('2026-08-01', 't1', 'gpt-4o', 5)").unwrap();
        assert_eq!(paths(), (Some(c0 + 3000), Some(w0 + 1)));
        assert_eq!(count("SELECT sum(requests)::bigint FROM llm_cost.usage_daily WHERE period_start >= '2026-08-01'"), 3001);
        // A COPY that fails halfway leaves nothing, in a subtransaction too.
        Spi::run("ALTER TABLE llm_cost.usage_events ADD CONSTRAINT small CHECK (input_tokens < 2500) NOT VALID").unwrap();
        let err = error_of(&copy("llm_cost.usage_events"));
        assert!(err.starts_with("23514"), "{err}");
        Spi::run(&format!(
            "DO $$ BEGIN {}; EXCEPTION WHEN check_violation THEN NULL; END $$",
            copy("llm_cost.usage_events")
        ))
        .unwrap();
        Spi::run("ALTER TABLE llm_cost.usage_events DROP CONSTRAINT small").unwrap();
        let c1 = paths().0.unwrap(); // the counters are per backend, not transactional
        assert_eq!(count("SELECT sum(requests)::bigint FROM llm_cost.usage_daily WHERE period_start >= '2026-08-01'"), 3001);
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        // A BEFORE trigger after the cost trigger could skip rows: the row trigger counts them instead.
        Spi::run("CREATE FUNCTION skip_even() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.input_tokens % 2 = 0 THEN RETURN NULL; END IF; RETURN NEW; END $$").unwrap();
        Spi::run("CREATE TRIGGER zz_skip BEFORE INSERT ON llm_cost.usage_events FOR EACH ROW EXECUTE FUNCTION skip_even()").unwrap();
        Spi::run(&copy("llm_cost.usage_events")).unwrap();
        assert_eq!(paths(), (Some(c1), Some(w0 + 1 + 1500)));
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        Spi::run("DROP TRIGGER zz_skip ON llm_cost.usage_events").unwrap();
        // A partitioned table: the fast path runs on each partition.
        Spi::run("CREATE TABLE t_pc (occurred_at timestamptz NOT NULL, tenant_id text, user_id text, feature text, model text, input_tokens int, output_tokens int, cost_usd numeric) PARTITION BY RANGE (occurred_at)").unwrap();
        Spi::run("CREATE TABLE t_pc_a PARTITION OF t_pc FOR VALUES FROM ('2026-08-01') TO ('2026-08-03')").unwrap();
        Spi::run("CREATE TABLE t_pc_b PARTITION OF t_pc FOR VALUES FROM ('2026-08-03') TO ('2026-09-01')").unwrap();
        Spi::run("SELECT llm_cost.track('t_pc', time_column => 'occurred_at')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('pc_daily', 't_pc', 'day', '{tenant_id,model}')")
            .unwrap();
        Spi::run(&copy("t_pc")).unwrap();
        assert_eq!(paths(), (Some(c1 + 3000), Some(w0 + 1 + 1500)));
        assert_eq!(
            mismatches(
                "pc_daily",
                "t_pc",
                "occurred_at",
                "day",
                &["tenant_id", "model"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(count("SELECT sum(requests)::bigint FROM pc_daily"), 3000);
    }

    /// COPY FROM into a plain tracked table is priced without the row trigger (`copy.rs`): every
    /// row priced exactly as the trigger would, rollups exact, the application's WHERE clause
    /// respected, bad input rejecting the whole COPY, and the table's triggers intact afterwards.
    #[cfg(llm_cost_copy_shim)]
    #[pg_test]
    fn copy_prices_rows_without_the_row_trigger() {
        let paths = crate::test_support::paths;
        let wrong = "SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at >= '2026-09-01' AND (cost_usd IS DISTINCT FROM
                       llm_cost.estimate_cost(model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, occurred_at)
                       OR cost_source IS DISTINCT FROM CASE WHEN llm_cost.resolve_model(model) IS NULL THEN 'unpriced' ELSE 'estimated' END
                       OR provider IS DISTINCT FROM llm_cost.provider_of(model))";
        Spi::run("COPY (SELECT '2026-09-0' || (1 + g % 3), 't' || g % 4, 'u' || g % 7, 'chat',
                               CASE g % 3 WHEN 0 THEN 'gpt-4o' WHEN 1 THEN 'anthropic/claude-sonnet-4-5' ELSE 'no-such-model-x' END, g, g % 13, g % 5
                        FROM generate_series(1, 3000) g) TO '/tmp/llm_cost_pg_test_copy2.tsv'").unwrap();
        let copy = |extra: &str| {
            format!("COPY llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens, cache_read_tokens) FROM '/tmp/llm_cost_pg_test_copy2.tsv' {extra}")
        };
        let (c0, t0, p0) = paths();
        Spi::run(&copy("")).unwrap();
        assert_eq!(paths(), (c0 + 3000, t0, p0 + 3000));
        assert_eq!(
            count("SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at >= '2026-09-01'"),
            3000
        );
        assert_eq!(count(wrong), 0);
        assert_eq!(count("SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at >= '2026-09-01' AND cost_source = 'unpriced' AND cost_usd IS NULL"), 1000);
        // COPY fills the priced model like INSERT does.
        assert_eq!(count("SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at >= '2026-09-01' AND priced_model IS NULL"), 0);
        assert_eq!(
            count("SELECT rows FROM llm_cost.unpriced_models WHERE model = 'no-such-model-x'"),
            1000
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_monthly",
                "llm_cost.usage_events",
                "occurred_at",
                "month",
                &["tenant_id", "user_id"],
                "cost_usd"
            ),
            0
        );
        // The application's WHERE clause runs first: filtered rows are neither priced nor counted.
        Spi::run(&copy("WHERE input_tokens <= 100")).unwrap();
        assert_eq!(paths(), (c0 + 3100, t0, p0 + 3100));
        assert_eq!(count("SELECT sum(requests)::bigint FROM llm_cost.usage_daily WHERE period_start >= '2026-09-01'"), 3100);
        // Spelling _copy_row() out as well prices and counts each row once.
        Spi::run(&copy("WHERE input_tokens <= 10 AND llm_cost._copy_row()")).unwrap();
        assert_eq!(paths(), (c0 + 3110, t0, p0 + 3110));
        assert_eq!(count(wrong), 0);
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        // The table's own trigger list is untouched: an INSERT goes through the triggers.
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens) VALUES ('2026-09-01', 't1', 'gpt-4o', 1000000)").unwrap();
        assert_eq!(paths(), (c0 + 3110, t0 + 1, p0 + 3110));
        assert_eq!(one("SELECT cost_usd::text || ' ' || cost_source FROM llm_cost.usage_events WHERE input_tokens = 1000000").as_deref(), Some("2.5 estimated"));
        // Bad input rejects the whole COPY (in a subtransaction too), and leaves the triggers on.
        Spi::run("COPY (SELECT '2026-09-02', 'bad', 'u', 'chat', 'gpt-4o', CASE WHEN g = 500 THEN -5 ELSE g END, 1, 0
                        FROM generate_series(1, 1000) g) TO '/tmp/llm_cost_pg_test_copy3.tsv'").unwrap();
        let bad = "COPY llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens, cache_read_tokens) FROM '/tmp/llm_cost_pg_test_copy3.tsv'";
        let err = error_of(bad);
        assert!(
            err.starts_with("22023: input_tokens must not be negative (got -5)"),
            "{err}"
        );
        assert_eq!(
            count("SELECT count(*) FROM llm_cost.usage_events WHERE tenant_id = 'bad'"),
            0
        );
        assert_eq!(count("SELECT coalesce(sum(requests), 0)::bigint FROM llm_cost.usage_daily WHERE tenant_id = 'bad'"), 0);
        // A NULL model: the COPY path's own 23502 (before the NOT NULL constraint), nothing stored.
        Spi::run("COPY (SELECT '2026-09-02', 'nullm', 'u', 'chat', CASE WHEN g = 7 THEN NULL ELSE 'gpt-4o' END, g, 1, 0
                        FROM generate_series(1, 10) g) TO '/tmp/llm_cost_pg_test_copy6.tsv'").unwrap();
        let err = error_of("COPY llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens, cache_read_tokens) FROM '/tmp/llm_cost_pg_test_copy6.tsv'");
        assert!(
            err.starts_with("23502") && err.contains("llm_cost needs the model name"),
            "{err}"
        );
        assert_eq!(
            count("SELECT count(*) FROM llm_cost.usage_events WHERE tenant_id = 'nullm'"),
            0
        );
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens) VALUES ('2026-09-01', 't1', 'gpt-4o', 2000000)").unwrap();
        assert_eq!(
            one("SELECT cost_usd::text FROM llm_cost.usage_events WHERE input_tokens = 2000000")
                .as_deref(),
            Some("5")
        );
        assert_eq!(paths().1, t0 + 2);
        // Provided costs are kept and marked.
        Spi::run("COPY (SELECT '2026-09-03', 'prov', 'u', 'chat', 'gpt-4o', 10, 10, 0.125) TO '/tmp/llm_cost_pg_test_copy4.tsv'").unwrap();
        Spi::run("COPY llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens, cost_usd) FROM '/tmp/llm_cost_pg_test_copy4.tsv'").unwrap();
        assert_eq!(one("SELECT cost_usd::text || ' ' || cost_source || ' ' || provider FROM llm_cost.usage_events WHERE tenant_id = 'prov'").as_deref(), Some("0.125 provided openai"));
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        // llm_cost.batch_copy = off: the same COPY through the row triggers, the same rows.
        Spi::run("SET LOCAL llm_cost.batch_copy = off").unwrap();
        let (c1, t1, p1) = paths();
        Spi::run(&copy("WHERE input_tokens <= 50")).unwrap();
        Spi::run("RESET llm_cost.batch_copy").unwrap();
        assert_eq!(paths(), (c1 + 50, t1, p1));
        assert_eq!(count(wrong), 1); // the provided row above
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        // Not called from COPY: an error, not a silent no-op.
        let err = error_of("PERFORM llm_cost._copy_row()");
        assert!(err.starts_with("0A000"), "{err}");
        // A table of the shape of the shared api_usage_log schema: NOT NULL DEFAULT 0 cost, no
        // cost_source, generated total_tokens (its rollup reads no generated column).
        Spi::run("CREATE TABLE t_nn (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT '2026-09-05', contributor text, model text NOT NULL,
                  input_tokens int NOT NULL, output_tokens int NOT NULL, total_tokens int GENERATED ALWAYS AS (input_tokens + output_tokens) STORED,
                  estimated_cost_usd numeric(12,8) NOT NULL DEFAULT 0)").unwrap();
        Spi::run("SELECT llm_cost.track('t_nn', cost_column => 'estimated_cost_usd')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('nn_monthly', 't_nn', 'month', '{contributor}')")
            .unwrap();
        Spi::run("COPY (SELECT 'c' || g % 3, CASE WHEN g % 10 = 0 THEN 'mystery' ELSE 'gpt-4o-mini' END, 1000 + g, 77 FROM generate_series(1, 500) g) TO '/tmp/llm_cost_pg_test_copy5.tsv'").unwrap();
        let p3 = paths().2;
        Spi::run("COPY t_nn (contributor, model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_copy5.tsv'").unwrap();
        assert_eq!(paths().2, p3 + 500);
        assert_eq!(count("SELECT count(*) FROM t_nn WHERE estimated_cost_usd IS DISTINCT FROM coalesce(round(llm_cost.estimate_cost(model, input_tokens, output_tokens, 0, 0, created_at), 8), 0)"), 0);
        assert_eq!(
            count("SELECT count(*) FROM t_nn WHERE estimated_cost_usd = 0"),
            50
        );
        assert_eq!(
            count("SELECT unpriced_requests FROM nn_monthly WHERE contributor = 'c1'"),
            17
        );
        assert_eq!(
            mismatches(
                "nn_monthly",
                "t_nn",
                "created_at",
                "month",
                &["contributor"],
                "estimated_cost_usd"
            ),
            0
        );
        // Another BEFORE row trigger (after ours): COPY goes through the row triggers. (DDL on
        // this test's own table: pg_tests run side by side, and usage_events is everyone's.)
        Spi::run("CREATE FUNCTION keep_all() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$").unwrap();
        Spi::run(
            "CREATE TRIGGER zz_keep BEFORE INSERT ON t_nn FOR EACH ROW EXECUTE FUNCTION keep_all()",
        )
        .unwrap();
        let (c2, t2, p2) = paths();
        Spi::run("COPY t_nn (contributor, model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_copy5.tsv'").unwrap();
        assert_eq!(paths(), (c2, t2 + 500, p2));
        assert_eq!(
            mismatches(
                "nn_monthly",
                "t_nn",
                "created_at",
                "month",
                &["contributor"],
                "estimated_cost_usd"
            ),
            0
        );
        Spi::run("DROP TRIGGER zz_keep ON t_nn").unwrap();
        Spi::run("COPY t_nn (contributor, model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_copy5.tsv'").unwrap();
        assert_eq!(paths(), (c2 + 500, t2 + 500, p2 + 500));
        assert_eq!(
            count("SELECT requests FROM nn_monthly WHERE contributor = 'c1'"),
            3 * 167
        );
        // Where PostgreSQL refuses COPY FROM, its own error comes through.
        let err = error_of("SET LOCAL transaction_read_only = on; COPY t_nn (contributor, model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_copy5.tsv'");
        assert!(
            err.starts_with("25006: cannot execute COPY FROM in a read-only transaction"),
            "{err}"
        );
        // A BEFORE STATEMENT trigger runs after COPY took its copy of the trigger list and the
        // relation cache has the real one back: its INSERT into the same table is priced.
        Spi::run("CREATE FUNCTION bs_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF pg_trigger_depth() = 1 THEN
                  INSERT INTO t_nn (contributor, model, input_tokens, output_tokens) VALUES ('bs', 'gpt-4o', 1000000, 0); END IF; RETURN NULL; END $$").unwrap();
        Spi::run("CREATE TRIGGER aa_bs BEFORE INSERT ON t_nn FOR EACH STATEMENT EXECUTE FUNCTION bs_insert()").unwrap();
        let (c3, t3, p3) = paths();
        Spi::run("COPY t_nn (contributor, model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_copy5.tsv'").unwrap();
        assert_eq!(paths(), (c3 + 500, t3 + 1, p3 + 500));
        assert_eq!(
            one("SELECT estimated_cost_usd::text FROM t_nn WHERE contributor = 'bs'").as_deref(),
            Some("2.50000000")
        );
        Spi::run("DROP TRIGGER aa_bs ON t_nn").unwrap();
        assert_eq!(
            mismatches(
                "nn_monthly",
                "t_nn",
                "created_at",
                "month",
                &["contributor"],
                "estimated_cost_usd"
            ),
            0
        );
        // Where the triggers would not fire (replica role, as when restoring), neither does this.
        let p1 = paths().2;
        Spi::run("SET LOCAL session_replication_role = replica").unwrap();
        Spi::run(&copy("WHERE input_tokens <= 3")).unwrap();
        Spi::run("SET LOCAL session_replication_role = origin").unwrap();
        assert_eq!(paths().2, p1);
        assert_eq!(count("SELECT count(*) FROM llm_cost.usage_events WHERE input_tokens <= 3 AND cost_source IS NULL"), 3);
    }

    /// Only rows actually stored count (not those an ON CONFLICT clause or a later BEFORE trigger
    /// skipped), partitions feed their root's rollups, and a caught error in another trigger keeps
    /// the statement's sums.
    #[pg_test]
    fn inserted_rows_reach_rollups_exactly_once() {
        Spi::run("CREATE TABLE t_uq (id int PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT '2026-06-01', model text, input_tokens int, output_tokens int, cost_usd numeric)").unwrap();
        Spi::run("SELECT llm_cost.track('t_uq')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('uq_daily', 't_uq', 'day', '{model}')").unwrap();
        Spi::run("INSERT INTO t_uq (id, model, input_tokens, output_tokens) SELECT g, 'gpt-4o', 1000, 10 FROM generate_series(1, 10) g").unwrap();
        // ON CONFLICT DO NOTHING: 5 of 10 rows are new.
        Spi::run("INSERT INTO t_uq (id, model, input_tokens, output_tokens) SELECT g, 'gpt-4o', 1000, 10 FROM generate_series(6, 15) g ON CONFLICT DO NOTHING").unwrap();
        // ON CONFLICT DO UPDATE: the conflicting rows are updates (amounts moved), not inserts.
        Spi::run("INSERT INTO t_uq (id, model, input_tokens, output_tokens) SELECT g, 'gpt-4o', 2000, 10 FROM generate_series(14, 17) g ON CONFLICT (id) DO UPDATE SET input_tokens = excluded.input_tokens").unwrap();
        assert_eq!(
            one("SELECT requests || ' ' || input_tokens FROM uq_daily").as_deref(),
            Some("17 21000")
        );
        assert_eq!(
            mismatches(
                "uq_daily",
                "t_uq",
                "created_at",
                "day",
                &["model"],
                "cost_usd"
            ),
            0
        );
        // A BEFORE trigger that runs after llm_cost_price and skips rows.
        Spi::run("CREATE FUNCTION skip_odd() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.id % 2 = 1 THEN RETURN NULL; END IF; RETURN NEW; END $$").unwrap();
        Spi::run(
            "CREATE TRIGGER zz_skip BEFORE INSERT ON t_uq FOR EACH ROW EXECUTE FUNCTION skip_odd()",
        )
        .unwrap();
        Spi::run("INSERT INTO t_uq (id, model, input_tokens, output_tokens) SELECT g, 'gpt-4o', 1, 1 FROM generate_series(101, 110) g").unwrap();
        assert_eq!(
            one("SELECT requests::text FROM uq_daily").as_deref(),
            Some("22")
        );
        // Another AFTER trigger that catches an error (a subtransaction that aborts) for every row.
        Spi::run("CREATE FUNCTION catch_all() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN BEGIN PERFORM 1 / 0; EXCEPTION WHEN division_by_zero THEN NULL; END; RETURN NULL; END $$").unwrap();
        Spi::run("CREATE TRIGGER catch_all AFTER INSERT ON t_uq FOR EACH ROW EXECUTE FUNCTION catch_all()").unwrap();
        Spi::run("INSERT INTO t_uq (id, model, input_tokens, output_tokens) SELECT g, 'gpt-4o', 1, 1 FROM generate_series(200, 219) g").unwrap();
        assert_eq!(
            one("SELECT requests::text FROM uq_daily").as_deref(),
            Some("32")
        );
        assert_eq!(
            mismatches(
                "uq_daily",
                "t_uq",
                "created_at",
                "day",
                &["model"],
                "cost_usd"
            ),
            0
        );
        // A partitioned source: rows through the root and straight into a partition.
        Spi::run("CREATE TABLE t_part (created_at timestamptz NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric) PARTITION BY RANGE (created_at)").unwrap();
        Spi::run("CREATE TABLE t_part_jun PARTITION OF t_part FOR VALUES FROM ('2026-06-01') TO ('2026-07-01')").unwrap();
        Spi::run("SELECT llm_cost.track('t_part')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('part_daily', 't_part', 'day', '{model}')")
            .unwrap();
        // A partition created later, with its columns in another order (other attribute numbers).
        Spi::run("CREATE TABLE t_part_jul (model text, cost_usd numeric, output_tokens int, input_tokens int, created_at timestamptz NOT NULL)").unwrap();
        Spi::run("ALTER TABLE t_part ATTACH PARTITION t_part_jul FOR VALUES FROM ('2026-07-01') TO ('2026-08-01')").unwrap();
        Spi::run("INSERT INTO t_part (created_at, model, input_tokens, output_tokens) SELECT '2026-06-20'::timestamptz + g * interval '1 day', CASE WHEN g % 2 = 0 THEN 'gpt-4o' ELSE 'claude-sonnet-4-5' END, 1000 * g, g FROM generate_series(1, 20) g").unwrap();
        Spi::run("INSERT INTO t_part_jul (created_at, model, input_tokens, output_tokens) VALUES ('2026-07-30', 'gpt-4o', 7, 7)").unwrap();
        // Rows written straight into a partition are written at the next statement on the table (or before commit).
        Spi::run("INSERT INTO t_part (created_at, model, input_tokens, output_tokens) VALUES ('2026-06-02', 'o3', 5, 5)").unwrap();
        assert_eq!(
            mismatches(
                "part_daily",
                "t_part",
                "created_at",
                "day",
                &["model"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(count("SELECT sum(requests)::bigint FROM part_daily"), 22);
        // Pending sums across savepoints (rows straight into a partition wait for the next flush):
        // a committed savepoint hands its sums to the parent, merged with the parent's for the same
        // group (costs with more than 16 decimals included); a rolled-back one drops its own.
        Spi::run(
            "DO $$ BEGIN
               INSERT INTO t_part_jun (created_at, model, input_tokens, output_tokens, cost_usd) VALUES ('2026-06-03', 'o3', 1, 1, 0.00000000000000001);
               BEGIN
                 INSERT INTO t_part_jun (created_at, model, input_tokens, output_tokens, cost_usd) VALUES ('2026-06-03', 'o3', 2, 2, 0.00000000000000002);
               EXCEPTION WHEN others THEN NULL; END;
               BEGIN
                 INSERT INTO t_part_jun (created_at, model, input_tokens, output_tokens, cost_usd) VALUES ('2026-06-03', 'o3', 4, 4, 1);
                 RAISE EXCEPTION 'undo';
               EXCEPTION WHEN others THEN NULL; END;
             END $$",
        )
        .unwrap();
        Spi::run("INSERT INTO t_part (created_at, model, input_tokens, output_tokens) VALUES ('2026-06-04', 'o3', 5, 5)").unwrap();
        assert_eq!(one("SELECT requests || ' ' || input_tokens || ' ' || cost_usd FROM part_daily WHERE period_start = '2026-06-03' AND model = 'o3'").as_deref(), Some("2 3 0.00000000000000003"));
        assert_eq!(
            mismatches(
                "part_daily",
                "t_part",
                "created_at",
                "day",
                &["model"],
                "cost_usd"
            ),
            0
        );
    }

    /// Drops this backend's cached rollup definitions (what any invalidation of a source does).
    #[pg_extern]
    fn forget_rollup_definitions() {
        crate::features::rollups::forget_all();
    }

    #[pg_test]
    fn rollups_sharing_columns_and_definitions_reloaded_mid_statement() {
        // Three rollups of one source at different grains, overlapping group columns: each row is
        // one pending entry, projected onto each rollup when written.
        Spi::run("CREATE TABLE t_multi (created_at timestamptz NOT NULL, team text, model text, input_tokens int, output_tokens int, cost_usd numeric)").unwrap();
        Spi::run("SELECT llm_cost.track('t_multi')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('m_hourly', 't_multi', 'hour', '{model, team}')")
            .unwrap();
        Spi::run("SELECT llm_cost.create_rollup('m_monthly', 't_multi', 'month', '{team}')")
            .unwrap();
        Spi::run("SELECT llm_cost.create_rollup('m_total', 't_multi', 'week', '{}')").unwrap();
        Spi::run(
            "INSERT INTO t_multi SELECT '2026-06-29 22:00+00'::timestamptz + (g % 7) * interval '10 hours', 'team' || (g % 3),
                    (ARRAY['gpt-4o', 'o3', 'claude-sonnet-4-5'])[1 + g % 2], 100 * g, g, CASE WHEN g % 5 = 0 THEN 0.00000000000000001 * g END
               FROM generate_series(1, 200) g",
        )
        .unwrap();
        assert_eq!(
            mismatches(
                "m_hourly",
                "t_multi",
                "created_at",
                "hour",
                &["model", "team"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches(
                "m_monthly",
                "t_multi",
                "created_at",
                "month",
                &["team"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches("m_total", "t_multi", "created_at", "week", &[], "cost_usd"),
            0
        );
        assert_eq!(count("SELECT count(*) FROM m_monthly"), 6); // June and July, three teams
                                                                // Definitions dropped between the rows of one statement (here by another AFTER trigger;
                                                                // in life by any invalidation of the source): rows summed with old and new definitions
                                                                // (pending entries that never merge) are written as one summary row per group.
        Spi::run("CREATE FUNCTION forget_defs() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM tests.forget_rollup_definitions(); RETURN NULL; END $$").unwrap();
        Spi::run("CREATE TRIGGER zz_forget AFTER INSERT ON t_multi FOR EACH ROW EXECUTE FUNCTION forget_defs()").unwrap();
        Spi::run("INSERT INTO t_multi SELECT '2026-06-01 10:00+00', 'reload', 'o3', 10, 1 FROM generate_series(1, 4)").unwrap();
        assert_eq!(
            one("SELECT requests || ' ' || input_tokens FROM m_hourly WHERE team = 'reload'")
                .as_deref(),
            Some("4 40")
        );
        assert_eq!(
            count("SELECT count(*) FROM m_monthly_stripes WHERE team = 'reload'"),
            1
        );
        assert_eq!(
            mismatches(
                "m_monthly",
                "t_multi",
                "created_at",
                "month",
                &["team"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches("m_total", "t_multi", "created_at", "week", &[], "cost_usd"),
            0
        );
    }

    #[pg_test]
    fn rows_an_update_moves_between_partitions_move_in_the_rollups() {
        Spi::run("CREATE TABLE t_mv (occurred_at timestamptz NOT NULL, tenant_id text, model text, input_tokens bigint NOT NULL DEFAULT 0, output_tokens bigint NOT NULL DEFAULT 0, cost_usd numeric, cost_source text) PARTITION BY RANGE (occurred_at)").unwrap();
        Spi::run("CREATE TABLE t_mv_jun PARTITION OF t_mv FOR VALUES FROM ('2026-06-01') TO ('2026-07-01')").unwrap();
        Spi::run("CREATE TABLE t_mv_jul PARTITION OF t_mv FOR VALUES FROM ('2026-07-01') TO ('2026-08-01')").unwrap();
        Spi::run("SELECT llm_cost.track('t_mv', time_column => 'occurred_at')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('mv_daily', 't_mv', 'day', '{tenant_id, model}')")
            .unwrap();
        Spi::run("INSERT INTO t_mv (occurred_at, tenant_id, model, input_tokens, output_tokens, cost_usd) SELECT '2026-06-28'::timestamptz + g * interval '7 hours', 't' || (g % 2), 'gpt-4o', 1000 * g, g, CASE WHEN g = 4 THEN 0.5 END FROM generate_series(1, 12) g").unwrap();
        assert_eq!(count("SELECT count(*) FROM t_mv_jul"), 2);
        // Corrections of the event time: some rows change partition (June <-> July), some stay.
        Spi::run("UPDATE t_mv SET occurred_at = occurred_at + interval '2 days' WHERE input_tokens IN (3000, 4000, 5000)").unwrap();
        Spi::run("UPDATE t_mv SET occurred_at = occurred_at - interval '3 days' WHERE input_tokens IN (11000, 12000)").unwrap();
        Spi::run("UPDATE t_mv SET tenant_id = 'moved' || tenant_id, occurred_at = '2026-07-15' WHERE input_tokens = 1000").unwrap();
        assert_eq!(
            one("SELECT string_agg(input_tokens::text, ',' ORDER BY input_tokens) FROM t_mv_jul")
                .as_deref(),
            Some("1000,4000,5000")
        );
        assert_eq!(
            mismatches(
                "mv_daily",
                "t_mv",
                "occurred_at",
                "day",
                &["tenant_id", "model"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(count("SELECT sum(requests)::bigint FROM mv_daily"), 12);
        // A moved row keeps what it was: estimated stays estimated, provided stays provided.
        assert_eq!(one("SELECT string_agg(cost_source, ',' ORDER BY input_tokens) FROM t_mv WHERE input_tokens IN (1000, 3000, 4000)").as_deref(), Some("estimated,estimated,provided"));
        assert_eq!(
            one("SELECT cost_usd::text FROM t_mv WHERE input_tokens = 4000").as_deref(),
            Some("0.5")
        );
        // Deleting rows (straight, not moved) leaves the rollup as it was.
        Spi::run("DELETE FROM t_mv WHERE input_tokens > 6000").unwrap();
        assert_eq!(count("SELECT sum(requests)::bigint FROM mv_daily"), 12);
    }

    /// The flush writes stripes tables directly (src/stripes.rs): groups equal in SQL but spelled
    /// differently meet in one row even within one statement, aborted subtransactions leave no
    /// trace, plain extra indexes on a stripes table are kept, expression indexes are refused.
    #[pg_test]
    fn direct_stripe_writes_edge_cases() {
        Spi::run("CREATE TABLE t_tier (created_at timestamptz NOT NULL DEFAULT '2026-06-01', model text, input_tokens int, output_tokens int, cost_usd numeric, tier numeric)").unwrap();
        Spi::run("SELECT llm_cost.track('t_tier')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('tier_daily', 't_tier', 'day', '{tier}')").unwrap();
        // 1.0 and 1.00 are different bytes but one group: two sums for one stripe row in one flush.
        Spi::run("INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1000, 0, 1.0), ('gpt-4o', 1000, 0, 1.00), ('gpt-4o', 1000, 0, NULL)").unwrap();
        assert_eq!(count("SELECT count(*) FROM tier_daily_stripes"), 2);
        assert_eq!(Spi::get_one::<String>("SELECT string_agg(requests || ':' || cost_usd * 10000, ' ' ORDER BY tier NULLS LAST) FROM tier_daily").unwrap().as_deref(), Some("2:50.0000 1:25.0000"));
        // A subtransaction that fails after inserting leaves the rollup as it was.
        let err = error_of("INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1000, 0, 1); RAISE EXCEPTION 'boom'");
        assert!(err.contains("boom"), "{err}");
        Spi::run("DO $$ BEGIN BEGIN INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1000, 0, 1); RAISE EXCEPTION 'boom'; EXCEPTION WHEN others THEN NULL; END; INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1000, 0, 2); END $$").unwrap();
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT string_agg(requests::text, ' ' ORDER BY tier NULLS LAST) FROM tier_daily"
            )
            .unwrap()
            .as_deref(),
            Some("2 1 1")
        );
        assert_eq!(
            mismatches(
                "tier_daily",
                "t_tier",
                "created_at",
                "day",
                &["tier"],
                "cost_usd"
            ),
            0
        );
        // A plain index a DBA adds on the stripes table is maintained (new rows and updates).
        Spi::run("CREATE INDEX tier_stripes_tier ON tier_daily_stripes (tier, requests)").unwrap();
        Spi::run("INSERT INTO t_tier (model, input_tokens, output_tokens, tier) SELECT 'gpt-4o', 10, 0, g % 5 FROM generate_series(1, 50) g").unwrap();
        Spi::run("SET LOCAL enable_seqscan = off").unwrap();
        Spi::run("SET LOCAL enable_bitmapscan = off").unwrap();
        assert_eq!(
            count("SELECT count(*) FROM tier_daily_stripes WHERE tier = 1 AND requests = 12"),
            1
        );
        assert_eq!(
            count("SELECT count(*) FROM tier_daily_stripes WHERE tier = 4 AND requests = 10"),
            1
        );
        Spi::run("RESET enable_seqscan").unwrap();
        Spi::run("RESET enable_bitmapscan").unwrap();
        assert_eq!(
            mismatches(
                "tier_daily",
                "t_tier",
                "created_at",
                "day",
                &["tier"],
                "cost_usd"
            ),
            0
        );
        // An expression index cannot be maintained without the executor: a clear error, nothing stored.
        Spi::run("CREATE INDEX tier_stripes_expr ON tier_daily_stripes ((tier * 2))").unwrap();
        let err = error_of("INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1, 0, 9)");
        assert!(err.starts_with("0A000: llm_cost: index tier_stripes_expr on the rollup stripes table tier_daily_stripes has expressions"), "{err}");
        Spi::run("DROP INDEX tier_stripes_expr").unwrap();
        // A sum past bigint is an error (22003), never a wrapped count.
        Spi::run("UPDATE tier_daily_stripes SET input_tokens = input_tokens + 9223372036854774000 WHERE tier = 2").unwrap();
        let err = error_of("INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1000, 0, 2)");
        assert!(
            err.starts_with("22003: llm_cost: rollup sum out of range for bigint"),
            "{err}"
        );
        Spi::run("UPDATE tier_daily_stripes SET input_tokens = input_tokens - 9223372036854774000 WHERE tier = 2").unwrap();
        Spi::run("INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1, 0, 9)").unwrap();
        assert_eq!(
            mismatches(
                "tier_daily",
                "t_tier",
                "created_at",
                "day",
                &["tier"],
                "cost_usd"
            ),
            0
        );
    }

    #[pg_test]
    fn shared_schema_monthly_and_platform_wide_with_backfill() {
        Spi::run(include_str!("../../tests/data/api_usage_log.sql")).unwrap();
        Spi::run("SELECT llm_cost.track('public.api_usage_log', provider_column => 'provider', add_cost_column => true)").unwrap();
        Spi::run("INSERT INTO contributor (id, handle) VALUES ('00000000-0000-0000-0000-000000000001', 'a'), ('00000000-0000-0000-0000-000000000002', 'b')").unwrap();
        // Rows before the rollups exist are backfilled.
        Spi::run(
            "INSERT INTO api_usage_log (contributor_id, provider, model, endpoint, input_tokens, output_tokens, created_at) VALUES
               ('00000000-0000-0000-0000-000000000001', 'claude', 'claude-sonnet-4-5', '/a', 1000, 100, '2026-01-15'),
               (NULL, 'openai', 'gpt-4o', '/b', 2000, 200, '2026-01-20')",
        )
        .unwrap();
        let v = Spi::get_one::<String>("SELECT llm_cost.create_rollup('usage_by_contributor', 'public.api_usage_log', 'month', '{contributor_id,provider}')::text").unwrap();
        assert_eq!(v.as_deref(), Some("usage_by_contributor"));
        Spi::run("SELECT llm_cost.create_rollup('public.usage_platform', 'public.api_usage_log', 'month', '{}')").unwrap();
        Spi::run(
            "INSERT INTO api_usage_log (contributor_id, provider, model, endpoint, input_tokens, output_tokens, created_at)
             SELECT CASE WHEN g % 3 = 0 THEN NULL ELSE ('00000000-0000-0000-0000-00000000000' || (1 + g % 2))::uuid END,
                    CASE WHEN g % 2 = 0 THEN 'claude' ELSE 'openai' END, CASE WHEN g % 2 = 0 THEN 'claude-haiku-4-5' ELSE 'gpt-4.1' END,
                    '/x', g, g, timestamptz '2026-01-01' + g * interval '1 hour'
               FROM generate_series(1, 2000) g",
        )
        .unwrap();
        assert_eq!(
            mismatches(
                "usage_by_contributor",
                "api_usage_log",
                "created_at",
                "month",
                &["contributor_id", "provider"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches(
                "usage_platform",
                "api_usage_log",
                "created_at",
                "month",
                &[],
                "cost_usd"
            ),
            0
        );
        // The group column keeps its source type.
        assert_eq!(
            Spi::get_one::<String>("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'usage_by_contributor'::regclass AND attname = 'contributor_id'").unwrap().as_deref(),
            Some("uuid")
        );
        assert_eq!(
            count("SELECT count(*) FROM llm_cost.rollups WHERE source = 'api_usage_log'::regclass"),
            2
        );
        // Comments for GraphQL layers.
        let c = Spi::get_one::<String>(
            "SELECT obj_description('usage_by_contributor'::regclass, 'pg_class')",
        )
        .unwrap()
        .unwrap();
        assert!(
            c.starts_with(
                "@primaryKey row_key\nLLM usage and cost per contributor_id, provider per month"
            ),
            "{c}"
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT row_key FROM usage_by_contributor WHERE contributor_id IS NULL AND provider = 'openai' ORDER BY period_start LIMIT 1").unwrap().as_deref(),
            Some(r#"["2026-01-01T00:00:00+00:00", null, "openai"]"#)
        );
        assert!(
            Spi::get_one::<String>("SELECT col_description('usage_platform'::regclass, 3)")
                .unwrap()
                .is_some()
        );
        // Dropping one rollup keeps the other fed.
        Spi::run("SELECT llm_cost.drop_rollup('usage_by_contributor')").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_class WHERE relname IN ('usage_by_contributor', 'usage_by_contributor_stripes')"), 0);
        Spi::run("INSERT INTO api_usage_log (contributor_id, model, endpoint, input_tokens, output_tokens, created_at) VALUES (NULL, 'gpt-4o', '/c', 5, 5, '2026-02-01')").unwrap();
        assert_eq!(
            mismatches(
                "usage_platform",
                "api_usage_log",
                "created_at",
                "month",
                &[],
                "cost_usd"
            ),
            0
        );
        Spi::run("SELECT llm_cost.drop_rollup('usage_platform')").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'api_usage_log'::regclass AND tgname LIKE 'llm_cost_rollup%'"), 0);
    }

    #[pg_test]
    fn reprice_fixes_rows_and_rollups_together() {
        Spi::run("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('acme', 'acme-r', 1, 0)").unwrap();
        Spi::run(
            "INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens, output_tokens, cost_usd) VALUES
               ('2026-05-01', 't', 'acme-r', 1000000, 0, NULL), ('2026-05-02', 't', 'acme-r', 2000000, 0, NULL),
               ('2026-05-03', 't', 'acme-r', 1000000, 0, 0.5), ('2026-07-01', 't', 'acme-r', 1000000, 0, NULL)",
        )
        .unwrap();
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT sum(cost_usd)::text FROM llm_cost.usage_daily WHERE tenant_id = 't'"
            )
            .unwrap()
            .as_deref(),
            Some("4.5")
        );
        Spi::run(
            "UPDATE llm_cost.model_prices SET input_usd_per_mtok = 1.5 WHERE model = 'acme-r'",
        )
        .unwrap();
        let (n, diff) = Spi::get_two::<i64, pgrx::AnyNumeric>(
            "SELECT * FROM llm_cost.reprice('llm_cost.usage_events', '2026-05-01', '2026-06-01')",
        )
        .unwrap();
        assert_eq!(n, Some(2));
        assert_eq!(diff.map(|d| d.to_string()).as_deref(), Some("1.5"));
        // Provided cost untouched, July outside the range untouched.
        assert_eq!(
            Spi::get_one::<String>("SELECT string_agg(cost_usd::text || ':' || cost_source, ' ' ORDER BY occurred_at) FROM llm_cost.usage_events WHERE tenant_id = 't'").unwrap().as_deref(),
            Some("1.5:estimated 3:estimated 0.5:provided 1:estimated")
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_monthly",
                "llm_cost.usage_events",
                "occurred_at",
                "month",
                &["tenant_id", "user_id"],
                "cost_usd"
            ),
            0
        );
        // Unpriced rows whose model got a price are priced by reprice too.
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens) VALUES ('2026-05-05', 'u', 'late-model', 1000000)").unwrap();
        Spi::run("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'late-model', 4)").unwrap();
        let (n, diff) = Spi::get_two::<i64, pgrx::AnyNumeric>(
            "SELECT * FROM llm_cost.reprice('llm_cost.usage_events')",
        )
        .unwrap();
        // The late model's row, and July's acme-r row (outside the first range) at the new price.
        assert_eq!(n, Some(2));
        assert_eq!(diff.map(|d| d.to_string()).as_deref(), Some("4.5"));
        assert_eq!(Spi::get_one::<String>("SELECT cost_usd::text || ' ' || unpriced_requests FROM llm_cost.usage_daily WHERE tenant_id = 'u'").unwrap().as_deref(), Some("4 0"));
    }

    #[pg_test]
    fn rebuild_rollup_recomputes_from_raw_rows() {
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens) SELECT '2026-04-01'::timestamptz + g * interval '1 hour', 'r', 'gpt-4o', 1000 FROM generate_series(0, 71) g").unwrap();
        // Corrupt a stripe, then rebuild two of the three days.
        Spi::run("UPDATE llm_cost.usage_daily_stripes SET requests = requests + 100 WHERE tenant_id = 'r'").unwrap();
        let n = Spi::get_one::<i64>("SELECT llm_cost.rebuild_rollup('llm_cost.usage_daily', '2026-04-02 05:00+00', '2026-04-03 01:00+00')").unwrap();
        assert_eq!(n, Some(2));
        assert_eq!(
            Spi::get_one::<String>("SELECT string_agg(requests::text, ' ' ORDER BY period_start) FROM llm_cost.usage_daily WHERE tenant_id = 'r'").unwrap().as_deref(),
            Some("124 24 24")
        );
    }

    #[pg_test]
    fn without_citus_the_citus_paths_stay_shut() {
        // No Citus here: no table is distributed, none is a shard, this is no coordinator.
        Spi::run("CREATE TABLE public.t_plain_42 (at timestamptz NOT NULL DEFAULT now(), team text, model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text)").unwrap();
        Spi::run("SELECT llm_cost.track('public.t_plain_42', time_column => 'at')").unwrap();
        assert_eq!(
            one("SELECT row(d.*)::text FROM llm_cost._citus_distribution('public.t_plain_42') d"),
            Some("(,,)".into())
        );
        assert_eq!(
            one("SELECT row(d.*)::text FROM llm_cost._citus_shard_logical('public.t_plain_42') d"),
            Some("(,,)".into())
        );
        assert_eq!(
            one("SELECT llm_cost._citus_coordinator()::text"),
            Some("false".into())
        );
        assert_eq!(
            error_of("PERFORM llm_cost.distribute_rollups('public.t_plain_42')"),
            "55000: public.t_plain_42 is not a Citus distributed table"
        );
        assert_eq!(
            error_of("PERFORM llm_cost.distribute_rollups(NULL)"),
            "22004: llm_cost.distribute_rollups: source must not be NULL"
        );
        Spi::run("CREATE ROLE r_not_owner NOLOGIN; SET ROLE r_not_owner").unwrap();
        assert_eq!(
            error_of("PERFORM llm_cost.distribute_rollups('public.t_plain_42')"),
            "42501: must be owner of table public.t_plain_42 to distribute its rollups"
        );
        Spi::run("RESET ROLE").unwrap();
        // A rollup's keys are its group columns, its trigger has no argument.
        Spi::run("SELECT llm_cost.create_rollup('public.t_plain_42_daily', 'public.t_plain_42', 'day', '{team}')").unwrap();
        assert_eq!(
            one("SELECT llm_cost._rollup_keys(r)::text FROM llm_cost.rollups r WHERE r.rollup = 'public.t_plain_42_daily'::regclass"),
            Some("{team}".into())
        );
        assert_eq!(
            one("SELECT tgnargs::text FROM pg_trigger WHERE tgrelid = 'public.t_plain_42'::regclass AND tgname = 'llm_cost_rollup'"),
            Some("0".into())
        );
        // A hand-made shard trigger (what a shard's carries: the mapping by column name) on a
        // plain table never writes anywhere: its rows are refused.
        Spi::run(
            r#"CREATE TRIGGER llm_cost_rollup_7 AFTER INSERT ON public.t_plain_42 FOR EACH ROW EXECUTE FUNCTION llm_cost.rollup_row_trigger(
               '{"time": "at", "cost": "cost_usd", "model": "model", "input": "input_tokens", "output": "output_tokens", "zone": "UTC",
                 "rollups": [{"id": 1, "grain": "day", "time_zone": "UTC", "groups": ["team"], "stripes": "public.t_plain_42_daily_stripes",
                              "stripes_groups": ["team"]}]}')"#,
        )
        .unwrap();
        Spi::run("DROP TRIGGER llm_cost_rollup ON public.t_plain_42").unwrap();
        assert_eq!(
            error_of("INSERT INTO public.t_plain_42 (team, model, input_tokens, output_tokens) VALUES ('a', 'gpt-4o', 1, 1)"),
            "55000: llm_cost: public.t_plain_42 is not a shard of a Citus distributed table, but its rollup trigger is one for shards"
        );
        assert_eq!(
            one("SELECT count(*)::text FROM public.t_plain_42_daily"),
            Some("0".into())
        );
    }

    #[pg_test]
    fn create_rollup_refuses_bad_arguments() {
        Spi::run("CREATE TABLE public.untracked (model text, input_tokens int, output_tokens int, created_at timestamptz, cost_usd numeric, requests int)").unwrap();
        assert_eq!(
            error_of("PERFORM llm_cost.create_rollup('x', 'public.untracked', 'day', '{}')"),
            "55000: table public.untracked is not tracked by llm_cost"
        );
        Spi::run("SELECT llm_cost.track('public.untracked')").unwrap();
        assert_eq!(
            error_of("PERFORM llm_cost.create_rollup('x', 'public.untracked', 'year', '{}')"),
            "22023: grain must be hour, day, week or month, not \"year\""
        );
        assert_eq!(
            error_of("PERFORM llm_cost.create_rollup('x', 'public.untracked', 'day', '{nope}')"),
            "42703: group_by column \"nope\" does not exist in table public.untracked"
        );
        assert_eq!(
            error_of(
                "PERFORM llm_cost.create_rollup('x', 'public.untracked', 'day', '{requests}')"
            ),
            "42701: cannot group by \"requests\": a rollup has a column of that name"
        );
        assert_eq!(
            error_of("PERFORM llm_cost.create_rollup('x', 'public.untracked', 'day', '{model}', 'Mars/Olympus')"),
            "22023: time zone \"Mars/Olympus\" not recognized"
        );
        assert_eq!(
            error_of("PERFORM llm_cost.drop_rollup('public.untracked')"),
            "42704: public.untracked is not an llm_cost rollup"
        );
        // Hourly and weekly grains, other time zones.
        Spi::run(
            "SELECT llm_cost.create_rollup('public.hourly', 'public.untracked', 'hour', '{model}')",
        )
        .unwrap();
        Spi::run("SELECT llm_cost.create_rollup('public.weekly_paris', 'public.untracked', 'week', '{}', 'Europe/Paris')").unwrap();
        Spi::run("INSERT INTO public.untracked (model, input_tokens, output_tokens, created_at) VALUES ('gpt-4o', 1, 1, '2026-06-03 23:30+00')").unwrap();
        assert_eq!(
            Spi::get_one::<String>("SELECT period_start::text FROM public.hourly")
                .unwrap()
                .as_deref(),
            Some("2026-06-03 23:00:00+00")
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT period_start AT TIME ZONE 'Europe/Paris' || ' ' || (period_end AT TIME ZONE 'Europe/Paris') FROM public.weekly_paris").unwrap().as_deref(),
            Some("2026-06-01 00:00:00 2026-06-08 00:00:00")
        );
        // untrack drops the table's rollups too.
        Spi::run("SELECT llm_cost.untrack('public.untracked')").unwrap();
        assert_eq!(count("SELECT count(*) FROM llm_cost.rollups WHERE rollup::text IN ('hourly', 'weekly_paris')"), 0);
    }

    #[pg_test]
    fn report_views() {
        Spi::run(
            "INSERT INTO llm_cost.usage_events (tenant_id, user_id, feature, model, input_tokens, output_tokens) VALUES
               ('t', 'ann', 'chat', 'claude-sonnet-4-5', 100000, 0), ('t', 'ann', 'chat', 'gpt-4o', 1000000, 0),
               ('t', 'ann', 'search', 'gpt-4o', 1000000, 0), ('t', 'bob', 'chat', 'claude-sonnet-4-5', 200000, 0)",
        )
        .unwrap();
        assert_eq!(
            Spi::get_one::<String>("SELECT string_agg(period || '=' || (cost_usd = 5.9), ' ' ORDER BY period) FROM llm_cost.spend_summary").unwrap().as_deref(),
            Some("this month=true this week=true today=true")
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT predominant_model || ' ' || requests || ' ' || avg_cost_per_request_usd FROM llm_cost.user_stats WHERE user_id = 'ann'").unwrap().as_deref(),
            Some("gpt-4o 3 1.76666667")
        );
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT predominant_model FROM llm_cost.feature_stats WHERE feature = 'chat'"
            )
            .unwrap()
            .as_deref(),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT user_id FROM llm_cost.top_users WHERE spend_rank = 1")
                .unwrap()
                .as_deref(),
            Some("ann")
        );
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT cost_usd::text FROM llm_cost.spend_by_model WHERE model = 'gpt-4o'"
            )
            .unwrap()
            .as_deref(),
            Some("5.0")
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT requests FROM llm_cost.daily_trend").unwrap(),
            Some(4)
        );
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT cost_usd::text FROM llm_cost.spend_by_feature WHERE feature = 'search'"
            )
            .unwrap()
            .as_deref(),
            Some("2.5")
        );
    }

    /// Hardening item 6: NaN and Infinity costs are refused (22023) on INSERT, UPDATE and COPY;
    /// the totals stay numbers.
    #[pg_test]
    fn non_finite_costs_are_refused_everywhere() {
        Spi::run("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, cost_usd) VALUES ('gpt-4o', 1, 1, 0.5)").unwrap();
        for v in ["'NaN'", "'Infinity'", "'-Infinity'"] {
            let e = error_of(&format!("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, cost_usd) VALUES ('gpt-4o', 1, 1, {v})"));
            assert!(
                e.starts_with("22023: cost_usd must be a finite number"),
                "{v}: {e}"
            );
            let e = error_of(&format!("UPDATE llm_cost.usage_events SET cost_usd = {v}"));
            assert!(e.starts_with("22023"), "{v}: {e}");
        }
        // A tracked table of the application's, and COPY (the batched path and the row trigger).
        Spi::run("CREATE TABLE t_nan (created_at timestamptz NOT NULL DEFAULT '2026-10-01', model text, input_tokens int, output_tokens int, cost numeric NOT NULL DEFAULT 0)").unwrap();
        Spi::run("SELECT llm_cost.track('t_nan', cost_column => 'cost')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('t_nan_total', 't_nan', 'month', '{}')").unwrap();
        Spi::run("COPY (SELECT 'gpt-4o', 1, 1, 'NaN') TO '/tmp/llm_cost_pg_test_nan.tsv'").unwrap();
        for batch in ["on", "off"] {
            Spi::run(&format!("SET llm_cost.batch_copy = {batch}")).unwrap();
            let e = error_of("COPY t_nan (model, input_tokens, output_tokens, cost) FROM '/tmp/llm_cost_pg_test_nan.tsv'");
            assert!(
                e.starts_with("22023: cost must be a finite number"),
                "{batch}: {e}"
            );
        }
        Spi::run("RESET llm_cost.batch_copy").unwrap();
        assert_eq!(
            one("SELECT count(*)::text FROM t_nan").as_deref(),
            Some("0")
        );
        Spi::run("DELETE FROM llm_cost.usage_events").unwrap();
        assert_eq!(
            one("SELECT sum(cost_usd)::text FROM llm_cost.usage_daily").as_deref(),
            Some("0.5")
        );
        assert_eq!(
            one("SELECT bool_and(cost_usd <> 'NaN')::text FROM llm_cost.spend_summary").as_deref(),
            Some("true")
        );
    }

    /// Hardening item 8: without cost_source, a NOT NULL DEFAULT 0 cost column; an unknown model
    /// priced later and repriced leaves the rollup's unpriced_requests at 0, as a rebuild would.
    #[pg_test]
    fn reprice_without_cost_source_moves_the_row_out_of_unpriced() {
        Spi::run("CREATE TABLE t_rp (created_at timestamptz NOT NULL DEFAULT '2026-10-01', team text, model text, input_tokens int, output_tokens int, cost numeric(14,8) NOT NULL DEFAULT 0)").unwrap();
        Spi::run("SELECT llm_cost.track('t_rp', cost_column => 'cost')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('t_rp_daily', 't_rp', 'day', '{team}')").unwrap();
        Spi::run("INSERT INTO t_rp (team, model, input_tokens, output_tokens) VALUES ('a', 'acme-later-1', 1000000, 0), ('a', 'gpt-4o', 0, 0), ('b', 'gpt-4o', 1000000, 0)").unwrap();
        let state = || {
            one("SELECT string_agg(team || ':' || requests || '/' || unpriced_requests || '/' || trim_scale(cost_usd), ' ' ORDER BY team) FROM t_rp_daily").unwrap()
        };
        // The zero-token call is priced (its estimate is 0), the unknown model is not.
        assert_eq!(state(), "a:2/1/0 b:1/0/2.5");
        Spi::run("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('acme', 'acme-later-1', 4, 8)").unwrap();
        // A price alone does not change what was stored.
        assert_eq!(state(), "a:2/1/0 b:1/0/2.5");
        Spi::run("SELECT * FROM llm_cost.reprice('t_rp')").unwrap();
        assert_eq!(state(), "a:2/0/4 b:1/0/2.5");
        Spi::run("SELECT llm_cost.rebuild_rollup('t_rp_daily')").unwrap();
        assert_eq!(state(), "a:2/0/4 b:1/0/2.5");
    }

    /// Hardening item 10: a type change of a grouped column is refused; so is a tracked column
    /// changed to a type the cost trigger cannot read. Other changes go through.
    #[pg_test]
    fn column_type_changes_llm_cost_cannot_follow_are_refused() {
        Spi::run("CREATE TABLE t_ty (created_at timestamptz NOT NULL DEFAULT now(), team int, note int, model text, input_tokens int, output_tokens int, cost_usd numeric, provider text)").unwrap();
        Spi::run("SELECT llm_cost.track('t_ty', provider_column => 'provider')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('t_ty_daily', 't_ty', 'day', '{team}')").unwrap();
        let e = error_of("ALTER TABLE t_ty ALTER team TYPE bigint");
        assert!(e.starts_with("0A000: cannot change the type of a column of public.t_ty that llm_cost rollup public.t_ty_daily groups by: team (bigint, summed as integer)"), "{e}");
        let e = error_of("ALTER TABLE t_ty ALTER team TYPE text");
        assert!(e.starts_with("0A000"), "{e}");
        // The provider column (the only mapped one PostgreSQL lets change type under the cost
        // trigger's UPDATE OF list) to a type the trigger cannot fill.
        let e = error_of("ALTER TABLE t_ty ALTER provider TYPE int USING 0");
        assert!(
            e.starts_with("42804: column \"provider\" of table public.t_ty has type integer"),
            "{e}"
        );
        // Not grouped, or still a text type: fine.
        assert_eq!(error_of("ALTER TABLE t_ty ALTER note TYPE bigint"), "ok");
        assert_eq!(
            error_of("ALTER TABLE t_ty ALTER provider TYPE varchar(40)"),
            "ok"
        );
        Spi::run("INSERT INTO t_ty (team, note, model, input_tokens, output_tokens) VALUES (7, 5000000000, 'gpt-4o', 5000000, 0)").unwrap();
        assert_eq!(
            one("SELECT team || ' ' || input_tokens || ' ' || cost_usd FROM t_ty_daily").as_deref(),
            Some("7 5000000 12.5")
        );
        assert_eq!(one("SELECT provider FROM t_ty").as_deref(), Some("openai"));
        // Past the event trigger (event triggers off): the rollup refuses to write the wrong type.
        Spi::run("SET session_replication_role = replica; ALTER TABLE t_ty ALTER team TYPE bigint; RESET session_replication_role;").unwrap();
        let e = error_of("INSERT INTO t_ty (team, model, input_tokens, output_tokens) VALUES (5000000000, 'gpt-4o', 1, 0)");
        assert!(
            e.starts_with(
                "42804: llm_cost: rollup public.t_ty_daily groups by columns whose type differs"
            ),
            "{e}"
        );
    }

    /// Hardening item 11: pending sums that overflow bigint fail with 22003, never wrap.
    #[pg_test]
    fn overflowing_sums_fail_instead_of_wrapping() {
        Spi::run("CREATE TABLE t_ov (created_at timestamptz NOT NULL DEFAULT now(), model text, input_tokens bigint, output_tokens bigint, cost_usd numeric)").unwrap();
        Spi::run("SELECT llm_cost.track('t_ov')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('t_ov_total', 't_ov', 'month', '{}')").unwrap();
        let e = error_of("INSERT INTO t_ov (model, input_tokens, output_tokens) VALUES ('nope', 5000000000000000000, 0), ('nope', 5000000000000000000, 0)");
        assert!(e.starts_with("22003"), "{e}");
        assert_eq!(
            one("SELECT count(*)::text FROM t_ov_total").as_deref(),
            Some("0")
        );
        Spi::run("INSERT INTO t_ov (model, input_tokens, output_tokens) VALUES ('nope', 5000000000000000000, 0)").unwrap();
        let e = error_of("INSERT INTO t_ov (model, input_tokens, output_tokens) VALUES ('nope', 5000000000000000000, 0)");
        assert!(e.starts_with("22003"), "{e}");
        assert_eq!(
            one("SELECT input_tokens::text FROM t_ov_total").as_deref(),
            Some("5000000000000000000")
        );
    }

    /// Hardening item 15: the stripes table and its indexes stay locked until the transaction
    /// that wrote uncommitted row versions there ends.
    #[pg_test]
    fn stripes_locks_are_held_to_the_end_of_the_transaction() {
        Spi::run("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1, 1)").unwrap();
        assert_eq!(
            one("SELECT count(*)::text FROM pg_locks WHERE pid = pg_backend_pid() AND mode = 'RowExclusiveLock'
                  AND relation IN (SELECT 'llm_cost.usage_daily_stripes'::regclass UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid = 'llm_cost.usage_daily_stripes'::regclass)").as_deref(),
            Some("2")
        );
    }

    /// Hardening item 7 (in one session): rebuild_rollup writes the sums still pending first.
    #[pg_test]
    fn rebuild_after_rows_straight_into_a_partition_counts_them_once() {
        Spi::run(
            "CREATE TABLE t_pp (created_at timestamptz NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric) PARTITION BY RANGE (created_at);
             CREATE TABLE t_pp_1 PARTITION OF t_pp FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
             SELECT llm_cost.track('t_pp');
             SELECT llm_cost.create_rollup('t_pp_m', 't_pp', 'month', '{}');
             INSERT INTO t_pp_1 (created_at, model, input_tokens, output_tokens) VALUES ('2026-03-01', 'gpt-4o', 1000000, 0);
             SELECT llm_cost.rebuild_rollup('t_pp_m');
             SELECT llm_cost._flush_pending_sums();",
        )
        .unwrap();
        assert_eq!(
            one("SELECT requests || ' ' || cost_usd FROM t_pp_m").as_deref(),
            Some("1 2.5")
        );
        // Rows left pending outside a savepoint: a rebuild inside it is refused, not wrong.
        Spi::run("INSERT INTO t_pp_1 (created_at, model, input_tokens, output_tokens) VALUES ('2026-03-02', 'gpt-4o', 1000000, 0)").unwrap();
        let e = error_of("PERFORM llm_cost.rebuild_rollup('t_pp_m')");
        assert!(e.starts_with("55000"), "{e}");
    }

    /// reprice and rebuild_rollup act on a table's behalf: as its owner, under a
    /// security-restricted operation. A superuser repricing a table whose owner's trigger grants
    /// the owner superuser when a superuser runs it grants nothing; others may not run them.
    #[pg_test]
    fn reprice_and_rebuild_run_as_the_table_owner() {
        Spi::run(
            "CREATE ROLE t_rp_evil NOLOGIN; CREATE SCHEMA t_rp_s AUTHORIZATION t_rp_evil; CREATE ROLE t_rp_other NOLOGIN;
             SET ROLE t_rp_evil;
             CREATE TABLE t_rp_s.calls (created_at timestamptz NOT NULL DEFAULT '2026-10-01', model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text);
             CREATE TABLE t_rp_s.seen (who text);
             CREATE FUNCTION t_rp_s.grab() RETURNS trigger LANGUAGE plpgsql AS $f$
             BEGIN
                 INSERT INTO t_rp_s.seen VALUES (current_user);
                 IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                     EXECUTE 'ALTER ROLE t_rp_evil SUPERUSER';
                 END IF;
                 RETURN NEW;
             END $f$;
             SELECT llm_cost.track('t_rp_s.calls');
             SELECT llm_cost.create_rollup('t_rp_s.calls_m', 't_rp_s.calls', 'month', '{}');
             CREATE TRIGGER grab BEFORE UPDATE ON t_rp_s.calls FOR EACH ROW EXECUTE FUNCTION t_rp_s.grab();
             INSERT INTO t_rp_s.calls (model, input_tokens, output_tokens) VALUES ('acme-rp-later', 1000000, 0);
             RESET ROLE;
             INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('acme', 'acme-rp-later', 3, 0);",
        )
        .unwrap();
        assert_eq!(one("SELECT rows_changed || ' ' || cost_difference FROM llm_cost.reprice('t_rp_s.calls')").as_deref(), Some("1 3"));
        assert_eq!(
            one("SELECT rolsuper::text FROM pg_roles WHERE rolname = 't_rp_evil'").as_deref(),
            Some("false")
        );
        assert_eq!(
            one("SELECT string_agg(who, ',') FROM t_rp_s.seen").as_deref(),
            Some("t_rp_evil")
        );
        assert_eq!(
            one("SELECT cost_usd::text FROM t_rp_s.calls_m").as_deref(),
            Some("3")
        );
        assert_eq!(
            one("SELECT llm_cost.rebuild_rollup('t_rp_s.calls_m')::text").as_deref(),
            Some("1")
        );
        assert_eq!(
            one("SELECT current_user::text").as_deref(),
            Some("postgres")
        );
        // Not the owner: refused.
        Spi::run("SET ROLE t_rp_other").unwrap();
        for sql in ["PERFORM llm_cost.reprice('t_rp_s.calls')", "PERFORM llm_cost.rebuild_rollup('t_rp_s.calls_m')",
                    "PERFORM llm_cost.reprice('llm_cost.usage_events')",
                    "PERFORM llm_cost._as_table_owner('reprice', 'llm_cost.usage_events'::regclass::oid, '{}')"] {
            let e = error_of(sql);
            assert!(e.starts_with("42501"), "{sql}: {e}");
        }
        Spi::run("RESET ROLE").unwrap();
    }
}
