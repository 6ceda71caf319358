//! Pending sums: each row added to (or taken from) the sums of its periods and group, in backend
//! memory, per subtransaction (`pg::pending::PerSub`), until `flush` writes them.

use super::defs::{defs_for, Att, SourceDefs};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    /// Pending sums per subtransaction that saw the rows, by entry key.
    pub(super) static PENDING: RefCell<crate::pg::pending::PerSub<Sums>> = RefCell::new(Default::default());
    /// add_row's key buffer.
    static KEY: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(128));
    /// Rows this backend added to rollups by the COPY paths and by the row trigger.
    static PATHS: std::cell::Cell<(i64, i64)> = const { std::cell::Cell::new((0, 0)) };
}

/// Estimates a call by model name, usage and event time (10^-16 USD): the price catalog's, set
/// once from `_PG_init` (rollups do not import the pricing feature, which imports them).
pub type Estimator =
    fn(&str, &llm_cost_core::pricing::Usage, i64) -> Option<llm_cost_core::pricing::Cost>;

static ESTIMATOR: std::sync::OnceLock<Estimator> = std::sync::OnceLock::new();

/// Sets how rollups estimate a row whose table has no cost_source column (to tell a default cost
/// from a free call): `lib.rs` hands them the catalog's.
pub fn estimate_with(f: Estimator) {
    let _ = ESTIMATOR.set(f);
}

/// Rows this backend added to rollups: (through the COPY paths, through the row trigger).
pub fn paths() -> (i64, i64) {
    PATHS.with(|p| p.get())
}

/// One more row added by the row trigger.
pub(super) fn count_trigger_row() {
    PATHS.with(|p| p.set((p.get().0, p.get().1 + 1)));
}

/// An exact sum of costs: in 10^-16 USD while every cost fits that scale (always, for estimated
/// costs), plus a numeric sum (TopTransactionContext) of the costs with more decimals, if any.
#[derive(Clone, Default)]
pub(super) struct Exact {
    pub(super) units: i128,
    pub(super) extra: Option<pg_sys::Datum>,
}

impl Exact {
    fn add_units(&mut self, u: i128) {
        self.units = self.units.checked_add(u).unwrap_or_else(|| out_of_range());
    }

    /// Adds a numeric cost exactly (kept in TopTransactionContext).
    fn add_numeric(&mut self, c: pg_sys::Datum) {
        // SAFETY: numeric datums, copied or added in TopTransactionContext so they live until the sums are written.
        self.extra = Some(unsafe {
            pgrx::PgMemoryContexts::TopTransactionContext.switch_to(|_| match self.extra {
                None => datum_copy(c, false, -1),
                Some(prev) => {
                    pgrx::direct_function_call_as_datum(pg_sys::numeric_add, &[Some(prev), Some(c)])
                        .unwrap_or(prev)
                }
            })
        });
    }

    fn merge(&mut self, o: &Exact) {
        self.add_units(o.units);
        if let Some(extra) = o.extra {
            self.add_numeric(extra);
        }
    }

    fn is_zero(&self) -> bool {
        self.units == 0 && self.extra.is_none()
    }

    /// The sum as numeric (in the current memory context).
    pub(super) fn datum(&self) -> pg_sys::Datum {
        let d = crate::pg::money::cost_datum(llm_cost_core::pricing::Cost(self.units), -1);
        match self.extra {
            // SAFETY: numeric_add of two numeric datums.
            Some(extra) => unsafe {
                pgrx::direct_function_call_as_datum(pg_sys::numeric_add, &[Some(d), Some(extra)])
            }
            .unwrap_or(d),
            None => d,
        }
    }
}

/// Sums of a set of rows.
#[derive(Clone)]
pub(super) struct Sum {
    pub(super) requests: i64,
    pub(super) tokens: [i64; 4],
    pub(super) cost: Exact,
    pub(super) unpriced: i64,
    pub(super) errors: i64,
    pub(super) latency_sum: i64,
    pub(super) latency_max: Option<i64>,
    pub(super) first: i64,
    pub(super) last: i64,
    /// Of the priced rows, at list price (10^-16 USD): what their cache reads saved, what their
    /// cache writes cost extra (`llm_cost_core::ledger::cache_effects`).
    pub(super) cache_savings: i128,
    pub(super) cache_write_extra: i128,
    /// The cost of the rows with an error.
    pub(super) error_cost: Exact,
    /// Rows with a provided cost and a list price: how many, their cost, their list estimate.
    pub(super) provided: i64,
    pub(super) provided_cost: Exact,
    pub(super) provided_list: i128,
    /// The priced rows' costs (`llm_cost_core::hist`) and the largest one (10^-16 USD).
    pub(super) hist: Vec<(u16, i64)>,
    pub(super) max_cost: Option<i128>,
}

/// Pending sums, for the running statement, of the rows of one source that share every rollup's
/// period and every column any of its rollups groups by. Each rollup's (period, group) is a
/// projection of it, made when the sums are written: a row costs one hash lookup however many
/// rollups its source has.
pub(super) struct Acc {
    pub(super) defs: Rc<SourceDefs>,
    /// Period start per rollup (as `defs.rollups`).
    pub(super) periods: Vec<i64>,
    /// Values of `defs.union`, copied into TopTransactionContext.
    pub(super) group: Vec<Option<pg_sys::Datum>>,
    pub(super) sum: Sum,
}

pub(super) type Sums = HashMap<Vec<u8>, Acc, rustc_hash::FxBuildHasher>;

impl crate::pg::pending::Merge for Acc {
    fn merge(&mut self, other: Acc) {
        self.sum.merge(&other.sum);
    }
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

/// A row's columns, deformed once (values and nulls arrays, all columns; reading them one by one
/// with heap_getattr walks the tuple from its start for every column after the first
/// variable-width or NULL one).
pub(super) struct Borrowed<'a> {
    pub(super) values: &'a [pg_sys::Datum],
    pub(super) nulls: &'a [bool],
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

pub(super) fn int_of(d: pg_sys::Datum, a: Att) -> i64 {
    match a.typid {
        pg_sys::INT2OID => d.value() as i16 as i64,
        pg_sys::INT4OID => d.value() as i32 as i64,
        _ => d.value() as i64,
    }
}

pub(super) fn time_of(d: pg_sys::Datum, a: Att, zone: Option<pg_sys::Datum>) -> i64 {
    // SAFETY: the column's type is a's (the definitions are of this relation).
    unsafe { crate::pg::row::event_time(d, a.typid, zone) }
}

/// A group value as a rollup keys it: text and unbounded varchar values bounded as
/// `pg::row::bounded_text` says (the same rule as `llm_cost._rollup_select`).
///
/// # Safety
/// `row` is a row of the relation `g` describes.
pub(super) unsafe fn group_value(row: &Borrowed, g: Att) -> Option<pg_sys::Datum> {
    let d = row.get(Some(g))?;
    // text, or varchar without a length (a varchar(n) value is short by declaration).
    if g.len != -1
        || !(g.typid == pg_sys::TEXTOID || (g.typid == pg_sys::VARCHAROID && g.typmod < 0))
    {
        return Some(d);
    }
    Some(crate::pg::row::bounded_text(d))
}

/// Appends a datum's identity to a group key: byte-equal values land in one group (values that
/// are equal but spelled differently meet again in the upsert).
///
/// # Safety
/// `d`, when given, is a Datum of the attribute `a` describes.
pub(super) unsafe fn key_bytes(key: &mut Vec<u8>, d: Option<pg_sys::Datum>, a: Att) {
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
///
/// # Safety
/// `d` is a Datum of a type with that byval and len (-1 varlena, -2 cstring).
pub(super) unsafe fn datum_copy(d: pg_sys::Datum, byval: bool, len: i16) -> pg_sys::Datum {
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

/// # Safety
/// `d` is a Datum of the attribute `a` describes; called inside a transaction.
pub(super) unsafe fn copy_to_xact(d: pg_sys::Datum, a: Att) -> pg_sys::Datum {
    pgrx::PgMemoryContexts::TopTransactionContext.switch_to(|_| datum_copy(d, a.byval, a.len))
}

/// Adds a row (`sign` 1) or takes it away (-1). `units`: the row's cost in 10^-16 USD when the
/// caller already knows it (the cost trigger, which has just computed it), else read from the row.
///
/// # Safety
/// `row` is a row of the relation `defs` were loaded for (same attribute numbers and types), inside a transaction.
pub(super) unsafe fn add_row(
    defs: &Rc<SourceDefs>,
    row: &Borrowed,
    sign: i64,
    units: Option<i128>,
) {
    let ts = row
        .get(defs.time)
        .map(|d| time_of(d, defs.time.unwrap(), defs.zone))
        .unwrap_or_else(|| pg_sys::GetCurrentTransactionStartTimestamp());
    let tokens = defs
        .tokens
        .map(|a| row.get(a).map(|d| int_of(d, a.unwrap())).unwrap_or(0));
    let cost = row.get(defs.cost);
    let cost_units = match (cost, defs.cost_scale, defs.cost) {
        (None, _, _) => None,
        // An integer cost column in its unit: exact in 10^-16 USD.
        (Some(c), Some(scale), Some(a)) => units.or_else(|| {
            llm_cost_core::pricing::Cost::from_unit(int_of(c, a) as i128, scale).map(|c| c.0)
        }),
        (Some(c), _, _) => units.or_else(|| crate::pg::money::numeric_units(c)),
    };
    if cost_units.is_none() && defs.cost_scale.is_none() {
        if let Some(c) = cost {
            if crate::pg::money::numeric_special(c) {
                crate::pg::fail::user(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "llm_cost: a cost must be a finite number; NaN and Infinity cannot be added to a rollup")
            .raise();
            }
        }
    }
    // The one rule (`llm_cost_core::ledger`): the cost_source column says it; without one, the
    // cost does (NULL, or the column default unless it is exactly the row's estimate).
    let source = defs.cost_source.map(|a| {
        row.get(Some(a)).map(|d| {
            let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
            std::slice::from_raw_parts(
                pgrx::varlena::vardata_any(v) as *const u8,
                pgrx::varlena::varsize_any_exhdr(v),
            )
        })
    });
    let source_text = source.map(|v| v.map(|b| std::str::from_utf8(b).unwrap_or("")));
    // The row's list price (by model name, its four token counts, its time), asked for at most
    // once: the rule that classifies its cost, the cache's effect and a provided cost's list
    // price all start from it.
    let usage = usage_of(&tokens);
    let model_name = model_of(defs, row);
    let estimate = |u: &llm_cost_core::pricing::Usage| {
        let e = ESTIMATOR.get()?;
        e(model_name?, u, ts)
    };
    let list = std::cell::OnceCell::new();
    let list_price = || *list.get_or_init(|| estimate(&usage));
    let stored = llm_cost_core::ledger::stored(
        source_text,
        cost.map(|_| cost_units).as_ref(),
        defs.cost_default.map(Some).as_ref(),
        || list_price().and_then(|c| as_stored(defs, c)).map(Some),
    );
    let unpriced = stored == llm_cost_core::ledger::Stored::Unpriced;
    let provided = stored == llm_cost_core::ledger::Stored::Provided;
    // At list price: the cache's effect on a priced row, the estimate of a row whose cost was
    // provided.
    let (cache_savings, cache_write_extra) = if unpriced || model_name.is_none() {
        (0, 0)
    } else {
        llm_cost_core::ledger::cache_effects(&usage, |u| {
            if *u == usage {
                list_price()
            } else {
                estimate(u)
            }
        })
    };
    let provided_list = if provided { list_price() } else { None };
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
            // The row's cost into an exact sum: its 10^-16 USD, or as numeric when it has more
            // decimals (rare: a provided cost).
            let add_cost = |to: &mut Exact| {
                if let Some(units) = cost_units {
                    to.add_units(sign as i128 * units);
                } else if let Some(c) = cost {
                    let c = if sign < 0 {
                        pgrx::direct_function_call_as_datum(pg_sys::numeric_uminus, &[Some(c)])
                            .unwrap_or(c)
                    } else {
                        c
                    };
                    to.add_numeric(c);
                }
            };
            add_cost(&mut s.cost);
            if unpriced {
                add_i64(&mut s.unpriced, sign);
            }
            if error {
                add_i64(&mut s.errors, sign);
                add_cost(&mut s.error_cost);
            }
            if let Some(l) = latency {
                add_i64(&mut s.latency_sum, sign * l);
                if sign > 0 {
                    s.latency_max = Some(s.latency_max.map_or(l, |m| m.max(l)));
                }
            }
            s.cache_savings = add_i128(s.cache_savings, sign as i128 * cache_savings);
            s.cache_write_extra = add_i128(s.cache_write_extra, sign as i128 * cache_write_extra);
            if let Some(b) = cost_units
                .filter(|_| !unpriced)
                .and_then(super::hist::units_bucket)
            {
                llm_cost_core::hist::add(&mut s.hist, b, sign).unwrap_or_else(|| out_of_range());
                if sign > 0 {
                    let u = cost_units.unwrap_or(0);
                    s.max_cost = Some(s.max_cost.map_or(u, |m| m.max(u)));
                }
            }
            if let Some(list) = provided_list {
                add_i64(&mut s.provided, sign);
                add_cost(&mut s.provided_cost);
                s.provided_list = add_i128(s.provided_list, sign as i128 * list.0);
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

/// A row's estimate as its cost column stores it (rounded to its typmod, or to whole units), in
/// 10^-16 USD: None when the value has more decimals. (By model name alone: in a table without
/// a cost_source column whose rows also name a provider or service tier, an estimate at another
/// host's price reads as provided here.)
pub(super) fn as_stored(defs: &SourceDefs, c: llm_cost_core::pricing::Cost) -> Option<i128> {
    match defs.cost_scale {
        // An integer cost column stores whole units, rounded as the cost trigger rounds them.
        Some(scale) => {
            llm_cost_core::pricing::Cost::from_unit(c.in_unit(scale), scale).map(|c| c.0)
        }
        None => {
            let typmod = defs.cost.map_or(-1, |a| a.typmod);
            // SAFETY: cost_datum builds a numeric datum, read at once.
            unsafe { crate::pg::money::numeric_units(crate::pg::money::cost_datum(c, typmod)) }
        }
    }
}

/// The usage the rollups price a row by: its four token counts.
fn usage_of(tokens: &[i64; 4]) -> llm_cost_core::pricing::Usage {
    llm_cost_core::pricing::Usage {
        input: tokens[0],
        output: tokens[1],
        cache_read: tokens[2],
        cache_write: tokens[3],
        ..llm_cost_core::pricing::Usage::ZERO
    }
}

/// The row's model name (None: NULL or no model column).
///
/// # Safety
/// as `add_row`.
unsafe fn model_of<'a>(defs: &SourceDefs, row: &Borrowed<'a>) -> Option<&'a str> {
    let model = row.get(defs.model)?;
    let v = pg_sys::pg_detoast_datum_packed(model.cast_mut_ptr());
    let b = std::slice::from_raw_parts(
        pgrx::varlena::vardata_any(v) as *const u8,
        pgrx::varlena::varsize_any_exhdr(v),
    );
    Some(std::str::from_utf8(b).unwrap_or(""))
}

/// A sum the stripes table could not hold either (bigint): the statement fails, as the stripe
/// write would (release builds do not check overflow: wrapping would store a wrong total).
pub(super) fn out_of_range() -> ! {
    crate::pg::fail::user(
        pgrx::PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        "llm_cost: a rollup sum is out of range for bigint",
    )
    .raise();
}

pub(super) fn add_i64(a: &mut i64, b: i64) {
    *a = a.checked_add(b).unwrap_or_else(|| out_of_range());
}

fn add_i128(a: i128, b: i128) -> i128 {
    a.checked_add(b).unwrap_or_else(|| out_of_range())
}

impl Sum {
    fn starting_at(ts: i64) -> Sum {
        Sum {
            requests: 0,
            tokens: [0; 4],
            cost: Exact::default(),
            unpriced: 0,
            errors: 0,
            latency_sum: 0,
            latency_max: None,
            first: ts,
            last: ts,
            cache_savings: 0,
            cache_write_extra: 0,
            error_cost: Exact::default(),
            provided: 0,
            provided_cost: Exact::default(),
            provided_list: 0,
            hist: Vec::new(),
            max_cost: None,
        }
    }

    /// Nothing to add (an UPDATE that moved nothing).
    pub(super) fn is_zero(&self) -> bool {
        self.requests == 0
            && self.cost.is_zero()
            && self.tokens == [0; 4]
            && self.unpriced == 0
            && self.errors == 0
            && self.latency_sum == 0
            && self.cache_savings == 0
            && self.cache_write_extra == 0
            && self.error_cost.is_zero()
            && self.provided == 0
            && self.provided_cost.is_zero()
            && self.provided_list == 0
            && self.hist.is_empty()
    }

    /// Adds the sums of other rows.
    pub(super) fn merge(&mut self, o: &Sum) {
        add_i64(&mut self.requests, o.requests);
        for k in 0..4 {
            add_i64(&mut self.tokens[k], o.tokens[k]);
        }
        self.cost.merge(&o.cost);
        add_i64(&mut self.unpriced, o.unpriced);
        add_i64(&mut self.errors, o.errors);
        add_i64(&mut self.latency_sum, o.latency_sum);
        self.latency_max = match (self.latency_max, o.latency_max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
        self.cache_savings = add_i128(self.cache_savings, o.cache_savings);
        self.cache_write_extra = add_i128(self.cache_write_extra, o.cache_write_extra);
        self.error_cost.merge(&o.error_cost);
        add_i64(&mut self.provided, o.provided);
        self.provided_cost.merge(&o.provided_cost);
        self.provided_list = add_i128(self.provided_list, o.provided_list);
        llm_cost_core::hist::merge(&mut self.hist, &o.hist).unwrap_or_else(|| out_of_range());
        self.max_cost = match (self.max_cost, o.max_cost) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The rollups of a source, as the COPY path (`copy.rs`) holds them for a statement.
pub type Defs = Rc<SourceDefs>;

/// The rollups a COPY into `rel` can feed from its rows as read (before generated columns are
/// computed): None when it has none or one reads a generated column.
pub fn copy_defs(relid: pg_sys::Oid, rel: pg_sys::Relation) -> Option<Defs> {
    let defs = defs_for(relid, rel);
    (!defs.is_empty() && !defs.reads_generated()).then_some(defs)
}

/// The rollups of a source (or of the partition `rel`), as cached in this backend.
pub fn defs_of(relid: pg_sys::Oid, rel: pg_sys::Relation) -> Defs {
    super::defs::defs_for(relid, rel)
}

/// Adds a row COPY is about to store (both COPY paths): `units` is the cost the caller just
/// computed, as (cost attno, 10^-16 USD), used when it is the column the rollups read.
///
/// # Safety
/// `values`/`nulls` are a row of the relation `defs` were loaded for, as COPY will store it, inside COPY's transaction.
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
