//! Budgets (feature, on top of rollups): spend limits per rollup group and period, alerts
//! exactly once when spend crosses a threshold, and the pre-flight `check_budget`.
//!
//! Spend is the rollup's exact cost (its stripes). The rollup writer remembers which budgeted
//! (period, group)s a transaction added to (`rollups::take_written`); just before the
//! transaction commits (`LIFECYCLE`, after the rollup sums are written), each group's spend is
//! read with a *fresh* snapshot (every committed transaction and ours), without a lock. A
//! threshold reached and not yet alerted is recorded under the group's lock (an advisory-type
//! lock of llm_cost's own, field4 = `LOCK_SPACE`, taken in key order, held to the end of the
//! transaction): with it the spend is read again with a new snapshot, which sees the alerts of
//! every transaction that held the lock before, and the alert goes into
//! `llm_cost.budget_alerts` (unique per budget, group, period and threshold) with NOTIFY
//! `llm_cost_budget`, delivered when we commit; a rollback takes both away.
//!
//! Writers of one group that commit together each see only their own spend and the committed
//! spend; a crossing only their sum makes is recorded by the background worker's pass
//! (`_budget_sweep`, every naptime) or by the group's next writer.
//!
//! Thresholds already alerted in this backend are remembered, so a group past all its
//! thresholds costs no read. Definitions are cached per backend and dropped when
//! `llm_cost.budgets`, `budget_limits`, `rollups`, `row_security` or a budgeted stripes table
//! changes.

use crate::features::rollups::stripes::Layout;
use crate::pg::spi;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// `locktag_field4` of llm_cost's budget locks (pg_advisory_* use 1 and 2).
const LOCK_SPACE: u16 = 0x4c43;

/// One threshold of one group's limit.
#[derive(Clone)]
struct Amount {
    /// The threshold, as numeric text.
    threshold: String,
    /// threshold * limit in 10^-16 USD, rounded up (spend in whole units reaches it exactly when
    /// it is at least this).
    units: Option<i128>,
    /// threshold * limit, exact numeric text.
    exact: String,
}

#[derive(Clone)]
struct Limit {
    limit: String,
    amounts: Vec<Amount>,
}

struct Budget {
    id: i64,
    name: String,
    rollup: pg_sys::Oid,
    source: Option<pg_sys::Oid>,
    hard: bool,
    grain: String,
    zone: String,
    group_cols: Vec<String>,
    /// Type input function, its parameter and the typmod of each group column (check_budget).
    group_input: Vec<(pg_sys::Oid, pg_sys::Oid, i32)>,
    /// Group column index and the value (as text) it must have.
    filter: Vec<(usize, Option<String>)>,
    default: Limit,
    overrides: HashMap<Vec<Option<String>>, Limit>,
    layout: Rc<Layout>,
    /// The group column that row security on the rollup compares with the reader.
    owner_column: Option<usize>,
    /// The current period [start, end) as last computed.
    period: Cell<(i64, i64)>,
    /// Its sums are a Citus distributed table (their shards are on the workers).
    distributed: bool,
    /// SQL type of each group column (reading a distributed rollup's sums).
    group_types: Vec<String>,
    /// Alert a group on track to exceed its limit (`projection_due`).
    projection: bool,
}

/// The spend of one group in one period (the sum over its stripes). The sums of a rollup of a
/// Citus distributed table are on the workers: those are asked through Citus, as the rollup's
/// owner, with the statement's own snapshot on each node.
unsafe fn spent_of(
    b: &Budget,
    period: i64,
    datums: &[Option<pg_sys::Datum>],
    group: &[Option<String>],
    snapshot: pg_sys::Snapshot,
) -> pg_sys::Datum {
    if !b.distributed {
        return crate::features::rollups::stripes::group_cost(&b.layout, period, datums, snapshot);
    }
    let stripes = crate::pg::privilege::relname(b.layout.stripes);
    let conds: String = b
        .group_cols
        .iter()
        .zip(&b.group_types)
        .enumerate()
        .map(|(i, (c, t))| {
            format!(
                " AND s.{} IS NOT DISTINCT FROM CAST(${} AS {t})",
                quote_ident(c),
                i + 2
            )
        })
        .collect();
    let sql = format!("SELECT coalesce(sum(s.cost_usd), 0)::pg_catalog.text FROM {stripes} s WHERE s.period_start = $1{conds}");
    let at = pgrx::datum::TimestampWithTimeZone::from_datum(pg_sys::Datum::from(period), false);
    let mut args: Vec<pgrx::datum::DatumWithOid> = vec![at.into()];
    args.extend(group.iter().map(|g| g.clone().into()));
    let owner = crate::pg::privilege::owner_of(b.layout.stripes)
        .unwrap_or_else(crate::pg::privilege::extension_owner);
    let text = crate::pg::privilege::as_role(owner, true, || {
        spi::get_one_with_args::<String>(&sql, &args)
    })
    .unwrap_or_else(|e| {
        crate::pg::fail::internal(format!(
            "llm_cost: could not read the spend of budget \"{}\": {e}",
            b.name
        ))
    })
    .unwrap_or_else(|| "0".into());
    numeric_of(&text)
}

impl Budget {
    fn covers(&self, group: &[Option<String>]) -> bool {
        self.filter
            .iter()
            .all(|(i, v)| group.get(*i).is_some_and(|g| g == v))
    }

    fn limit_of(&self, group: &[Option<String>]) -> &Limit {
        self.overrides.get(group).unwrap_or(&self.default)
    }
}

#[derive(Default)]
struct Defs {
    /// Loaded before the budget tables existed (a database on older SQL): any change reloads.
    incomplete: bool,
    by_stripes: HashMap<pg_sys::Oid, Vec<Rc<Budget>>>,
    by_name: HashMap<String, Rc<Budget>>,
    /// Relations whose change makes these definitions stale.
    watched: HashSet<pg_sys::Oid>,
}

thread_local! {
    static DEFS: RefCell<Option<Rc<Defs>>> = const { RefCell::new(None) };
    /// (budget, period, group, threshold index) alerted (or found alerted) by this backend.
    static ALERTED: RefCell<HashSet<(i64, i64, Vec<Option<String>>, usize)>> = RefCell::new(HashSet::new());
}

const ALERTED_MAX: usize = 100_000;

thread_local! {
    /// Alerts this backend wrote (the sweep reports how many).
    static ALERTS_WRITTEN: Cell<i64> = const { Cell::new(0) };
}

/// A relation changed (relcache invalidation): drop the definitions if they depend on it.
pub fn forget(relid: pg_sys::Oid) {
    let _ = DEFS.try_with(|d| {
        if let Ok(mut d) = d.try_borrow_mut() {
            if relid == pg_sys::InvalidOid
                || d.as_ref()
                    .is_some_and(|defs| defs.incomplete || defs.watched.contains(&relid))
            {
                *d = None;
                let _ = ALERTED.try_with(|a| a.try_borrow_mut().map(|mut a| a.clear()));
            }
        }
    });
}

/// Whether a rollup (by its stripes table) has budgets: the rollup writer remembers the groups
/// it writes there for the check at commit.
pub fn watches(stripes: pg_sys::Oid) -> bool {
    crate::pg::lifecycle::with_snapshot(defs)
        .by_stripes
        .contains_key(&stripes)
}

fn defs() -> Rc<Defs> {
    if let Some(d) = DEFS.with(|d| d.borrow().clone()) {
        return d;
    }
    crate::pg::relcache::register_callback();
    let loaded = Rc::new(load());
    DEFS.with(|d| *d.borrow_mut() = Some(loaded.clone()));
    loaded
}

fn parse_units(s: Option<String>) -> Option<i128> {
    s.and_then(|s| s.parse::<i128>().ok())
}

fn limit_of(
    limit: String,
    thresholds: &[Option<String>],
    units: Vec<Option<String>>,
    exact: Vec<Option<String>>,
) -> Limit {
    Limit {
        limit,
        amounts: thresholds
            .iter()
            .zip(units)
            .zip(exact)
            .map(|((t, u), e)| Amount {
                threshold: t.clone().unwrap_or_default(),
                units: parse_units(u),
                exact: e.unwrap_or_default(),
            })
            .collect(),
    }
}

const LOAD_BUDGETS: &str = "
SELECT b.id, b.name, b.rollup::pg_catalog.oid::pg_catalog.int8, r.stripes::pg_catalog.oid::pg_catalog.int8, r.source::pg_catalog.oid::pg_catalog.int8, b.hard, r.grain, r.time_zone, r.group_by,
       b.limit_usd::pg_catalog.text, NULL::pg_catalog.text,
       ARRAY(SELECT x::pg_catalog.text FROM unnest(b.thresholds) x ORDER BY x),
       ARRAY(SELECT ceil(x * b.limit_usd * 1e16)::pg_catalog.text FROM unnest(b.thresholds) x ORDER BY x),
       ARRAY(SELECT (x * b.limit_usd)::pg_catalog.text FROM unnest(b.thresholds) x ORDER BY x),
       ARRAY(SELECT b.filter ? g FROM unnest(r.group_by) g),
       ARRAY(SELECT b.filter ->> g FROM unnest(r.group_by) g),
       ARRAY(SELECT coalesce(a.attnum, 0)::pg_catalog.int8 FROM unnest($1::pg_catalog.text[]) WITH ORDINALITY n(name, ord)
                   LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = r.stripes AND a.attname = n.name AND NOT a.attisdropped ORDER BY n.ord),
       ARRAY(SELECT coalesce(a.attnum, 0)::pg_catalog.int8 FROM unnest(r.group_by) WITH ORDINALITY n(name, ord)
                   LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = r.stripes AND a.attname = n.name AND NOT a.attisdropped ORDER BY n.ord),
       ARRAY(SELECT coalesce(t.typinput, 0)::pg_catalog.oid::pg_catalog.int8 FROM unnest(r.group_by) WITH ORDINALITY n(name, ord)
                   LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = r.stripes AND a.attname = n.name AND NOT a.attisdropped
                   LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid ORDER BY n.ord),
       ARRAY(SELECT coalesce(CASE WHEN t.typelem <> 0 THEN t.typelem ELSE t.oid END, 0)::pg_catalog.oid::pg_catalog.int8 FROM unnest(r.group_by) WITH ORDINALITY n(name, ord)
                   LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = r.stripes AND a.attname = n.name AND NOT a.attisdropped
                   LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid ORDER BY n.ord),
       ARRAY(SELECT coalesce(a.atttypmod, -1)::pg_catalog.int8 FROM unnest(r.group_by) WITH ORDINALITY n(name, ord)
                   LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = r.stripes AND a.attname = n.name AND NOT a.attisdropped ORDER BY n.ord),
       (SELECT array_position(r.group_by, s.owner_column)::pg_catalog.int8 FROM llm_cost.row_security s WHERE s.rel = b.rollup),
       ARRAY(SELECT coalesce(pg_catalog.format_type(a.atttypid, a.atttypmod), 'text') FROM unnest(r.group_by) WITH ORDINALITY n(name, ord)
                   LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = r.stripes AND a.attname = n.name AND NOT a.attisdropped ORDER BY n.ord),
       -- (read through to_jsonb: the SQL of 0.10.0, before ALTER EXTENSION UPDATE, has no such column)
       coalesce((pg_catalog.to_jsonb(b) ->> 'alert_on_projection')::pg_catalog.bool, false)
  FROM llm_cost.budgets b JOIN llm_cost.rollups r ON r.rollup = b.rollup";

const LOAD_LIMITS: &str = "
SELECT l.budget_id, ARRAY(SELECT l.\"group\" ->> g FROM unnest(r.group_by) g), l.limit_usd::pg_catalog.text, ceil(l.limit_usd * 1e16)::pg_catalog.text,
       ARRAY(SELECT x::pg_catalog.text FROM unnest(b.thresholds) x ORDER BY x),
       ARRAY(SELECT ceil(x * l.limit_usd * 1e16)::pg_catalog.text FROM unnest(b.thresholds) x ORDER BY x),
       ARRAY(SELECT (x * l.limit_usd)::pg_catalog.text FROM unnest(b.thresholds) x ORDER BY x)
  FROM llm_cost.budget_limits l JOIN llm_cost.budgets b ON b.id = l.budget_id JOIN llm_cost.rollups r ON r.rollup = b.rollup";

fn load() -> Defs {
    let exists =
        spi::get_one::<bool>("SELECT pg_catalog.to_regclass('llm_cost.budgets') IS NOT NULL")
            .ok()
            .flatten()
            .unwrap_or(false);
    if !exists {
        // A database still on the SQL of an older version (before ALTER EXTENSION UPDATE).
        return Defs {
            incomplete: true,
            ..Defs::default()
        };
    }
    crate::pg::privilege::as_extension_owner(|| {
        spi::connect(|client| -> Result<Defs, pgrx::spi::Error> {
            let mut defs = Defs::default();
            let mut budgets: HashMap<i64, Budget> = HashMap::new();
            // The columns of a table of sums: the one list (rollups::stripes::COLUMNS).
            let columns: Vec<String> = crate::features::rollups::stripes::COLUMNS.iter().map(|c| c.name.to_string()).collect();
            for row in client.select(LOAD_BUDGETS, None, &[columns.into()])? {
                let oid = |i: usize| -> Result<pg_sys::Oid, pgrx::spi::Error> {
                    Ok(pg_sys::Oid::from(row.get::<i64>(i)?.unwrap_or(0) as u32))
                };
                let ints = |i: usize| -> Result<Vec<i64>, pgrx::spi::Error> {
                    Ok(row.get::<Vec<Option<i64>>>(i)?.unwrap_or_default().into_iter().map(|x| x.unwrap_or(0)).collect())
                };
                let texts = |i: usize| -> Result<Vec<Option<String>>, pgrx::spi::Error> { Ok(row.get::<Vec<Option<String>>>(i)?.unwrap_or_default()) };
                let id = row.get::<i64>(1)?.unwrap_or(0);
                let stripes = oid(4)?;
                let group_cols: Vec<String> = texts(9)?.into_iter().map(|x| x.unwrap_or_default()).collect();
                let thresholds = texts(12)?;
                let has: Vec<Option<bool>> = row.get::<Vec<Option<bool>>>(15)?.unwrap_or_default();
                let vals = texts(16)?;
                let filter = has.iter().enumerate().filter(|(_, h)| **h == Some(true)).map(|(i, _)| (i, vals.get(i).cloned().flatten())).collect();
                let fixed_v = ints(17)?;
                let mut fixed = [0i16; crate::features::rollups::stripes::COLUMNS.len()];
                for (i, v) in fixed_v.iter().take(fixed.len()).enumerate() {
                    fixed[i] = *v as i16;
                }
                let groups: Vec<i16> = ints(18)?.into_iter().map(|x| x as i16).collect();
                let inputs = ints(19)?;
                let ioparams = ints(20)?;
                let typmods = ints(21)?;
                let group_input = (0..group_cols.len())
                    .map(|i| {
                        (
                            pg_sys::Oid::from(*inputs.get(i).unwrap_or(&0) as u32),
                            pg_sys::Oid::from(*ioparams.get(i).unwrap_or(&0) as u32),
                            *typmods.get(i).unwrap_or(&-1) as i32,
                        )
                    })
                    .collect();
                let b = Budget {
                    id,
                    name: row.get::<String>(2)?.unwrap_or_default(),
                    rollup: oid(3)?,
                    source: row.get::<i64>(5)?.map(|x| pg_sys::Oid::from(x as u32)),
                    hard: row.get::<bool>(6)?.unwrap_or(false),
                    grain: row.get::<String>(7)?.unwrap_or_default(),
                    zone: row.get::<String>(8)?.unwrap_or_default(),
                    group_cols,
                    group_input,
                    filter,
                    default: limit_of(row.get::<String>(10)?.unwrap_or_default(), &thresholds, texts(13)?, texts(14)?),
                    overrides: HashMap::new(),
                    layout: Rc::new(Layout { stripes, groups, fixed, probe_keys: Default::default(), indexes_checked: Default::default() }),
                    owner_column: row.get::<i64>(22)?.map(|x| (x - 1) as usize),
                    distributed: false, // below
                    group_types: texts(23)?.into_iter().map(|x| x.unwrap_or_else(|| "text".into())).collect(),
                    period: Cell::new((i64::MAX, i64::MIN)),
                    projection: row.get::<bool>(24)?.unwrap_or(false),
                };
                defs.watched.insert(stripes);
                defs.watched.insert(b.rollup);
                budgets.insert(id, b);
            }
            for row in client.select(LOAD_LIMITS, None, &[])? {
                let id = row.get::<i64>(1)?.unwrap_or(0);
                let group = row.get::<Vec<Option<String>>>(2)?.unwrap_or_default();
                let thresholds = row.get::<Vec<Option<String>>>(5)?.unwrap_or_default();
                let l = limit_of(
                    row.get::<String>(3)?.unwrap_or_default(),
                    &thresholds,
                    row.get::<Vec<Option<String>>>(6)?.unwrap_or_default(),
                    row.get::<Vec<Option<String>>>(7)?.unwrap_or_default(),
                );
                if let Some(b) = budgets.get_mut(&id) {
                    b.overrides.insert(group, l);
                }
            }
            for oid in client
                .select(
                    "SELECT c.oid::pg_catalog.int8 FROM pg_catalog.pg_class c
                      WHERE c.oid IN (pg_catalog.to_regclass('llm_cost.budgets'), pg_catalog.to_regclass('llm_cost.budget_limits'),
                                      pg_catalog.to_regclass('llm_cost.rollups'), pg_catalog.to_regclass('llm_cost.row_security'))",
                    None,
                    &[],
                )?
            {
                defs.watched.insert(pg_sys::Oid::from(oid.get::<i64>(1)?.unwrap_or(0) as u32));
            }
            for (_, mut b) in budgets {
                // (here, not in LOAD_BUDGETS: that query also runs on the SQL of 0.4.0, before
                // ALTER EXTENSION UPDATE, which has no Citus helpers)
                b.distributed = crate::pg::citus::is_citus_table(b.layout.stripes);
                let b = Rc::new(b);
                defs.by_stripes.entry(b.layout.stripes).or_default().push(b.clone());
                defs.by_name.insert(b.name.clone(), b);
            }
            Ok(defs)
        })
        .unwrap_or_else(|e| crate::pg::fail::internal(format!("llm_cost: could not read the budgets: {e}")))
    })
}

/// A group value as text, as `value::text` writes it (the budget tables' representation).
unsafe fn text_of(d: Option<pg_sys::Datum>, typid: pg_sys::Oid) -> Option<String> {
    let d = d?;
    if typid == pg_sys::BOOLOID {
        return Some(if d.value() != 0 { "true" } else { "false" }.to_string());
    }
    let mut out = pg_sys::InvalidOid;
    let mut varlena = false;
    pg_sys::getTypeOutputInfo(typid, &mut out, &mut varlena);
    let c = pg_sys::OidOutputFunctionCall(out, d);
    let s = std::ffi::CStr::from_ptr(c).to_string_lossy().into_owned();
    pg_sys::pfree(c.cast());
    Some(s)
}

fn group_json(b: &Budget, group: &[Option<String>]) -> String {
    let mut m = serde_json::Map::new();
    for (c, v) in b.group_cols.iter().zip(group) {
        m.insert(
            c.clone(),
            v.clone()
                .map(serde_json::Value::String)
                .unwrap_or(serde_json::Value::Null),
        );
    }
    serde_json::Value::Object(m).to_string()
}

fn lock_key(stripes: pg_sys::Oid, period: i64, group: &[Option<String>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    stripes.to_u32().hash(&mut h);
    period.hash(&mut h);
    group.hash(&mut h);
    h.finish()
}

unsafe fn lock(key: u64) {
    let tag = pg_sys::LOCKTAG {
        locktag_field1: pg_sys::MyDatabaseId.to_u32(),
        locktag_field2: (key >> 32) as u32,
        locktag_field3: key as u32,
        locktag_field4: LOCK_SPACE,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: 2, // USER_LOCKMETHOD
    };
    pg_sys::LockAcquire(
        &tag,
        pg_sys::ExclusiveLock as pg_sys::LOCKMODE,
        false,
        false,
    );
}

/// Whether `spent` (numeric Datum) reached `a`.
unsafe fn reached(spent: pg_sys::Datum, spent_units: Option<i128>, a: &Amount) -> bool {
    match (spent_units, a.units) {
        (Some(s), Some(u)) => s >= u,
        _ => numeric_cmp(spent, &a.exact) >= 0,
    }
}

unsafe fn numeric_of(text: &str) -> pg_sys::Datum {
    let c = std::ffi::CString::new(text).unwrap_or_default();
    pgrx::direct_function_call_as_datum(
        pg_sys::numeric_in,
        &[
            Some(pg_sys::Datum::from(c.as_ptr())),
            Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
            Some(pg_sys::Datum::from(-1i32)),
        ],
    )
    .unwrap_or_else(|| {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!("llm_cost: not a number: {text}"),
        )
        .raise()
    })
}

unsafe fn numeric_cmp(a: pg_sys::Datum, b: &str) -> i32 {
    let b = numeric_of(b);
    pgrx::direct_function_call_as_datum(pg_sys::numeric_cmp, &[Some(a), Some(b)])
        .map(|d| d.value() as i32)
        .unwrap_or(0)
}

struct Check {
    key: u64,
    budget: Rc<Budget>,
    period: i64,
    group: Vec<Option<String>>,
    datums: Vec<Option<pg_sys::Datum>>,
}

fn alerted(b: i64, period: i64, group: &[Option<String>], i: usize) -> bool {
    ALERTED.with(|a| a.borrow().contains(&(b, period, group.to_vec(), i)))
}

fn mark_alerted(b: i64, period: i64, group: &[Option<String>], i: usize) {
    ALERTED.with(|a| {
        let mut a = a.borrow_mut();
        if a.len() >= ALERTED_MAX {
            a.clear();
        }
        a.insert((b, period, group.to_vec(), i));
    });
}

/// Before commit (after the rollup sums are written): the budget crossings of the groups this
/// transaction added spend to.
pub fn check_at_commit() {
    let written = crate::features::rollups::take_written();
    if written.is_empty() {
        return;
    }
    crate::pg::lifecycle::with_snapshot(|| check(written));
}

fn check(written: Vec<crate::features::rollups::Written>) {
    let defs = defs();
    let mut checks: Vec<Check> = Vec::new();
    for w in written {
        let Some(budgets) = defs.by_stripes.get(&w.stripes) else {
            continue;
        };
        let group: Vec<Option<String>> = w
            .group
            .iter()
            .zip(&w.types)
            // SAFETY: the datums and their types come from the same written group (rollups::Written).
            .map(|(d, t)| unsafe { text_of(*d, *t) })
            .collect();
        for b in budgets {
            if !b.covers(&group) {
                continue;
            }
            let limit = b.limit_of(&group);
            if (0..limit.amounts.len()).all(|i| alerted(b.id, w.period, &group, i))
                && (!b.projection || alerted(b.id, w.period, &group, PROJECTED))
            {
                continue;
            }
            checks.push(Check {
                key: lock_key(w.stripes, w.period, &group),
                budget: b.clone(),
                period: w.period,
                group: group.clone(),
                datums: w.group.clone(),
            });
        }
    }
    if checks.is_empty() {
        return;
    }
    // SAFETY: inside the committing transaction, before its commit record: a command counter bump and a fresh snapshot, popped below.
    unsafe {
        // Our own rollup writes must be visible to a snapshot taken now, which also sees every
        // transaction committed before.
        pg_sys::CommandCounterIncrement();
        let snap = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
        let mut crossed: Vec<&Check> = Vec::new();
        for c in &checks {
            let spent = spent_of(&c.budget, c.period, &c.datums, &c.group, snap);
            if !new_crossings(c, spent).is_empty() || projection_due(c, spent) {
                crossed.push(c);
            }
        }
        pg_sys::UnregisterSnapshot(snap);
        record_crossings(&crossed);
    }
}

/// The thresholds (index, amount) of a check that `spent` reached and this backend has not
/// seen alerted.
unsafe fn new_crossings(c: &Check, spent: pg_sys::Datum) -> Vec<(usize, Amount)> {
    let units = crate::pg::money::numeric_units(spent);
    let limit = c.budget.limit_of(&c.group);
    // Decide (llm_cost_core::budget); the exact comparison of numerics comes in as a function.
    llm_cost_core::budget::newly_crossed(
        &spent,
        &limit.amounts,
        |s, a| reached(*s, units, a),
        |i| alerted(c.budget.id, c.period, &c.group, i),
    )
    .into_iter()
    .map(|i| (i, limit.amounts[i].clone()))
    .collect()
}

/// The index `alerted` remembers a group's projection alert under (thresholds use theirs).
const PROJECTED: usize = usize::MAX;

/// Whether a check's group is newly on track to exceed its limit: its budget alerts on the
/// projection, the period is the current one and at least a tenth of it is gone, spend has not
/// reached the limit, and spend at its rate since the period began reaches it before the period
/// ends: spent x (end - start) >= limit x (now - start), compared exactly in integers (10^-8 USD:
/// the products fit in 128 bits for any limit a budget may have).
unsafe fn projection_due(c: &Check, spent: pg_sys::Datum) -> bool {
    let b = &c.budget;
    if !b.projection || alerted(b.id, c.period, &c.group, PROJECTED) {
        return false;
    }
    let (start, end) = current_period(b);
    if c.period != start {
        return false;
    }
    let now = crate::pg::lifecycle::transaction_start();
    let (len, gone) = ((end - start) as i128, (now - start) as i128);
    if len <= 0 || gone * 10 < len {
        return false;
    }
    let limit = b.limit_of(&c.group).limit.clone();
    let (Some(s), Some(l)) = (crate::pg::money::numeric_units(spent), limit_units(&limit)) else {
        return false;
    };
    let (s, l) = (s / 100_000_000, l / 100_000_000);
    s < l && s.saturating_mul(len) >= l.saturating_mul(gone)
}

/// The least spend on track to exceed a budget's smallest limit now, as numeric text: limit x
/// (time gone / period length), at least a tenth of the period in (None: not yet, or no period).
fn projection_floor(b: &Budget) -> Option<String> {
    use std::str::FromStr;
    let (start, end) = current_period(b);
    let now = crate::pg::lifecycle::transaction_start();
    let (len, gone) = (end - start, now - start);
    if len <= 0 || gone * 10 < len {
        return None;
    }
    let smallest = std::iter::once(&b.default.limit)
        .chain(b.overrides.values().map(|l| &l.limit))
        .filter_map(|l| rust_decimal::Decimal::from_str(l).ok())
        .min()?;
    let floor =
        smallest.checked_mul(rust_decimal::Decimal::from(gone))? / rust_decimal::Decimal::from(len);
    Some(floor.trunc_with_scale(8).to_string())
}

/// A limit (numeric text) in 10^-16 USD (None: more decimals, or not a number).
fn limit_units(limit: &str) -> Option<i128> {
    use std::str::FromStr;
    let d = rust_decimal::Decimal::from_str(limit).ok()?;
    let scaled = d.checked_mul(rust_decimal::Decimal::from(10_000_000_000_000_000i64))?;
    (scaled.fract().is_zero()).then(|| scaled.mantissa() / 10i128.pow(scaled.scale()))
}

/// Records the crossings of these groups: under each group's lock (taken in key order, so
/// two writers never deadlock; held to the end of the transaction), with a snapshot taken after
/// the locks, which sees the alerts of every transaction that held them before: each alert is
/// written once, and never fails on one another transaction wrote (REPEATABLE READ included).
unsafe fn record_crossings(crossed: &[&Check]) {
    if crossed.is_empty() {
        return;
    }
    let mut keys: Vec<u64> = crossed.iter().map(|c| c.key).collect();
    keys.sort_unstable();
    keys.dedup();
    for k in keys {
        lock(k);
    }
    let snap = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
    for c in crossed {
        let spent = spent_of(&c.budget, c.period, &c.datums, &c.group, snap);
        let limit = c.budget.limit_of(&c.group).limit.clone();
        for (i, a) in new_crossings(c, spent) {
            alert(
                &c.budget, &c.group, c.period, &a, spent, &limit, snap, false,
            );
            mark_alerted(c.budget.id, c.period, &c.group, i);
        }
        if projection_due(c, spent) {
            let whole = Amount {
                threshold: "1".into(),
                units: None,
                exact: limit.clone(),
            };
            alert(
                &c.budget, &c.group, c.period, &whole, spent, &limit, snap, true,
            );
            mark_alerted(c.budget.id, c.period, &c.group, PROJECTED);
        }
    }
    pg_sys::UnregisterSnapshot(snap);
}

/// The background worker's pass (each naptime, in every database with budgets): crossings no
/// committing writer saw. A writer sees its own spend and what committed before its check;
/// writers of one group that commit together each miss the others' spend, and if only their sum
/// crosses a threshold, this pass records it (or the group's next writer does).
#[pg_extern(volatile, parallel_unsafe)]
fn _budget_sweep() -> i64 {
    if !crate::pg::privilege::has_rights_of(crate::pg::privilege::extension_owner()) {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "llm_cost._budget_sweep: only the extension's owner (the background worker) runs it",
        )
        .raise();
    }
    let defs = defs();
    let mut found: Vec<Check> = Vec::new();
    let mut budgets: Vec<&Rc<Budget>> = defs.by_name.values().collect();
    budgets.sort_by_key(|b| b.id);
    for b in budgets {
        // Groups of the current and the previous period whose spend reaches the lowest amount
        // alerted, read as the rollup's owner (the stripes table is theirs).
        let Some(owner) = crate::pg::privilege::owner_of(b.layout.stripes) else {
            continue;
        };
        let lowest = std::iter::once(&b.default)
            .chain(b.overrides.values())
            .filter_map(|l| l.amounts.first().map(|a| a.exact.clone()))
            // SAFETY: numeric_of builds a numeric datum from an amount the registry holds as numeric text.
            // A budget alerting on the projection: spend that reaches its rate's share of the
            // smallest limit now (limit x time gone / period) may be on track.
            .chain(b.projection.then(|| projection_floor(b)).flatten())
            .min_by(|x, y| unsafe { numeric_cmp(numeric_of(x), y) }.cmp(&0))
            .unwrap_or_else(|| "0".into());
        let stripes = crate::pg::privilege::relname(b.layout.stripes);
        let cols: Vec<String> = b
            .group_cols
            .iter()
            .map(|c| format!("s.{}", quote_ident(c)))
            .collect();
        let sql = format!(
            "SELECT s.period_start, ARRAY[{texts}]::pg_catalog.text[] FROM {stripes} s
              WHERE s.period_start >= pg_catalog.date_trunc($1, pg_catalog.now() - ('1 ' || $1)::pg_catalog.interval, $2)
              GROUP BY s.period_start{groups} HAVING sum(s.cost_usd) >= $3::pg_catalog.numeric",
            texts = cols.iter().map(|c| format!("{c}::pg_catalog.text")).collect::<Vec<_>>().join(", "),
            groups = cols.iter().map(|c| format!(", {c}")).collect::<String>(),
        );
        let rows: Vec<(i64, Vec<Option<String>>)> =
            crate::pg::privilege::as_role(owner, true, || {
                spi::connect(|client| {
                    let mut v = Vec::new();
                    for r in client.select(
                        &sql,
                        None,
                        &[
                            b.grain.as_str().into(),
                            b.zone.as_str().into(),
                            lowest.as_str().into(),
                        ],
                    )? {
                        let p = r.get::<pgrx::datum::TimestampWithTimeZone>(1)?;
                        let g = r.get::<Vec<Option<String>>>(2)?.unwrap_or_default();
                        if let Some(p) = p {
                            use pgrx::IntoDatum;
                            v.push((p.into_datum().map(|d| d.value() as i64).unwrap_or(0), g));
                        }
                    }
                    Ok::<_, pgrx::spi::Error>(v)
                })
                .unwrap_or_else(|e| {
                    crate::pg::fail::internal(format!(
                        "llm_cost: could not read the spend of budget \"{}\": {e}",
                        b.name
                    ))
                })
            });
        // What is alerted already (the worker starts with an empty memory of it).
        let known: Vec<(i64, Vec<Option<String>>, Option<String>)> =
            crate::pg::privilege::as_extension_owner(|| {
                spi::connect(|client| {
                let mut v = Vec::new();
                for r in client.select(
                    "SELECT a.period_start, ARRAY(SELECT a.\"group\" ->> g FROM unnest($2::pg_catalog.text[]) g), a.threshold::pg_catalog.text,
                            coalesce(pg_catalog.to_jsonb(a) ->> 'kind', 'spent')
                       FROM llm_cost.budget_alerts a
                      WHERE a.budget_id = $1 AND a.period_start >= pg_catalog.date_trunc($3, pg_catalog.now() - ('1 ' || $3)::pg_catalog.interval, $4)",
                    None,
                    &[b.id.into(), b.group_cols.clone().into(), b.grain.as_str().into(), b.zone.as_str().into()],
                )? {
                    let p = r.get::<pgrx::datum::TimestampWithTimeZone>(1)?;
                    if let Some(p) = p {
                        use pgrx::IntoDatum;
                        let kind = r.get::<String>(4)?.unwrap_or_default();
                        v.push((
                            p.into_datum().map(|d| d.value() as i64).unwrap_or(0),
                            r.get::<Vec<Option<String>>>(2)?.unwrap_or_default(),
                            if kind == "projected" { None } else { Some(r.get::<String>(3)?.unwrap_or_default()) },
                        ));
                    }
                }
                Ok::<_, pgrx::spi::Error>(v)
            })
            .unwrap_or_else(|e| crate::pg::fail::internal(format!("llm_cost: could not read the alerts of budget \"{}\": {e}", b.name)))
            });
        for (period, group, threshold) in known {
            let Some(threshold) = threshold else {
                mark_alerted(b.id, period, &group, PROJECTED);
                continue;
            };
            if let Some(i) = b
                .default
                .amounts
                .iter()
                .position(|a| a.threshold == threshold)
            {
                mark_alerted(b.id, period, &group, i);
            }
        }
        for (period, group) in rows {
            if !b.covers(&group) {
                continue;
            }
            let datums = group
                .iter()
                .zip(&b.group_input)
                .map(|(t, (input, ioparam, typmod))| {
                    // SAFETY: each group column's input function, its type parameter and typmod, looked up with it; the C string lives for the call.
                    t.as_ref().map(|s| unsafe {
                        let c = std::ffi::CString::new(s.as_str()).unwrap_or_default();
                        pg_sys::OidInputFunctionCall(
                            *input,
                            c.as_ptr() as *mut _,
                            *ioparam,
                            *typmod,
                        )
                    })
                })
                .collect();
            found.push(Check {
                key: lock_key(b.layout.stripes, period, &group),
                budget: b.clone(),
                period,
                group,
                datums,
            });
        }
    }
    let before = ALERTS_WRITTEN.with(|n| n.get());
    // SAFETY: record_crossings runs SPI in the worker's transaction, which is open here.
    unsafe {
        let refs: Vec<&Check> = found.iter().collect();
        record_crossings(&refs);
    }
    ALERTS_WRITTEN.with(|n| n.get()) - before
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

// ON CONFLICT without a target: the unique key of budget_alerts is (budget_id, group,
// period_start, threshold) in the SQL of 0.10.0 and before, with kind since 0.11.0.
const ALERT_SQL: &str = "WITH a AS (
    INSERT INTO llm_cost.budget_alerts AS a (budget_id, budget, \"group\", period_start, threshold, spent_usd, limit_usd)
    VALUES ($1, $2, $3::pg_catalog.jsonb, $4, $5::pg_catalog.numeric, $6, $7::pg_catalog.numeric)
    ON CONFLICT DO NOTHING
    RETURNING a.*)
SELECT pg_catalog.pg_notify('llm_cost_budget', pg_catalog.json_build_object('id', a.id)::pg_catalog.text)
  FROM a";

/// PREPARE TRANSACTION may not NOTIFY: the alert is recorded, not sent.
const ALERT_SQL_PREPARED: &str = "INSERT INTO llm_cost.budget_alerts (budget_id, budget, \"group\", period_start, threshold, spent_usd, limit_usd)
    VALUES ($1, $2, $3::pg_catalog.jsonb, $4, $5::pg_catalog.numeric, $6, $7::pg_catalog.numeric)
    ON CONFLICT DO NOTHING";

/// The alert of a group on track to exceed its limit (kind projected, threshold 1: 0.11.0 SQL;
/// only budgets of 0.11.0 alert on the projection).
const PROJECTED_SQL: &str = "WITH a AS (
    INSERT INTO llm_cost.budget_alerts AS a (budget_id, budget, \"group\", period_start, threshold, spent_usd, limit_usd, kind)
    VALUES ($1, $2, $3::pg_catalog.jsonb, $4, $5::pg_catalog.numeric, $6, $7::pg_catalog.numeric, 'projected')
    ON CONFLICT DO NOTHING
    RETURNING a.*)
SELECT pg_catalog.pg_notify('llm_cost_budget', pg_catalog.json_build_object('id', a.id)::pg_catalog.text)
  FROM a";

const PROJECTED_SQL_PREPARED: &str = "INSERT INTO llm_cost.budget_alerts (budget_id, budget, \"group\", period_start, threshold, spent_usd, limit_usd, kind)
    VALUES ($1, $2, $3::pg_catalog.jsonb, $4, $5::pg_catalog.numeric, $6, $7::pg_catalog.numeric, 'projected')
    ON CONFLICT DO NOTHING";

/// Records (and notifies) one crossing, as the extension's owner, with the snapshot of the check.
#[allow(clippy::too_many_arguments)]
unsafe fn alert(
    b: &Budget,
    group: &[Option<String>],
    period: i64,
    a: &Amount,
    spent: pg_sys::Datum,
    limit: &str,
    snap: pg_sys::Snapshot,
    projected: bool,
) {
    let sql = match (projected, crate::pg::lifecycle::preparing()) {
        (false, false) => ALERT_SQL,
        (false, true) => ALERT_SQL_PREPARED,
        (true, false) => PROJECTED_SQL,
        (true, true) => PROJECTED_SQL_PREPARED,
    };
    let gj = group_json(b, group);
    crate::pg::privilege::as_extension_owner(|| {
        let text = |s: &str| -> pg_sys::Datum {
            let c = std::ffi::CString::new(s).unwrap_or_default();
            pg_sys::Datum::from(pg_sys::cstring_to_text(c.as_ptr()))
        };
        let mut types = [
            pg_sys::INT8OID,
            pg_sys::TEXTOID,
            pg_sys::TEXTOID,
            pg_sys::TIMESTAMPTZOID,
            pg_sys::TEXTOID,
            pg_sys::NUMERICOID,
            pg_sys::TEXTOID,
        ];
        let mut values = [
            pg_sys::Datum::from(b.id),
            text(&b.name),
            text(&gj),
            pg_sys::Datum::from(period),
            text(&a.threshold),
            spent,
            text(limit),
        ];
        let rc = crate::pg::spi::execute_with_snapshot(sql, &mut types, &mut values, snap);
        if rc < 0 {
            crate::pg::fail::internal(format!(
                "llm_cost: could not record a budget alert (SPI code {rc})"
            ));
        }
    });
}

/// Budget definitions stale after a write to the budget tables (statement trigger: every backend
/// drops its cached definitions at its next command; this one at once).
#[pg_trigger]
fn _budgets_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let relid = trigger.relid()?;
    // SAFETY: a transactional invalidation of the relation the trigger fired on.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    forget(pg_sys::InvalidOid);
    Ok(None)
}

/// Writes the budget tables for create_budget / set_budget_limit / drop_budget, which validate
/// the arguments; this checks that the caller has the owner's rights over the budget's rollup
/// (its view and stripes table) and writes as the extension's owner.
#[pg_extern(volatile, parallel_unsafe)]
fn _budget_write(op: &str, args: pgrx::JsonB) -> Option<pgrx::JsonB> {
    let a = args.0;
    let rollup: Option<pg_sys::Oid> = match op {
        "create" => a
            .get("rollup")
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .map(|n| pg_sys::Oid::from(n as u32)),
        "limit" | "drop" => {
            let id = a.get("budget_id").and_then(|v| v.as_i64()).unwrap_or(0);
            spi::get_one_with_args::<i64>(
                "SELECT rollup::pg_catalog.oid::pg_catalog.int8 FROM llm_cost.budgets WHERE id = $1",
                &[id.into()],
            )
            .ok()
            .flatten()
            .map(|n| pg_sys::Oid::from(n as u32))
        }
        _ => crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("llm_cost: no budget operation \"{op}\""),
        )
        .raise(),
    };
    let Some(rollup) = rollup else {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "llm_cost: no such budget or rollup",
        )
        .raise();
    };
    let stripes = spi::get_one_with_args::<i64>(
        "SELECT stripes::pg_catalog.oid::pg_catalog.int8 FROM llm_cost.rollups WHERE rollup = $1",
        &[rollup.into()],
    )
    .ok()
    .flatten()
    .map(|n| pg_sys::Oid::from(n as u32))
    .unwrap_or_else(|| {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "llm_cost: not an llm_cost rollup",
        )
        .raise()
    });
    crate::pg::privilege::require_owner_rights(rollup, "manage its budgets");
    crate::pg::privilege::require_owner_rights(stripes, "manage its budgets");
    let me =
        // SAFETY: the current user exists (GetUserNameFromId errors otherwise); the name is copied at once.
        unsafe { std::ffi::CStr::from_ptr(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false)) }
            .to_string_lossy()
            .into_owned();
    let sql = match op {
        // (alert_on_projection: 0.11.0's create_budget; that of 0.10.0 and before has no such column)
        "create" if a.get("alert_on_projection").is_some() => {
            "INSERT INTO llm_cost.budgets AS b (name, rollup, limit_usd, thresholds, filter, hard, created_by, alert_on_projection)
             SELECT $1->>'name', ($1->>'rollup')::pg_catalog.oid::pg_catalog.regclass, ($1->>'limit_usd')::pg_catalog.numeric,
                    ARRAY(SELECT x::pg_catalog.numeric FROM jsonb_array_elements_text($1->'thresholds') x), $1->'filter', ($1->>'hard')::pg_catalog.bool, $2,
                    ($1->>'alert_on_projection')::pg_catalog.bool
             RETURNING pg_catalog.to_jsonb(b.*)"
        }
        "create" => {
            "INSERT INTO llm_cost.budgets AS b (name, rollup, limit_usd, thresholds, filter, hard, created_by)
             SELECT $1->>'name', ($1->>'rollup')::pg_catalog.oid::pg_catalog.regclass, ($1->>'limit_usd')::pg_catalog.numeric,
                    ARRAY(SELECT x::pg_catalog.numeric FROM jsonb_array_elements_text($1->'thresholds') x), $1->'filter', ($1->>'hard')::pg_catalog.bool, $2
             RETURNING pg_catalog.to_jsonb(b.*)"
        }
        "limit" if a.get("limit_usd").is_none_or(|v| v.is_null()) => {
            "WITH d AS (DELETE FROM llm_cost.budget_limits WHERE budget_id = ($1->>'budget_id')::pg_catalog.int8 AND \"group\" = $1->'group' RETURNING 1)
             SELECT NULL::pg_catalog.jsonb WHERE $2 IS NOT NULL"
        }
        "limit" => {
            "INSERT INTO llm_cost.budget_limits AS l (budget_id, \"group\", limit_usd)
             VALUES (($1->>'budget_id')::pg_catalog.int8, $1->'group', ($1->>'limit_usd')::pg_catalog.numeric)
             ON CONFLICT (budget_id, \"group\") DO UPDATE SET limit_usd = excluded.limit_usd
             RETURNING pg_catalog.to_jsonb(l.*)"
        }
        _ => "WITH d AS (DELETE FROM llm_cost.budgets WHERE id = ($1->>'budget_id')::pg_catalog.int8 RETURNING 1) SELECT NULL::pg_catalog.jsonb WHERE $2 IS NOT NULL",
    };
    let a = pgrx::JsonB(a);
    crate::pg::privilege::as_extension_owner(move || {
        spi::connect_mut(|client| {
            let rows = client.update(sql, None, &[a.into(), me.into()])?;
            rows.first().get_one::<pgrx::JsonB>()
        })
        .unwrap_or_else(|e| {
            crate::pg::fail::internal(format!("llm_cost: could not write the budget: {e}"))
        })
    })
}

/// The current period [start, end) of a budget's rollup (recomputed when now() leaves it).
fn current_period(b: &Budget) -> (i64, i64) {
    let now = crate::pg::lifecycle::transaction_start();
    let (s, e) = b.period.get();
    if s <= now && now < e {
        return (s, e);
    }
    let p = spi::connect(|client| {
        let row = client
            .select(
                "SELECT p, (p AT TIME ZONE $2 + ('1 ' || $1)::pg_catalog.interval) AT TIME ZONE $2
                   FROM (SELECT pg_catalog.date_trunc($1, pg_catalog.now(), $2) AS p) x",
                Some(1),
                &[b.grain.as_str().into(), b.zone.as_str().into()],
            )?
            .first()
            .get_two::<pgrx::datum::TimestampWithTimeZone, pgrx::datum::TimestampWithTimeZone>()?;
        Ok::<_, pgrx::spi::Error>(row)
    })
    .unwrap_or_else(|e| {
        crate::pg::fail::internal(format!(
            "llm_cost: could not compute the budget period: {e}"
        ))
    });
    let to_i64 = |t: Option<pgrx::datum::TimestampWithTimeZone>| -> i64 {
        use pgrx::IntoDatum;
        t.and_then(|t| t.into_datum())
            .map(|d| d.value() as i64)
            .unwrap_or(0)
    };
    let p = (to_i64(p.0), to_i64(p.1));
    b.period.set(p);
    p
}

unsafe fn role_oid(name: &std::ffi::CStr) -> pg_sys::Oid {
    pg_sys::get_role_oid(name.as_ptr(), true)
}

/// May the current user see the budget of this group (check_budget)?
fn may_check(b: &Budget, group: &[Option<String>]) -> bool {
    // SAFETY: role and privilege look-ups on the syscache, in a transaction.
    unsafe {
        let me = pg_sys::GetUserId();
        let admin = role_oid(c"llm_cost_admin");
        if admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(me, admin) {
            return true;
        }
        if crate::pg::privilege::owner_of(b.layout.stripes)
            .is_some_and(crate::pg::privilege::has_rights_of)
        {
            return true;
        }
        // Whoever logs the calls (INSERT on the source) checks budgets for any group.
        if let Some(src) = b.source {
            if pg_sys::pg_class_aclcheck(src, me, pg_sys::ACL_INSERT as pg_sys::AclMode)
                == pg_sys::AclResult::ACLCHECK_OK
            {
                return true;
            }
        }
        if pg_sys::pg_class_aclcheck(b.rollup, me, pg_sys::ACL_SELECT as pg_sys::AclMode)
            != pg_sys::AclResult::ACLCHECK_OK
        {
            return false;
        }
        match b.owner_column {
            None => true,
            Some(i) => {
                let p = crate::features::security::current_principal();
                p.is_some() && group.get(i).cloned().flatten() == p
            }
        }
    }
}

/// Pre-flight check before an LLM call (see the SQL comment in sql/budgets.sql).
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::type_complexity)]
fn check_budget(
    name: Option<&str>,
    group: default!(Option<pgrx::JsonB>, "'{}'"),
    estimated_cost: default!(Option<pgrx::AnyNumeric>, 0),
) -> TableIterator<
    'static,
    (
        name!(allowed, bool),
        name!(spent_usd, pgrx::AnyNumeric),
        name!(limit_usd, Option<pgrx::AnyNumeric>),
        name!(remaining_usd, Option<pgrx::AnyNumeric>),
        name!(period_end, pgrx::datum::TimestampWithTimeZone),
    ),
> {
    // NULL arguments are an error, not an empty answer an application could read as "no budget".
    let (Some(name), Some(group)) = (name, group) else {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "llm_cost.check_budget: name and group must not be NULL",
        )
        .raise();
    };
    let defs = defs();
    let Some(b) = defs.by_name.get(name).cloned() else {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("budget \"{name}\" does not exist"),
        )
        .raise();
    };
    let estimate = estimated_cost.unwrap_or_else(|| pgrx::AnyNumeric::from(0));
    let special = {
        use pgrx::IntoDatum;
        estimate
            .clone()
            .into_datum()
            // SAFETY: into_datum of an AnyNumeric is a numeric datum.
            .is_some_and(|d| unsafe { crate::pg::money::numeric_special(d) })
    };
    if special || estimate < pgrx::AnyNumeric::from(0) {
        crate::pg::fail::user(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("llm_cost.check_budget: estimated_cost must be a finite amount of at least 0, got {estimate}")).raise();
    }
    let serde_json::Value::Object(obj) = group.0 else {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "llm_cost.check_budget: group must be a JSON object of group columns and values",
        )
        .raise();
    };
    for k in obj.keys() {
        if !b.group_cols.contains(k) {
            crate::pg::fail::user(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("llm_cost.check_budget: \"{k}\" is not a group column of budget \"{}\" (its group columns: {})", b.name,
                        if b.group_cols.is_empty() { "none".to_string() } else { b.group_cols.join(", ") }),
            ).raise();
        }
    }
    let mut texts: Vec<Option<String>> = Vec::with_capacity(b.group_cols.len());
    for c in &b.group_cols {
        match obj.get(c) {
            None => crate::pg::fail::user(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("llm_cost.check_budget: the group must give every group column of budget \"{}\"; \"{c}\" is missing", b.name),
            ).raise(),
            Some(serde_json::Value::Null) => texts.push(None),
            Some(serde_json::Value::String(s)) => texts.push(Some(s.clone())),
            Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => texts.push(Some(v.to_string())),
            Some(_) => crate::pg::fail::user(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("llm_cost.check_budget: the value of \"{c}\" must be a string, number, boolean or null")).raise(),
        }
    }
    if !may_check(&b, &texts) {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for budget \"{}\" of this group", b.name),
        )
        .raise();
    }
    // Long text values are keyed bounded in the sums (pg::row::bounded_text): ask for the same.
    let texts: Vec<Option<String>> = texts
        .into_iter()
        .zip(&b.group_input)
        .map(|(t, (input, _, typmod))| {
            // As rollups::group_value: text, and varchar without a length.
            let textlike = *input == pg_sys::Oid::from(pg_sys::F_TEXTIN)
                || (*input == pg_sys::Oid::from(pg_sys::F_VARCHARIN) && *typmod < 0);
            t.map(|s| {
                if textlike {
                    crate::pg::row::bounded_str(&s)
                } else {
                    s
                }
            })
        })
        .collect();
    let (start, end) = current_period(&b);
    let datums: Vec<Option<pg_sys::Datum>> = texts
        .iter()
        .zip(&b.group_input)
        .map(|(t, (input, ioparam, typmod))| {
            // SAFETY: as in spent_of's caller above: the column's input function with its parameters.
            t.as_ref().map(|s| unsafe {
                let c = std::ffi::CString::new(s.as_str()).unwrap_or_default();
                pg_sys::OidInputFunctionCall(*input, c.as_ptr() as *mut _, *ioparam, *typmod)
            })
        })
        .collect();
    // SAFETY: the group datums match the budget's group columns; the active snapshot is the statement's.
    let spent_d = unsafe { spent_of(&b, start, &datums, &texts, pg_sys::GetActiveSnapshot()) };
    // SAFETY: spent_of returns a numeric datum.
    let spent = unsafe { pgrx::AnyNumeric::from_datum(spent_d, false) }
        .unwrap_or_else(|| pgrx::AnyNumeric::from(0));
    let period_end =
        // SAFETY: a timestamptz value as a datum (by value).
        unsafe { pgrx::datum::TimestampWithTimeZone::from_datum(pg_sys::Datum::from(end), false) }
            .unwrap_or_else(|| crate::pg::fail::internal("llm_cost: bad period end"));
    let limit = b.limit_of(&texts);
    let limit_n: pgrx::AnyNumeric = limit.limit.parse().unwrap_or_else(|_| {
        crate::pg::fail::internal(format!("llm_cost: bad limit {}", limit.limit))
    });
    // Decide (llm_cost_core::budget), then answer.
    let v = llm_cost_core::budget::verdict(
        b.covers(&texts),
        b.hard,
        &spent,
        &estimate,
        limit_n,
        pgrx::AnyNumeric::from(0),
    );
    TableIterator::once((v.allowed, spent, v.limit, v.remaining, period_end))
}

/// Budget checks in the transaction's lifecycle: after the rollup sums are written.
pub static LIFECYCLE: crate::pg::lifecycle::Participant = crate::pg::lifecycle::Participant {
    pre_commit: check_at_commit,
    end: |_| {},
    sub_abort: |_| {},
    sub_commit: |_, _| {},
};

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::test_support::one;
    use pgrx::prelude::*;

    fn setup() {
        Spi::run(
            "CREATE TABLE public.b_calls (at timestamptz NOT NULL DEFAULT now(), team text, seat int, model text, input_tokens int, output_tokens int, cost_usd numeric);
             SELECT llm_cost.track('public.b_calls', time_column => 'at');
             SELECT llm_cost.create_rollup('public.b_team_month', 'public.b_calls', 'month', '{team,seat}');
             SELECT llm_cost.create_rollup('public.b_all_day', 'public.b_calls', 'day', '{}');
             INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('t', 'b-model', 1);",
        )
        .unwrap();
    }

    // Every bad argument of create_budget, set_budget_limit, drop_budget and check_budget, and a
    // role without rights, are tested as SQL: tests/sql/budget_errors.sql.

    #[pg_test]
    fn check_budget_status_and_group_limits() {
        setup();
        Spi::run(
            "SELECT llm_cost.create_budget('cap', 'public.b_team_month', 2, '{0.5,1}', hard => true);
             SELECT llm_cost.create_budget('soft', 'public.b_team_month', 1, filter => '{\"team\": \"red\"}');
             SELECT llm_cost.create_budget('daily', 'public.b_all_day', 3);
             INSERT INTO public.b_calls (team, seat, model, input_tokens, output_tokens)
             VALUES ('red', 1, 'b-model', 1500000, 0), ('red', 2, 'b-model', 100000, 0), ('blue', 1, 'b-model', 250000, 0);",
        )
        .unwrap();
        let q = |sql: &str| one(sql).unwrap_or_else(|| "NULL".into());
        // The statement's own rows count (the transaction's snapshot).
        assert_eq!(
            q("SELECT format('%s %s %s %s', allowed, spent_usd, limit_usd, remaining_usd) FROM llm_cost.check_budget('cap', '{\"team\": \"red\", \"seat\": 1}', 0.5)"),
            "t 1.5 2 0.5"
        );
        assert_eq!(q("SELECT allowed::text FROM llm_cost.check_budget('cap', '{\"team\": \"red\", \"seat\": 1}', 0.51)"), "false");
        // A number given as a string, or as a number: the same group.
        assert_eq!(q("SELECT spent_usd::text FROM llm_cost.check_budget('cap', '{\"team\": \"red\", \"seat\": \"1\"}')"), "1.5");
        // A group without spend; NULL group values.
        assert_eq!(q("SELECT format('%s %s', spent_usd, remaining_usd) FROM llm_cost.check_budget('cap', '{\"team\": \"green\", \"seat\": null}')"), "0 2");
        // Not covered by the filter: allowed, no limit.
        assert_eq!(q("SELECT format('%s %s', allowed, limit_usd IS NULL) FROM llm_cost.check_budget('soft', '{\"team\": \"blue\", \"seat\": 1}', 100)"), "t t");
        // Soft budgets allow past the limit.
        assert_eq!(q("SELECT allowed::text FROM llm_cost.check_budget('soft', '{\"team\": \"red\", \"seat\": 1}', 100)"), "true");
        // Platform-wide.
        assert_eq!(q("SELECT format('%s %s', spent_usd, period_end = date_trunc('day', now(), 'UTC') + interval '1 day') FROM llm_cost.check_budget('daily', '{}')"), "1.85 t");
        // A group's own limit.
        Spi::run(
            "SELECT llm_cost.set_budget_limit('cap', '{\"team\": \"red\", \"seat\": 1}', 1.25)",
        )
        .unwrap();
        assert_eq!(q("SELECT format('%s %s', allowed, remaining_usd) FROM llm_cost.check_budget('cap', '{\"team\": \"red\", \"seat\": 1}')"), "f 0");
        assert_eq!(
            q("SELECT string_agg(format('%s %s %s %s %s', budget, \"group\"->>'team', spent_usd, limit_usd, state), '; ' ORDER BY budget, \"group\"::text) FROM llm_cost.budget_status"),
            "cap blue 0.25 2 ok; cap red 1.5 1.25 exceeded; cap red 0.1 2 ok; daily  1.85 3 warning; soft red 1.5 1 exceeded; soft red 0.1 1 ok"
        );
        // The rollup's own budget view: its group columns with their types.
        assert_eq!(
            q("SELECT string_agg(format('%s %s %s %s', budget, team, seat + 0, spent_usd), '; ' ORDER BY budget, team, seat) FROM public.b_team_month_budget_status"),
            "cap blue 1 0.25; cap red 1 1.5; cap red 2 0.1; soft red 1 1.5; soft red 2 0.1"
        );
        assert_eq!(
            q("SELECT format('%s %s', budget, spent_usd) FROM public.b_all_day_budget_status"),
            "daily 1.85"
        );
        // Back to the budget's limit.
        Spi::run(
            "SELECT llm_cost.set_budget_limit('cap', '{\"team\": \"red\", \"seat\": 1}', NULL)",
        )
        .unwrap();
        assert_eq!(q("SELECT limit_usd::text FROM llm_cost.check_budget('cap', '{\"team\": \"red\", \"seat\": 1}')"), "2");
        assert_eq!(q("SELECT count(*)::text FROM llm_cost.budget_limits"), "0");
        // The view goes with the rollup's last budget, or with the rollup.
        Spi::run("SELECT llm_cost.drop_budget('cap')").unwrap();
        assert_eq!(
            q("SELECT (to_regclass('public.b_team_month_budget_status') IS NOT NULL)::text"),
            "true"
        );
        Spi::run("SELECT llm_cost.drop_budget('soft')").unwrap();
        assert_eq!(
            q("SELECT (to_regclass('public.b_team_month_budget_status') IS NULL)::text"),
            "true"
        );
        Spi::run("SELECT llm_cost.drop_rollup('public.b_all_day')").unwrap();
        assert_eq!(q("SELECT (to_regclass('public.b_all_day_budget_status') IS NULL)::text || ' ' || count(*) FROM llm_cost.budgets"), "true 0");
        // A view of that name that llm_cost did not make is left alone.
        Spi::run("CREATE VIEW public.b_team_month_budget_status AS SELECT 1 AS mine").unwrap();
        Spi::run("SELECT llm_cost.create_budget('again', 'public.b_team_month', 3)").unwrap();
        assert_eq!(q("SELECT string_agg(attname, ',') FROM pg_attribute WHERE attrelid = 'public.b_team_month_budget_status'::regclass"), "mine");
    }
}
