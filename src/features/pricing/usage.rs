//! Usage logs: the row trigger that prices every INSERT/UPDATE/COPY of an LLM call, in
//! `llm_cost.usage_events` and in application tables attached with `llm_cost.track()`.
//!
//! The trigger reads its column mapping from its arguments (written by `track()`), resolves the
//! names to attribute numbers once per backend and table, and prices each row from the cached
//! catalog: no query per row. Unknown models are stored unpriced; their counts are collected per
//! statement and written by the statement trigger `usage_statement_end` in the same transaction.
//! `COPY FROM` into a plain tracked table is priced by the same `price` function without the row
//! trigger, as COPY reads each row (`copy.rs`, through `price_values`).

use crate::pg::spi;
use llm_cost_core::pricing::{Cost, ServiceTier, Usage};
use llm_cost_core::row::{decide, Call, NewRow, OldRow, Outcome, Refused, Table};
use llm_cost_core::usage_json::Counts;
use pgrx::prelude::*;
use pgrx::{AnyNumeric, GucContext, GucFlags, GucRegistry, GucSetting, IntoDatum, PgSqlErrorCode};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

pub static STRICT: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static BATCH_COPY: GucSetting<bool> = GucSetting::<bool>::new(true);

pub fn init_gucs() {
    GucRegistry::define_bool_guc(
        c"llm_cost.strict",
        c"Reject rows whose model has no price instead of storing them unpriced.",
        c"Off (default): a row of an unknown model is stored with cost NULL (or the cost column's default) and counted in llm_cost.unpriced_models. On: such a row is an error and the statement is rolled back.",
        &STRICT,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"llm_cost.batch_copy",
        c"Let COPY FROM into plain tracked tables keep inserting in batches: price each row as COPY reads it instead of in the row trigger.",
        c"On (default): llm_cost prices each row as COPY reads it (see src/copy.rs; PostgreSQL 14 and later). Off: COPY goes through the row triggers, like INSERT. The rows stored and the rollups are the same either way.",
        &BATCH_COPY,
        GucContext::Userset,
        GucFlags::default(),
    );
}

#[derive(Clone, Copy, Debug)]
enum IntKind {
    I2,
    I4,
    I8,
}

/// The cost column's type: numeric (its typmod, -1 for none) in USD, or an integer type in a
/// unit of 10^-scale USD (`track(..., cost_unit => ...)`).
#[derive(Clone, Copy, Debug)]
enum CostKind {
    Numeric(i32),
    Int(IntKind, u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UsageKind {
    Jsonb,
    Json,
}

#[derive(Clone, Copy, Debug)]
enum TimeKind {
    Tstz,
    Ts,
    Date,
}

#[derive(Clone, Debug)]
struct Col<K> {
    /// 1-based attribute number.
    attno: i32,
    name: String,
    kind: K,
}

/// How one tracked table maps onto a call: resolved from the trigger arguments and the
/// table's tuple descriptor once per backend.
#[derive(Debug)]
pub struct TableSpec {
    model: Col<()>,
    /// Token columns; a table tracked by its usage column alone may map none.
    input: Option<Col<IntKind>>,
    output: Option<Col<IntKind>>,
    cache_read: Option<Col<IntKind>>,
    cache_write: Option<Col<IntKind>>,
    cache_write_1h: Option<Col<IntKind>>,
    /// Optional columns (0.8.0): input, cached and output audio tokens, the same for images
    /// (parts of the token counts), web searches. In `Usage::named()` order after the five counts.
    extra: [Option<Col<IntKind>>; 7],
    /// A jsonb or json column holding the provider's usage object: when set on a row, the counts
    /// come from it (and are written into the mapped token columns).
    usage: Option<Col<UsageKind>>,
    cost: Col<CostKind>,
    time: Option<Col<TimeKind>>,
    /// Read to pick the host's price, and filled with the resolved provider when empty.
    provider: Option<Col<()>>,
    /// The call's service tier (batch, flex, priority, ...); standard when absent or NULL.
    service_tier: Option<Col<()>>,
    /// Filled with the catalog model the row was priced as (the name as sent when none matches).
    priced_model: Option<Col<()>>,
    /// Filled with the provider the row was priced at, normalised through the providers table
    /// (`Anthropic` and `anthropic` give `anthropic`); the provider column keeps what was sent.
    priced_provider: Option<Col<()>>,
    source: Option<Col<()>>,
    /// The cost column's default as numeric text ("0"), when it has one: in a table without a
    /// cost_source column, a cost equal to it counts as "not provided".
    cost_default: Option<String>,
    cost_not_null: bool,
    /// Zone a timestamp (without time zone) or date time column is read in (text datum in
    /// TopMemoryContext); None: UTC.
    zone: Option<pg_sys::Datum>,
}

/// Rows stored unpriced for one (table, model), and the first and last event time among them.
struct UnpricedRows {
    rows: i64,
    first: i64,
    last: i64,
}

impl crate::pg::pending::Merge for UnpricedRows {
    fn merge(&mut self, o: UnpricedRows) {
        self.rows += o.rows;
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
    }
}

thread_local! {
    /// The table `backfill` is pricing (its root): its UPDATE's rows are priced as if inserted.
    static BACKFILL: std::cell::Cell<pg_sys::Oid> = const { std::cell::Cell::new(pg_sys::InvalidOid) };
    static SPECS: RefCell<rustc_hash::FxHashMap<(pg_sys::Oid, pg_sys::Oid), Rc<TableSpec>>> = RefCell::new(Default::default());
    /// Unknown models seen by rows not yet recorded, per subtransaction: (table, model) -> rows.
    static PENDING: RefCell<crate::pg::pending::PerSub<HashMap<(pg_sys::Oid, String), UnpricedRows>>> = RefCell::new(Default::default());
    static WARNED: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
    /// Text datums the trigger writes over and over ('estimated', provider names), allocated once
    /// per backend in TopMemoryContext: heap_modify_tuple copies them into each new tuple.
    static TEXTS: RefCell<rustc_hash::FxHashMap<String, pg_sys::Datum>> = RefCell::new(Default::default());
}

fn text_datum(s: &str) -> pg_sys::Datum {
    if let Some(d) = TEXTS.with(|t| t.borrow().get(s).copied()) {
        return d;
    }
    // SAFETY: switching to TopMemoryContext for one allocation; the datum lives for the backend.
    let d = unsafe {
        pgrx::PgMemoryContexts::TopMemoryContext.switch_to(|_| s.into_datum().expect("text datum"))
    };
    TEXTS.with(|t| t.borrow_mut().insert(s.to_string(), d));
    d
}

/// Runs `f` (the UPDATE of `features::backfill`) with the rows of `root` (a tracked table)
/// priced as if they were being inserted: the cost a row has is the application's (kept, marked
/// provided) unless it is NULL or the column default, whatever the row looked like before.
pub fn backfilling<R>(root: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = BACKFILL.try_with(|b| b.set(pg_sys::InvalidOid));
        }
    }
    BACKFILL.with(|b| b.set(root));
    let _reset = Reset;
    f()
}

fn is_backfill(relid: pg_sys::Oid, rel: pg_sys::Relation) -> bool {
    let b = BACKFILL.with(|b| b.get());
    b != pg_sys::InvalidOid && (b == relid || crate::pg::row::root_of(relid, rel) == b)
}

/// Called by the catalog cache's relcache callback: a table changed shape, forget its mapping.
pub fn forget_table(relid: pg_sys::Oid) {
    crate::features::rollups::forget(relid);
    crate::pg::row::forget_roots();
    let _ = SPECS.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if relid == pg_sys::InvalidOid {
                s.clear();
            } else {
                s.retain(|k, _| k.0 != relid);
            }
        }
    });
}

/// What the cost trigger leaves pending (unknown models), in the transaction's lifecycle
/// (`pg::lifecycle`): recorded before commit, dropped with an aborted (sub)transaction.
pub static LIFECYCLE: crate::pg::lifecycle::Participant = crate::pg::lifecycle::Participant {
    pre_commit: record_left_unpriced,
    end: |_prepared| clear_pending(),
    sub_abort: |my| {
        let _ = PENDING.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                p.take(my);
            }
        });
    },
    sub_commit: |my, parent| {
        let _ = PENDING.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                p.commit(my, parent);
            }
        });
    },
};

/// Unknown models no statement trigger recorded (rows straight into a partition), before commit.
fn record_left_unpriced() {
    let left: Vec<_> = PENDING.with(|p| p.borrow_mut().take_all());
    if left.iter().any(|m| !m.is_empty()) {
        crate::pg::lifecycle::with_snapshot(|| record_unpriced(left.into_iter().flatten()));
    }
}

fn clear_pending() {
    let _ = PENDING.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            p.clear();
        }
    });
}

fn bad_mapping(msg: String) -> ! {
    crate::pg::fail::user(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, msg).raise();
}

unsafe fn find_attr(
    tupdesc: pg_sys::TupleDesc,
    rel: &str,
    name: &str,
) -> (i32, pg_sys::Oid, i32, bool) {
    let td = &*tupdesc;
    for i in 0..td.natts as usize {
        let att = &*td.attrs.as_ptr().add(i);
        if att.attisdropped {
            continue;
        }
        let an = std::ffi::CStr::from_ptr(att.attname.data.as_ptr()).to_string_lossy();
        if an == name {
            return (
                att.attnum as i32,
                att.atttypid,
                att.atttypmod,
                att.attnotnull,
            );
        }
    }
    bad_mapping(format!(
        "llm_cost: column \"{name}\" of \"{rel}\" no longer exists; run llm_cost.track() again"
    ))
}

fn int_kind(t: pg_sys::Oid, rel: &str, name: &str) -> IntKind {
    match t {
        pg_sys::INT2OID => IntKind::I2,
        pg_sys::INT4OID => IntKind::I4,
        pg_sys::INT8OID => IntKind::I8,
        _ => bad_mapping(format!(
            "llm_cost: token column \"{name}\" of \"{rel}\" must be smallint, integer or bigint"
        )),
    }
}

unsafe fn build_spec(rel: pg_sys::Relation, relname: &str, args: &[String]) -> TableSpec {
    let tupdesc = (*rel).rd_att;
    let relname = relname.to_string();
    if args.len() < 10 {
        bad_mapping(format!("llm_cost: trigger on \"{relname}\" has {} arguments, expected 10; run llm_cost.track() again", args.len()));
    }
    let opt = |s: &String| if s.is_empty() { None } else { Some(s.clone()) };
    let plain = |name: &str| {
        let (attno, _, _, _) = find_attr(tupdesc, &relname, name);
        Col {
            attno,
            name: name.to_string(),
            kind: (),
        }
    };
    let int = |name: &str| {
        let (attno, t, _, _) = find_attr(tupdesc, &relname, name);
        Col {
            attno,
            name: name.to_string(),
            kind: int_kind(t, &relname, name),
        }
    };
    let (cost_attno, cost_type, cost_typmod, cost_not_null) =
        find_attr(tupdesc, &relname, &args[5]);
    // Triggers made before 0.9.0 have no unit argument: a numeric cost in USD.
    let unit_scale = args.get(22).and_then(|a| a.parse::<u32>().ok());
    let cost_kind = match (cost_type, unit_scale) {
        (pg_sys::NUMERICOID, _) => CostKind::Numeric(cost_typmod),
        (t, Some(scale)) => CostKind::Int(int_kind(t, &relname, &args[5]), scale),
        _ => bad_mapping(format!(
            "llm_cost: cost column \"{}\" of \"{relname}\" is not numeric and has no unit; run llm_cost.track() again with cost_unit",
            args[5]
        )),
    };
    let time = opt(&args[6]).map(|n| {
        let (attno, t, _, _) = find_attr(tupdesc, &relname, &n);
        let kind = match t {
            pg_sys::TIMESTAMPTZOID => TimeKind::Tstz,
            pg_sys::TIMESTAMPOID => TimeKind::Ts,
            pg_sys::DATEOID => TimeKind::Date,
            _ => bad_mapping(format!("llm_cost: time column \"{n}\" of \"{relname}\" must be timestamptz, timestamp or date")),
        };
        Col { attno, name: n, kind }
    });
    TableSpec {
        model: plain(&args[0]),
        input: opt(&args[1]).map(|n| int(&n)),
        output: opt(&args[2]).map(|n| int(&n)),
        cache_read: opt(&args[3]).map(|n| int(&n)),
        cache_write: opt(&args[4]).map(|n| int(&n)),
        cost: Col {
            attno: cost_attno,
            name: args[5].clone(),
            kind: cost_kind,
        },
        time,
        provider: opt(&args[7]).map(|n| plain(&n)),
        source: opt(&args[8]).map(|n| plain(&n)),
        cost_default: opt(&args[9]),
        cost_not_null,
        // Triggers made before 0.2.0 have no zone argument: UTC.
        zone: args
            .get(10)
            .filter(|z| !z.is_empty() && !z.eq_ignore_ascii_case("UTC"))
            .map(|z| text_datum(z)),
        // Triggers made before 0.3.0 have no service tier, 1-hour cache write or usage column.
        service_tier: args.get(11).and_then(|n| opt(n)).map(|n| plain(&n)),
        cache_write_1h: args.get(12).and_then(|n| opt(n)).map(|n| int(&n)),
        // Triggers made before 0.4.0 have no priced model column.
        priced_model: args.get(14).and_then(|n| opt(n)).map(|n| plain(&n)),
        // Triggers made before 0.9.0 have no priced provider column.
        priced_provider: args.get(23).and_then(|n| opt(n)).map(|n| plain(&n)),
        // Triggers made before 0.8.0 have no modality or search columns.
        extra: std::array::from_fn(|i| args.get(15 + i).and_then(|n| opt(n)).map(|n| int(&n))),
        usage: args.get(13).and_then(|n| opt(n)).map(|n| {
            let (attno, t, _, _) = find_attr(tupdesc, &relname, &n);
            let kind = match t {
                pg_sys::JSONBOID => UsageKind::Jsonb,
                pg_sys::JSONOID => UsageKind::Json,
                _ => bad_mapping(format!(
                    "llm_cost: usage column \"{n}\" of \"{relname}\" must be jsonb or json"
                )),
            };
            Col {
                attno,
                name: n,
                kind,
            }
        }),
    }
}

/// The mapping of a table's cost trigger (`tgoid`), resolved once per backend; the table's name
/// and the trigger's arguments are read only when it is not cached.
pub fn spec_for(
    relid: pg_sys::Oid,
    tgoid: pg_sys::Oid,
    rel: pg_sys::Relation,
    relname: impl FnOnce() -> String,
    args: impl FnOnce() -> Vec<String>,
) -> Rc<TableSpec> {
    let key = (relid, tgoid);
    if let Some(s) = SPECS.with(|s| s.borrow().get(&key).cloned()) {
        return s;
    }
    // SAFETY: `rel` is the open relation the trigger (or COPY) runs on.
    let spec = Rc::new(unsafe { build_spec(rel, &relname(), &args()) });
    SPECS.with(|s| s.borrow_mut().insert(key, spec.clone()));
    spec
}

/// A row's columns, deformed once (heap_getattr would walk the tuple from its start for every
/// column after the first variable-width or NULL one): a trigger's tuple, or COPY's slot.
struct Row<'a> {
    values: &'a [pg_sys::Datum],
    nulls: &'a [bool],
}

impl<'a> Row<'a> {
    /// # Safety
    /// `values` and `nulls` are one row of the table the `TableSpec` was built for, deformed with
    /// that table's tuple descriptor (the trigger's tuple, COPY's slot): each column the spec maps
    /// holds the type `build_spec` checked, and the values stay valid while the row is used.
    unsafe fn new(values: &'a [pg_sys::Datum], nulls: &'a [bool]) -> Row<'a> {
        Row { values, nulls }
    }

    fn datum(&self, attno: i32) -> Option<pg_sys::Datum> {
        let i = usize::try_from(attno - 1).ok()?;
        match self.nulls.get(i) {
            Some(false) => self.values.get(i).copied(),
            _ => None,
        }
    }

    /// A text/varchar/bpchar column (one the spec maps as text) as &str.
    fn text(&self, attno: i32) -> Option<&'a str> {
        self.datum(attno).map(|d| {
            // SAFETY: a text-like datum of this row (`Row::new`); detoasted in the current memory
            // context, which outlives the row's use.
            let bytes = unsafe {
                let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
                std::slice::from_raw_parts(
                    pgrx::varlena::vardata_any(v) as *const u8,
                    pgrx::varlena::varsize_any_exhdr(v),
                )
            };
            std::str::from_utf8(bytes).unwrap_or("")
        })
    }

    fn int(&self, c: &Col<IntKind>) -> Option<i64> {
        self.datum(c.attno).map(|d| match c.kind {
            IntKind::I2 => d.value() as i16 as i64,
            IntKind::I4 => d.value() as i32 as i64,
            IntKind::I8 => d.value() as i64,
        })
    }

    fn time(&self, c: &Col<TimeKind>, zone: Option<pg_sys::Datum>) -> Option<i64> {
        // SAFETY: the column's type is the one `c.kind` names (`Row::new`).
        self.datum(c.attno).map(|d| unsafe {
            match c.kind {
                TimeKind::Tstz => d.value() as i64,
                TimeKind::Ts => crate::pg::row::event_time(d, pg_sys::TIMESTAMPOID, zone),
                TimeKind::Date => crate::pg::row::event_time(d, pg_sys::DATEOID, zone),
            }
        })
    }

    /// The cost column as numeric text (a number of the column's unit).
    fn cost_text(&self, c: &Col<CostKind>) -> Option<String> {
        match c.kind {
            CostKind::Numeric(_) => self
                .datum(c.attno)
                // SAFETY: a numeric datum of this row (`Row::new`).
                .and_then(|d| unsafe { AnyNumeric::from_datum(d, false) })
                .map(|n| n.to_string()),
            CostKind::Int(k, _) => self
                .int(&Col {
                    attno: c.attno,
                    name: String::new(),
                    kind: k,
                })
                .map(|v| v.to_string()),
        }
    }
}

fn negative(col: &str, v: impl std::fmt::Display) -> ! {
    crate::pg::fail::user(
        pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("{col} must not be negative (got {v})"),
    )
    .raise();
}

/// A row's counts from the token columns the table maps (0 for a column it does not map).
fn row_usage(spec: &TableSpec, row: &Row<'_>) -> Usage {
    let x = |i: usize| tokens(row, spec.extra[i].as_ref());
    Usage {
        input: tokens(row, spec.input.as_ref()),
        output: tokens(row, spec.output.as_ref()),
        cache_read: tokens(row, spec.cache_read.as_ref()),
        cache_write: tokens(row, spec.cache_write.as_ref()),
        cache_write_1h: tokens(row, spec.cache_write_1h.as_ref()),
        input_audio: x(0),
        cache_read_audio: x(1),
        output_audio: x(2),
        input_image: x(3),
        cache_read_image: x(4),
        output_image: x(5),
        web_searches: x(6),
    }
}

fn tokens(row: &Row<'_>, c: Option<&Col<IntKind>>) -> i64 {
    let Some(c) = c else { return 0 };
    match row.int(c) {
        None => 0,
        Some(v) if v < 0 => negative(&c.name, v),
        Some(v) => v,
    }
}

/// What the cost trigger calls with each row it priced on INSERT, before returning it: the row's
/// values and nulls as they will be stored, and the cost it computed as (cost attno, 10^-16 USD).
/// Returns whether it took the row (the COPY fast path: `features::copy::fast_path`).
pub type AfterInsertPriced = unsafe fn(
    &pg_sys::TriggerData,
    pg_sys::Oid,
    &[pg_sys::Datum],
    &[bool],
    Option<(i32, i128)>,
) -> bool;

static AFTER_INSERT_PRICED: std::sync::OnceLock<AfterInsertPriced> = std::sync::OnceLock::new();

/// Sets the function the cost trigger hands each row it priced on INSERT to (once, from
/// `_PG_init`): the COPY feature registers itself, so that the trigger does not import it.
pub fn after_insert_priced(f: AfterInsertPriced) {
    let _ = AFTER_INSERT_PRICED.set(f);
}

#[pg_trigger]
fn usage_cost_trigger<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let td = trigger.trigger_data();
    let event = td.tg_event;
    let is_insert = pgrx::trigger_support::trigger_fired_by_insert(event);
    let is_update = pgrx::trigger_support::trigger_fired_by_update(event);
    if !(is_insert || is_update)
        || !pgrx::trigger_support::trigger_fired_for_row(event)
        || !pgrx::trigger_support::trigger_fired_before(event)
    {
        crate::pg::fail::user(pgrx::PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED, "llm_cost.usage_cost_trigger must be a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger").raise();
    }
    let rel = td.tg_relation;
    let relid = trigger.relid().unwrap_or(pg_sys::InvalidOid);
    if crate::pg::privilege::loading_dump(relid) {
        // A restore: the row keeps the cost, source and model it was dumped with.
        // SAFETY: the trigger's relation and tuple, valid for this call.
        let desc = unsafe { pgrx::PgTupleDesc::from_pg_unchecked((*rel).rd_att) };
        let t = if is_insert {
            td.tg_trigtuple
        } else {
            td.tg_newtuple
        };
        // SAFETY: as above.
        return Ok(Some(unsafe { PgHeapTuple::from_heap_tuple(desc, t) }));
    }
    crate::pg::lifecycle::ensure_registered();
    let spec = spec_for(
        relid,
        trigger.trigger().tgoid,
        rel,
        || trigger.table_name().unwrap_or_default(),
        || trigger.extra_args().unwrap_or_default(),
    );
    // SAFETY: the trigger's open relation.
    let tupdesc = unsafe { (*rel).rd_att };
    let new_tuple = if is_insert {
        td.tg_trigtuple
    } else {
        td.tg_newtuple
    };
    // SAFETY: the trigger's tuples, of the relation whose descriptor this is.
    let (mut values, mut nulls) = unsafe { crate::pg::row::deform(new_tuple, tupdesc) };
    let old = if is_update && !is_backfill(relid, rel) {
        // SAFETY: as above.
        Some(unsafe { crate::pg::row::deform(td.tg_trigtuple, tupdesc) })
    } else {
        None
    };
    let (repl, units) = price(
        &spec,
        &|| trigger.table_name().unwrap_or_default(),
        &|| crate::pg::row::root_of(relid, rel),
        // SAFETY: rows of the table the spec was built for, deformed with its descriptor.
        &unsafe { Row::new(&values, &nulls) },
        old.as_ref()
            // SAFETY: as above.
            .map(|(v, n)| unsafe { Row::new(v, n) })
            .as_ref(),
    );
    let changed = !repl.is_empty();
    apply(repl, &mut values, &mut nulls);
    if is_insert {
        // COPY: the rollups take the row from here when that is safe (`features::copy`,
        // registered by lib.rs); otherwise the rollup row trigger will.
        if let Some(hook) = AFTER_INSERT_PRICED.get() {
            // SAFETY: the trigger's data and the row as it will be stored.
            unsafe { hook(td, relid, &values, &nulls, units) };
        }
    }
    let tuple = if !changed {
        new_tuple
    } else {
        // SAFETY: values and nulls have the descriptor's length; the new tuple takes the old
        // one's identity (ctid, self, table) as heap_modify_tuple would give it.
        unsafe {
            let t = pg_sys::heap_form_tuple(tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
            (*(*t).t_data).t_ctid = (*(*new_tuple).t_data).t_ctid;
            (*t).t_self = (*new_tuple).t_self;
            (*t).t_tableOid = (*new_tuple).t_tableOid;
            t
        }
    };
    // SAFETY: the relation's descriptor and a tuple built with it (or the trigger's own).
    let desc = unsafe { pgrx::PgTupleDesc::from_pg_unchecked(tupdesc) };
    // SAFETY: as above.
    Ok(Some(unsafe { PgHeapTuple::from_heap_tuple(desc, tuple) }))
}

/// Prices COPY's row in place (`copy.rs`), as the cost trigger would price it on INSERT.
/// Returns the cost computed in 10^-16 USD when it is stored as is (see `price`).
///
/// # Safety
/// `rel` is the open relation `relid` names, and `values`/`nulls` one row of it deformed with its descriptor (COPY's slot), as `spec` was built for.
pub unsafe fn price_values(
    spec: &TableSpec,
    relname: &str,
    relid: pg_sys::Oid,
    rel: pg_sys::Relation,
    values: &mut [pg_sys::Datum],
    nulls: &mut [bool],
) -> Option<(i32, i128)> {
    let (repl, units) = price(
        spec,
        &|| relname.to_string(),
        &|| crate::pg::row::root_of(relid, rel),
        // SAFETY: the caller's contract (COPY's slot of the tracked table, deformed).
        &unsafe { Row::new(values, nulls) },
        None,
    );
    apply(repl, values, nulls);
    units
}

/// Writes the replaced columns into a row's values (what heap_modify_tuple does).
fn apply(
    repl: Vec<(i32, Option<pg_sys::Datum>)>,
    values: &mut [pg_sys::Datum],
    nulls: &mut [bool],
) {
    for (attno, v) in repl {
        let i = (attno - 1) as usize;
        match v {
            Some(d) => {
                values[i] = d;
                nulls[i] = false;
            }
            None => nulls[i] = true,
        }
    }
}

/// The row's service tier (standard when the table maps none or the value is NULL); an unknown
/// value is 22023, naming the column and the value.
fn row_tier(spec: &TableSpec, row: &Row<'_>) -> ServiceTier {
    let Some(c) = &spec.service_tier else {
        return ServiceTier::Standard;
    };
    match row.text(c.attno) {
        None => ServiceTier::Standard,
        Some(v) => ServiceTier::parse(v).unwrap_or_else(|| {
            crate::pg::fail::user(
                pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("unknown service tier \"{v}\" in column \"{}\"", c.name),
            )
            .detail(
                "Service tiers are standard (also default, auto), batch, flex, priority and fast.",
            )
            .raise();
        }),
    }
}

/// Where a row's counts come from.
enum UsageIn {
    /// The token columns (no usage column, or the row has no usage object and the table maps
    /// token columns).
    Columns,
    /// The usage object.
    Object(Counts),
    /// An error response without usage: a failed call, not billed ($0, estimated).
    Failed,
    /// No usage object and no token columns: the call cannot be priced (stored unpriced).
    Missing,
}

impl UsageIn {
    fn counts(&self) -> Option<&Counts> {
        match self {
            UsageIn::Object(c) => Some(c),
            _ => None,
        }
    }
}

/// The row's usage object read into counts, when the table keeps one and the row has it.
fn row_usage_object(spec: &TableSpec, row: &Row<'_>) -> UsageIn {
    let Some(c) = spec.usage.as_ref() else {
        return UsageIn::Columns;
    };
    let no_columns = spec.input.is_none() && spec.output.is_none();
    let absent = if no_columns {
        UsageIn::Missing
    } else {
        UsageIn::Columns
    };
    let Some(d) = row.datum(c.attno) else {
        return absent;
    };
    let hint = spec.provider.as_ref().and_then(|p| row.text(p.attno));
    match read_usage_column(c, d, hint) {
        Ok(counts) => UsageIn::Object(counts),
        Err(llm_cost_core::usage_json::DocKind::Error) => UsageIn::Failed,
        Err(_) => absent,
    }
}

/// The counts of a call whose usage came in as `u`.
fn usage_from(spec: &TableSpec, row: &Row<'_>, u: &UsageIn) -> Usage {
    match u {
        UsageIn::Object(c) => crate::features::pricing::sql::usage_of(c),
        UsageIn::Columns => row_usage(spec, row),
        UsageIn::Failed | UsageIn::Missing => Usage::ZERO,
    }
}

/// A row's service tier: its tier column's value; without one, the tier its usage object says
/// the call was billed at; else standard.
fn call_tier(spec: &TableSpec, row: &Row<'_>, usage: Option<&Counts>) -> ServiceTier {
    let in_column = spec.service_tier.as_ref().and_then(|c| row.text(c.attno));
    match (in_column, usage.and_then(|c| c.service_tier)) {
        (None, Some(t)) => t,
        _ => row_tier(spec, row),
    }
}

/// Prices a new row (for an UPDATE, against the old one): the columns to replace, and the cost
/// computed as `(cost attno, 10^-16 USD)` when the column stores it as is (no typmod to round
/// to). `relname` (for messages) and `root` (the tracked table, for unknown models) are asked
/// for only when needed. Raises the errors of bad input.
fn price(
    spec: &TableSpec,
    relname: &dyn Fn() -> String,
    root: &dyn Fn() -> pg_sys::Oid,
    new: &Row<'_>,
    old: Option<&Row<'_>>,
) -> (Vec<(i32, Option<pg_sys::Datum>)>, Option<(i32, i128)>) {
    let model = new.text(spec.model.attno);
    let Some(model) = model else {
        crate::pg::fail::user(pgrx::PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION, format!(
                "null value in column \"{}\" of relation \"{}\": llm_cost needs the model name to price a call",
                spec.model.name,
                relname()
            ))
            .raise();
    };
    // The provider's usage object, when the table keeps one: it decides the counts.
    let usage_in = row_usage_object(spec, new);
    let from_usage = usage_in.counts();
    let u = usage_from(spec, new, &usage_in);
    if let Err(e) = u.validate() {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("row of \"{}\": {e}", relname()),
        )
        .raise();
    }
    let at = spec
        .time
        .as_ref()
        .and_then(|c| new.time(c, spec.zone))
        .unwrap_or_else(crate::pg::lifecycle::transaction_start);

    // The host the row names, if any, and the service tier. An UPDATE that changes the model and
    // leaves the provider as it was does not carry the old model's provider over to the new one:
    // the provider is resolved (and filled in) again.
    let mut host = spec
        .provider
        .as_ref()
        .and_then(|c| new.text(c.attno))
        .filter(|p| !p.trim().is_empty());
    let stale_provider = match (old, &spec.provider) {
        (Some(o), Some(pc)) => {
            o.text(spec.model.attno) != Some(model) && o.text(pc.attno) == new.text(pc.attno)
        }
        _ => false,
    };
    if stale_provider {
        host = None;
    }
    let tier = call_tier(spec, new, from_usage);
    // The model, resolved once for the price and the provider.
    let loaded = crate::features::pricing::catalog::catalog();
    let resolved = loaded.resolve_index(model, host);

    // Read: the row (and the row an UPDATE replaces) as the decision needs it.
    let cost_text = new.cost_text(&spec.cost);
    let new_source = spec.source.as_ref().and_then(|c| new.text(c.attno));
    let call = Call {
        model,
        host,
        tier,
        usage: u,
        at,
    };
    let old_cost = old.and_then(|o| o.cost_text(&spec.cost));
    let old_call = || {
        let o = old.expect("an old row");
        // The old row as it was priced: from its usage object when it has one (its counts and
        // tier), else from its columns.
        let old_usage = row_usage_object(spec, o);
        Call {
            model: o.text(spec.model.attno).unwrap_or(""),
            host: spec.provider.as_ref().and_then(|c| o.text(c.attno)),
            tier: call_tier(spec, o, old_usage.counts()),
            usage: usage_from(spec, o, &old_usage),
            at: spec
                .time
                .as_ref()
                .and_then(|c| o.time(c, spec.zone))
                .unwrap_or(at),
        }
    };
    let old_row = old.map(|o| OldRow {
        call: &old_call,
        cost: old_cost.as_deref(),
        source: spec.source.as_ref().and_then(|c| o.text(c.attno)),
    });
    // Decide (llm_cost_core::row): the catalog and the column's rounding come in as functions.
    let new_row = NewRow {
        call,
        cost: cost_text.as_deref(),
        source: new_source,
        reported: from_usage.and_then(|c| c.provided_cost),
    };
    let estimate = |c: &Call| {
        if std::ptr::eq(c, &new_row.call) {
            // The row's own call: a failed one costs nothing; one without usage has no price.
            match usage_in {
                UsageIn::Failed => return Some(Cost::ZERO),
                UsageIn::Missing => return None,
                _ => {}
            }
        }
        let i = if c.model == model && c.host == host {
            resolved
        } else {
            loaded.resolve_index(c.model, c.host)
        };
        i.and_then(|i| loaded.catalog.cost_at(i, c.at, &c.usage, c.tier))
    };
    let outcome = match decide(
        &Table {
            has_source: spec.source.is_some(),
            cost_default: spec.cost_default.as_deref(),
        },
        &new_row,
        old_row.as_ref(),
        &estimate,
        &|c| stored_text(c, spec.cost.kind),
    ) {
        Ok(o) => o,
        Err(Refused::NotFinite(t)) => {
            crate::pg::fail::user(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("{} must be a finite number (got {t})", spec.cost.name))
            .detail("llm_cost refuses NaN and Infinity costs: they would poison every total they are added to.")
            .raise();
        }
        Err(Refused::Negative(t)) => negative(&spec.cost.name, t),
    };

    // Write: the unknown model's bookkeeping, then the columns to replace.
    if matches!(outcome, Outcome::Unpriced) {
        let relname = relname();
        if STRICT.get() {
            crate::pg::fail::user(
                pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "llm_cost.strict is on and model \"{}\" has no price (table \"{relname}\")",
                    llm_cost_core::text::ellipsize(model, llm_cost_core::text::SHOWN)
                ),
            )
            .raise();
        }
        let missing = matches!(usage_in, UsageIn::Missing);
        let first = WARNED.with(|w| {
            w.borrow_mut().insert(if missing {
                String::new()
            } else {
                model.to_string()
            })
        });
        if first && missing {
            ereport!(
                WARNING,
                PgSqlErrorCode::ERRCODE_WARNING,
                format!(
                    "llm_cost: a row of \"{}\" has no usage object (column \"{}\" is NULL) and the table maps no token columns; it is stored unpriced and listed in llm_cost.unpriced_models under its model",
                    relname,
                    spec.usage.as_ref().map_or("", |c| c.name.as_str())
                )
            );
        } else if first {
            ereport!(
                WARNING,
                PgSqlErrorCode::ERRCODE_WARNING,
                format!("llm_cost: no price for model \"{}\"; rows are stored unpriced (cost {}) and listed in llm_cost.unpriced_models", llm_cost_core::text::ellipsize(model, llm_cost_core::text::SHOWN), if spec.cost_not_null { "= column default" } else { "NULL" })
            );
        }
        let relid = root();
        let sub = crate::pg::lifecycle::current_subtransaction();
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            let e = p
                .of(sub)
                .entry((relid, model.to_string()))
                .or_insert(UnpricedRows {
                    rows: 0,
                    first: at,
                    last: at,
                });
            e.rows += 1;
            e.first = e.first.min(at);
            e.last = e.last.max(at);
        });
    }

    // An UPDATE of a row that was stored unpriced (a reprice after a price or alias was added):
    // it no longer counts in llm_cost.unpriced_models (one that stays unpriced was counted again
    // above: net zero).
    if let Some(o) = old {
        let was_unpriced = match &spec.source {
            Some(sc) => o.text(sc.attno) == Some("unpriced"),
            None => match (&old_cost, &spec.cost_default) {
                (None, _) => true,
                (Some(c), Some(d)) => {
                    llm_cost_core::ledger::Num(c) == llm_cost_core::ledger::Num(d)
                }
                _ => false,
            },
        };
        if was_unpriced {
            let old_model = o.text(spec.model.attno).unwrap_or("").to_string();
            let old_at = spec
                .time
                .as_ref()
                .and_then(|c| o.time(c, spec.zone))
                .unwrap_or(at);
            let relid = root();
            let sub = crate::pg::lifecycle::current_subtransaction();
            PENDING.with(|p| {
                let mut p = p.borrow_mut();
                let e = p.of(sub).entry((relid, old_model)).or_insert(UnpricedRows {
                    rows: 0,
                    first: old_at,
                    last: old_at,
                });
                e.rows -= 1;
            });
        }
    }

    // Columns to replace.
    let mut repl: Vec<(i32, Option<pg_sys::Datum>)> = Vec::with_capacity(3);
    match outcome {
        Outcome::Keep | Outcome::Provided => {}
        Outcome::Reported(c) | Outcome::Estimated(c) => {
            repl.push((spec.cost.attno, Some(cost_datum(&spec.cost, c))))
        }
        Outcome::Unpriced => {
            if spec.cost_not_null {
                match &spec.cost_default {
                    Some(d) => repl.push((spec.cost.attno, Some(default_datum(&spec.cost, d)))),
                    None => {} // keep whatever the row has; NOT NULL will complain if it is NULL
                }
            } else {
                repl.push((spec.cost.attno, None));
            }
        }
    }
    if let Some(sc) = &spec.source {
        let want = outcome.source();
        if new_source != Some(want) {
            repl.push((sc.attno, Some(text_datum(want))));
        }
    }
    if let Some(pc) = &spec.provider {
        let cur = new.text(pc.attno);
        if stale_provider || cur.is_none_or(|s| s.trim().is_empty()) {
            let provider = match resolved {
                Some(i) => Some(text_datum(&loaded.catalog.model(i).provider)),
                None => llm_cost_core::catalog::guess_provider(model).map(text_datum),
            };
            if let Some(p) = provider {
                repl.push((pc.attno, Some(p)));
            }
        }
    }

    if let Some(pp) = &spec.priced_provider {
        // The host the row names, as the providers table names it; else the model's provider.
        // (catalog ids are few: their datums are made once per backend; another host's value
        // is lowered per row)
        let cur = new.text(pp.attno);
        let known: Option<&str> = match host {
            Some(h) => loaded
                .catalog
                .provider_named(h)
                .map(|i| loaded.catalog.provider_id(i)),
            None => match resolved {
                Some(i) => Some(loaded.catalog.model(i).provider),
                None => llm_cost_core::catalog::guess_provider(model),
            },
        };
        match (known, host) {
            (Some(k), _) => {
                if cur != Some(k) {
                    repl.push((pp.attno, Some(text_datum(k))));
                }
            }
            (None, Some(h)) => {
                let lowered = h.trim().to_ascii_lowercase();
                if cur != Some(lowered.as_str()) {
                    repl.push((pp.attno, lowered.into_datum()));
                }
            }
            (None, None) => {
                if cur.is_some() {
                    repl.push((pp.attno, None));
                }
            }
        }
    }

    if let Some(pm) = &spec.priced_model {
        // The catalog model (bounded: kept as a datum per backend); an unknown name as sent.
        let cur = new.text(pm.attno);
        match resolved {
            Some(i) => {
                let m = loaded.catalog.model(loaded.reported_model(i)).model;
                if cur != Some(m) {
                    repl.push((pm.attno, Some(text_datum(m))));
                }
            }
            None => {
                if cur != Some(model) {
                    repl.push((pm.attno, model.into_datum()));
                }
            }
        }
    }

    // The cost as stored, in 10^-16 USD, when we just computed it (a typmod would round it).
    let units = match (&outcome, spec.cost.kind) {
        (Outcome::Estimated(c) | Outcome::Reported(c), CostKind::Numeric(t)) if t < 0 => {
            Some((spec.cost.attno, c.0))
        }
        (Outcome::Estimated(c) | Outcome::Reported(c), CostKind::Int(_, scale)) => {
            Cost::from_unit(c.in_unit(scale), scale).map(|u| (spec.cost.attno, u.0))
        }
        _ => None,
    };
    // The counts read from the usage object go into the token columns the table maps.
    if let Some(c) = from_usage {
        for (col, v) in [
            (spec.input.as_ref(), c.input),
            (spec.output.as_ref(), c.output),
            (spec.cache_read.as_ref(), c.cache_read),
            (spec.cache_write.as_ref(), c.cache_write_5m),
            (spec.cache_write_1h.as_ref(), c.cache_write_1h),
            (spec.extra[0].as_ref(), c.input_audio),
            (spec.extra[1].as_ref(), c.cache_read_audio),
            (spec.extra[2].as_ref(), c.output_audio),
            (spec.extra[3].as_ref(), c.input_image),
            (spec.extra[4].as_ref(), c.cache_read_image),
            (spec.extra[5].as_ref(), c.output_image),
            (spec.extra[6].as_ref(), c.web_searches),
        ] {
            if let Some(col) = col {
                if new.int(col) != Some(v) {
                    repl.push((col.attno, Some(int_datum(col, v))));
                }
            }
        }
    }
    (repl, units)
}

/// A token count as a Datum of the column's integer type; 22003 when it does not fit.
fn int_datum(c: &Col<IntKind>, v: i64) -> pg_sys::Datum {
    int_value(c.kind, v).unwrap_or_else(|| {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            format!(
                "{} from the usage object ({v}) does not fit column \"{}\"",
                c.name, c.name
            ),
        )
        .raise()
    })
}

/// `v` as a Datum of an integer type, None when it does not fit.
fn int_value(kind: IntKind, v: i64) -> Option<pg_sys::Datum> {
    let fits = match kind {
        IntKind::I2 => i16::try_from(v).is_ok(),
        IntKind::I4 => i32::try_from(v).is_ok(),
        IntKind::I8 => true,
    };
    if !fits {
        return None;
    }
    Some(match kind {
        IntKind::I2 => pg_sys::Datum::from(v as i16),
        IntKind::I4 => pg_sys::Datum::from(v as i32),
        IntKind::I8 => pg_sys::Datum::from(v),
    })
}

/// A row's usage object read into counts (Err: an error response or JSON null, what
/// `usage_json::kind` says); 22023 naming the column and the JSON path for a bad one.
fn read_usage_column(
    c: &Col<UsageKind>,
    d: pg_sys::Datum,
    provider: Option<&str>,
) -> Result<llm_cost_core::usage_json::Counts, llm_cost_core::usage_json::DocKind> {
    use llm_cost_core::usage_json::{kind, DocKind};
    let r = match c.kind {
        UsageKind::Jsonb => {
            // SAFETY: a jsonb datum (the column's type, checked by build_spec).
            let doc = unsafe { crate::pg::jsonb::JsonbDoc::from_datum(d) };
            match kind(&doc) {
                DocKind::Usage => llm_cost_core::usage_json::parse(&doc, provider),
                k => return Err(k),
            }
        }
        UsageKind::Json => {
            // SAFETY: a json datum (a varlena of text), detoasted in the current context.
            let text = unsafe {
                let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
                std::str::from_utf8(std::slice::from_raw_parts(
                    pgrx::varlena::vardata_any(v) as *const u8,
                    pgrx::varlena::varsize_any_exhdr(v),
                ))
                .unwrap_or("")
            };
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v) => match kind(&v) {
                    DocKind::Usage => llm_cost_core::usage_json::parse(&v, provider),
                    k => return Err(k),
                },
                Err(e) => Err(llm_cost_core::usage_json::UsageError {
                    path: "$".into(),
                    message: e.to_string(),
                }),
            }
        }
    };
    Ok(r.unwrap_or_else(|e| {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("column \"{}\": usage object: {e}", c.name),
        )
        .raise();
    }))
}

/// A cost as the cost column stores it: numeric rounded to its typmod, or a whole number of
/// its unit (rounded half up); 22003 when it does not fit an integer column.
fn cost_datum(c: &Col<CostKind>, cost: Cost) -> pg_sys::Datum {
    match c.kind {
        CostKind::Numeric(typmod) => crate::pg::money::cost_datum(cost, typmod),
        CostKind::Int(k, scale) => {
            let v = cost.in_unit(scale);
            i64::try_from(v)
                .ok()
                .and_then(|v| int_value(k, v))
                .unwrap_or_else(|| {
                    crate::pg::fail::user(
                        pgrx::PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                        format!("a cost of {v} units does not fit column \"{}\"", c.name),
                    )
                    .hint("Widen the column (ALTER TABLE ... ALTER COLUMN ... TYPE bigint).")
                    .raise()
                })
        }
    }
}

/// The cost column's default (numeric text) as a datum of the column.
fn default_datum(c: &Col<CostKind>, text: &str) -> pg_sys::Datum {
    match c.kind {
        CostKind::Numeric(typmod) => numeric_datum(text, typmod),
        // (the default of an integer column is an integer of its type)
        CostKind::Int(k, _) => {
            int_value(k, text.trim().parse::<i64>().unwrap_or(0)).unwrap_or(pg_sys::Datum::from(0))
        }
    }
}

/// A cost as its column would store it, as numeric text (to tell our estimate from a provided
/// cost).
fn stored_text(c: Cost, kind: CostKind) -> String {
    match kind {
        CostKind::Numeric(typmod) => round_to_typmod_text(c, typmod),
        CostKind::Int(_, scale) => c.in_unit(scale).to_string(),
    }
}

fn numeric_datum(text: &str, typmod: i32) -> pg_sys::Datum {
    match AnyNumeric::try_from(text) {
        Ok(n) => apply_typmod(n, typmod),
        Err(e) => crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!("llm_cost: bad numeric {text}: {e}"),
        )
        .raise(),
    }
}

fn apply_typmod(n: AnyNumeric, typmod: i32) -> pg_sys::Datum {
    let d = n.into_datum().expect("numeric datum");
    if typmod < 0 {
        d
    } else {
        // SAFETY: numeric(numeric, typmod), called with a numeric and an int4 typmod.
        unsafe {
            pgrx::direct_function_call_as_datum(
                pg_sys::numeric,
                &[Some(d), Some(pg_sys::Datum::from(typmod))],
            )
        }
        .unwrap_or(d)
    }
}

fn round_to_typmod_text(c: Cost, typmod: i32) -> String {
    let d = crate::pg::money::cost_datum(c, typmod);
    // SAFETY: cost_datum builds a numeric datum.
    unsafe { AnyNumeric::from_datum(d, false) }
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// Adds rows stored unpriced to `llm_cost.unpriced_models`.
fn record_unpriced(pending: impl Iterator<Item = ((pg_sys::Oid, String), UnpricedRows)>) {
    for ((relid, model), u) in pending {
        let first = pgrx::datum::TimestampWithTimeZone::try_from(u.first).ok();
        let last = pgrx::datum::TimestampWithTimeZone::try_from(u.last).ok();
        // Bookkeeping of llm_cost's own: as the extension's owner, through a function nobody
        // else may execute (a writer of the table need not own it).
        crate::pg::privilege::as_extension_owner(|| {
            spi::run_with_args(
                "SELECT llm_cost._record_unpriced($1, $2, $3, $4, $5)",
                &[
                    relid.into(),
                    // Counted under the bounded key rollups use for long names (a btree key
                    // has a size limit; the rows keep the full name).
                    crate::pg::row::bounded_str(&model).into(),
                    u.rows.into(),
                    first.into(),
                    last.into(),
                ],
            )
            .unwrap_or_else(|e| {
                crate::pg::fail::internal(format!("llm_cost: could not record unpriced rows: {e}"))
            })
        });
    }
}

/// Statement trigger: records the unknown models the statement's rows used, in the same
/// transaction, one row per (table, model) instead of one per row.
#[pg_trigger]
fn usage_statement_end<'a>(
    _trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::PgTriggerError> {
    crate::features::rollups::flush();
    let sub = crate::pg::lifecycle::current_subtransaction();
    let pending = PENDING.with(|p| p.borrow_mut().take(sub));
    record_unpriced(pending.into_iter().flatten());
    Ok(None)
}

// The cost trigger's SQL surface is tested as SQL: tests/sql/cost_trigger.sql (estimated and
// provided costs, multi-row statements, unknown models, strict mode, bad input, UPDATEs),
// usage_column.sql (usage objects), track.sql (track()'s checks, quoted names, a NOT NULL cost
// column with a default, dropping a tracked table) and time_zones.sql.
