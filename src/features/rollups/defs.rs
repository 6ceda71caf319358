//! A source's rollups as the row path needs them: column positions in the source (or the
//! partition a row landed in) and in each table of sums, read once per backend from
//! `llm_cost._rollup_defs` (whose columns `sql/rollups.sql` lists) and kept until a relation
//! they name changes.

use super::stripes::Layout;
use crate::pg::spi;
use pgrx::prelude::*;
use pgrx::IntoDatum;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    static DEFS: RefCell<rustc_hash::FxHashMap<pg_sys::Oid, Rc<SourceDefs>>> = RefCell::new(Default::default());
}

#[derive(Clone, Copy)]
pub(super) struct Att {
    pub(super) attno: i32,
    pub(super) typid: pg_sys::Oid,
    pub(super) typmod: i32,
    pub(super) len: i16,
    pub(super) byval: bool,
    /// A generated column (computed after BEFORE triggers run).
    pub(super) generated: bool,
}

pub(super) struct RollupDef {
    pub(super) grain: pg_sys::Datum, // text, TopMemoryContext
    pub(super) zone: pg_sys::Datum,  // text, TopMemoryContext
    pub(super) step_us: i64,         // more than one period, less than two
    pub(super) groups: Vec<Att>,
    /// Position of each of `groups` in `SourceDefs::union`.
    pub(super) in_union: Vec<usize>,
    /// Where the flush writes.
    pub(super) layout: Layout,
    /// Last period computed: [start, end).
    pub(super) period: std::cell::Cell<(i64, i64)>,
}

/// The rollups of one source (`Defs` outside this module).
pub struct SourceDefs {
    /// The source (a partition has its own definitions, with its own column numbers).
    pub(super) relid: pg_sys::Oid,
    /// Distinct per load: sums made with other definitions never merge with these.
    pub(super) generation: u32,
    pub(super) rollups: Vec<RollupDef>,
    /// Every column some rollup groups by, once.
    pub(super) union: Vec<Att>,
    pub(super) time: Option<Att>,
    pub(super) cost: Option<Att>,
    pub(super) model: Option<Att>,
    pub(super) cost_source: Option<Att>,
    pub(super) tokens: [Option<Att>; 4],
    pub(super) error: Option<Att>,
    pub(super) latency: Option<Att>,
    /// Without a cost_source column: the cost column's default, which the cost trigger stores
    /// for a row it could not price (NOT NULL cost columns).
    pub(super) cost_default: Option<i128>,
    /// An integer cost column's unit (decimal places of a dollar, `track(..., cost_unit)`);
    /// None: a numeric cost in USD.
    pub(super) cost_scale: Option<u32>,
    /// Zone of a timestamp or date time column (text, TopMemoryContext); None: UTC.
    pub(super) zone: Option<pg_sys::Datum>,
    /// A shard of a Citus distributed source: its tables of sums are shards too, which no
    /// budget names (budgets name the distributed tables, on the coordinator).
    pub(super) shard: bool,
}

impl SourceDefs {
    /// Whether the source has no rollups.
    pub fn is_empty(&self) -> bool {
        self.rollups.is_empty()
    }

    /// Whether a rollup reads a generated column (whose value a BEFORE trigger does not see).
    pub fn reads_generated(&self) -> bool {
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

impl RollupDef {
    pub(super) fn period_start(&self, ts: i64) -> i64 {
        let (s, e) = self.period.get();
        if ts >= s && ts < e {
            return s;
        }
        // SAFETY: timestamptz_trunc_zone(text, timestamptz, text) with the rollup's grain and zone (text datums) and a timestamp.
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

pub(super) fn att_of(tupdesc: pg_sys::TupleDesc, attno: Option<i16>) -> Option<Att> {
    let attno = attno? as i32;
    if attno <= 0 {
        return None;
    }
    // SAFETY: attno was checked against the descriptor's natts before indexing its attributes.
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

pub(super) fn persistent_text(s: &str) -> pg_sys::Datum {
    // SAFETY: one allocation in TopMemoryContext: the datum lives for the backend.
    unsafe { pgrx::PgMemoryContexts::TopMemoryContext.switch_to(|_| s.into_datum().expect("text")) }
}

/// `llm_cost_rollup`, or its copy on a Citus shard (`llm_cost_rollup_<shard id>`).
pub fn is_rollup_trigger(name: &[u8]) -> bool {
    name == b"llm_cost_rollup"
        || name
            .strip_prefix(b"llm_cost_rollup_")
            .is_some_and(|id| !id.is_empty() && id.iter().all(|c| c.is_ascii_digit()))
}

/// The argument of the relation's `llm_cost_rollup` trigger: None without that trigger,
/// Some("") for the trigger of a plain table (definitions in the registry), Some(json) on a shard
/// of a Citus distributed table (definitions by column name: see `_rollup_shard_args`).
///
/// # Safety
/// `rel` must be an open relation.
pub(super) unsafe fn rollup_trigger_arg(rel: pg_sys::Relation) -> Option<String> {
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

/// The source's columns a rollup reads, as `_rollup_defs` names their attribute numbers: time,
/// cost, model, cost_source, the four token counts, error, latency.
const SOURCE_COLUMNS: [&str; 10] = [
    "time_att",
    "cost_att",
    "model_att",
    "source_att",
    "in_att",
    "out_att",
    "cr_att",
    "cw_att",
    "error_att",
    "latency_att",
];

/// One rollup's definition as `_rollup_defs` returns it: id, grain, time zone, group columns of
/// the source, the source columns of `SOURCE_COLUMNS`, the table of sums, its group columns and
/// its `COLUMNS` (attribute numbers).
type DefRow = (
    i64,
    String,
    String,
    Vec<i16>,
    [Option<i16>; 10],
    pg_sys::Oid,
    Vec<i16>,
    Vec<i16>,
);

/// The attribute numbers of the named columns of `rel` that exist, in the order named (as
/// `llm_cost._attnums`: a name it lacks is left out).
fn attnums<'a>(rel: pg_sys::Oid, names: impl IntoIterator<Item = &'a str>) -> Vec<i16> {
    names.into_iter().filter_map(|n| attnum(rel, n)).collect()
}

fn attnum(rel: pg_sys::Oid, name: &str) -> Option<i16> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a catalog cache look-up with a NUL-terminated name (dropped columns are not found).
    let a = unsafe { pg_sys::get_attnum(rel, c.as_ptr()) };
    (a > 0).then_some(a)
}

/// What `llm_cost._rollup_defs` says for a shard of a Citus distributed source (`rel`: where the
/// row landed, `root`: the source's shard, the root of rel's partition tree), from the trigger's
/// argument (`_rollup_shard_args`, by column name): the sums go to the shard of each rollup's
/// table of sums whose hash range covers `root`'s, on this node. Read from the catalogs and
/// Citus's metadata directly, no SQL: every new worker backend does this for every shard it
/// writes, and Citus opens new ones for each multi-shard statement by default.
fn shard_rows(rel: pg_sys::Oid, root: pg_sys::Oid, defs: &serde_json::Value) -> Vec<DefRow> {
    use crate::pg::citus;
    use pgrx::PgSqlErrorCode as Code;
    let Some(me) = citus::shard_of(root) else {
        crate::pg::fail::user(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("llm_cost: {} is not a shard of a Citus distributed table, but its rollup trigger is one for shards", crate::pg::privilege::relname(root)),
        )
        .hint("Call llm_cost.create_rollup() again, or drop the trigger llm_cost_rollup of this table.")
        .raise()
    };
    let text =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let texts = |v: &serde_json::Value, k: &str| -> Vec<String> {
        v.get(k)
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let src = [
        "time",
        "cost",
        "model",
        "cost_source",
        "input",
        "output",
        "cache_read",
        "cache_write",
        "error",
        "latency",
    ]
    .map(|k| text(defs, k).and_then(|n| attnum(rel, &n)));
    let owner = crate::pg::privilege::owner_of(me.logical);
    let fixed_names: Vec<&str> = super::stripes::COLUMNS.iter().map(|c| c.name).collect();
    let mut out = Vec::new();
    for d in defs
        .get("rollups")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        let id = d.get("id").and_then(|x| x.as_i64()).unwrap_or(0);
        let groups = texts(d, "groups");
        let named = text(d, "stripes").unwrap_or_default();
        let shell = citus::qualified_relid(&named);
        // The argument is the trigger's, which whoever owns the source could write: it may only
        // name tables of sums of the source's owner (as create_rollup checks on the coordinator).
        if let Some(shell) = shell {
            let allowed = match (owner, crate::pg::privilege::owner_of(shell)) {
                // SAFETY: a privilege check on the catalog cache, in a transaction.
                (Some(o), Some(s)) => unsafe { pg_sys::has_privs_of_role(o, s) },
                _ => false,
            };
            if !allowed {
                crate::pg::fail::user(
                    Code::ERRCODE_INSUFFICIENT_PRIVILEGE,
                    format!(
                        "llm_cost: the rollup trigger of {} names {}, which its owner does not own",
                        crate::pg::privilege::relname(me.logical),
                        crate::pg::privilege::relname(shell)
                    ),
                )
                .raise();
            }
        }
        // ... and the shard of it must be on this node.
        let stripes = shell.and_then(|sh| {
            citus::covering_shard(sh, &me).and_then(|sid| citus::shard_rel(sh, sid))
        });
        let Some(stripes) = stripes else {
            crate::pg::fail::user(
                Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("llm_cost: rollup {id} has no shard of its table of sums {named} on this node whose hash range covers shard {} of its source",
                        crate::pg::privilege::relname(root)),
            )
            .hint("Its table of sums must stay co-located with the source (alter_distributed_table(..., cascade_to_colocated => true) keeps it so); drop the rollup and create it again to rebuild it from the rows.")
            .raise()
        };
        out.push((
            id,
            text(d, "grain").unwrap_or_default(),
            text(d, "time_zone").unwrap_or_default(),
            attnums(rel, groups.iter().map(String::as_str)),
            src,
            stripes,
            attnums(
                stripes,
                texts(d, "stripes_groups").iter().map(String::as_str),
            ),
            attnums(stripes, fixed_names.iter().copied()),
        ));
    }
    out
}

pub(super) fn load_defs(
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
        cost_scale: None,
        zone: None,
        shard: shard_args.is_some(),
    };
    // Definitions are llm_cost's own bookkeeping: read as the extension's owner through a
    // function PUBLIC may not execute. On a Citus shard, from the trigger's argument and the
    // catalogs directly (no SQL: each new worker backend does this for every shard it writes).
    let shard_json: Option<serde_json::Value> = shard_args.map(|args| {
        serde_json::from_str(args).unwrap_or_else(|e| {
            crate::pg::fail::internal(format!(
                "llm_cost: the rollup trigger of {} has an argument that is not JSON: {e}",
                crate::pg::privilege::relname(root)
            ))
        })
    });
    let rows: Vec<_> = match &shard_json {
        Some(defs) => shard_rows(relid, root, defs),
        None => crate::pg::privilege::as_extension_owner(|| {
            spi::connect(|c| {
                let t = c.select(
                    "SELECT * FROM llm_cost._rollup_defs($1, $2)",
                    None,
                    &[root.into(), relid.into()],
                )?;
                let mut v = Vec::new();
                for r in t {
                    // By name: the columns `_rollup_defs` returns.
                    v.push((
                        r.get_by_name::<i64, _>("id")?.unwrap_or(0),
                        r.get_by_name::<String, _>("grain")?.unwrap_or_default(),
                        r.get_by_name::<String, _>("time_zone")?.unwrap_or_default(),
                        r.get_by_name::<Vec<i16>, _>("group_attnums")?
                            .unwrap_or_default(),
                        SOURCE_COLUMNS.map(|c| r.get_by_name::<i16, _>(c).ok().flatten()),
                        r.get_by_name::<pg_sys::Oid, _>("stripes")?
                            .unwrap_or(pg_sys::InvalidOid),
                        r.get_by_name::<Vec<i16>, _>("stripes_group_attnums")?
                            .unwrap_or_default(),
                        r.get_by_name::<Vec<i16>, _>("stripes_attnums")?
                            .unwrap_or_default(),
                    ));
                }
                Ok::<_, pgrx::spi::Error>(v)
            })
        })
        .unwrap_or_else(|e| {
            crate::pg::fail::internal(format!("llm_cost: could not read rollup definitions: {e}"))
        }),
    };
    if !rows.is_empty() {
        let field = |k: &str| {
            shard_json
                .as_ref()
                .and_then(|j| j.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let (default, zone) = match shard_args {
            Some(_) => (field("cost_default"), field("zone")),
            None => spi::get_two_with_args::<String, String>(
                // (a 0.1.0 schema, before ALTER EXTENSION UPDATE, has no time_zone column: UTC)
                "SELECT t.cost_default::pg_catalog.text, pg_catalog.to_jsonb(t) ->> 'time_zone' FROM llm_cost.tracked_tables t WHERE t.log_table = $1",
                &[root.into()],
            )
            .unwrap_or((None, None)),
        };
        let unit = match shard_args {
            Some(_) => field("cost_unit"),
            None => spi::get_one_with_args::<String>(
                "SELECT pg_catalog.to_jsonb(t) ->> 'cost_unit' FROM llm_cost.tracked_tables t WHERE t.log_table = $1",
                &[root.into()],
            )
            .ok()
            .flatten(),
        };
        out.cost_scale = unit.and_then(|u| llm_cost_core::pricing::cost_unit_scale(&u));
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
        let mut stripes_fixed = stripes_fixed;
        if stripes_fixed.len() == super::stripes::COLUMNS_0_10 {
            // A table of sums made before 0.11.0, until the update adds the later columns.
            stripes_fixed.resize(super::stripes::COLUMNS.len(), 0);
        }
        let fixed: [i16; super::stripes::COLUMNS.len()] = stripes_fixed.try_into().unwrap_or_else(|_| {
            crate::pg::fail::user(pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, format!("llm_cost: the stripes table of rollup {id} is missing columns; recreate the rollup")).raise()
        });
        if stripes_groups.len() != groups.len() {
            crate::pg::fail::user(pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, format!("llm_cost: the group columns of rollup {id} no longer match its source and stripes table; recreate the rollup")).raise();
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
            layout: Layout {
                stripes,
                groups: stripes_groups,
                fixed,
                probe_keys: Default::default(),
                indexes_checked: Default::default(),
            },
            period: std::cell::Cell::new((i64::MAX, i64::MIN)),
        });
    }
    out
}

pub(super) fn defs_for(relid: pg_sys::Oid, rel: pg_sys::Relation) -> Rc<SourceDefs> {
    if let Some(d) = DEFS.with(|d| d.borrow().get(&relid).cloned()) {
        return d;
    }
    let root = crate::pg::row::root_of(relid, rel);
    // SAFETY: rel is the open relation of the trigger (or COPY).
    let arg = unsafe { rollup_trigger_arg(rel) };
    let shard_args = arg.as_deref().filter(|a| !a.is_empty());
    // SAFETY: as above.
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
pub(super) fn refuse_unfed_shard(root: pg_sys::Oid) {
    let logical = crate::pg::privilege::as_extension_owner(|| {
        spi::get_one_with_args::<String>(
            "SELECT logical::pg_catalog.text FROM llm_cost._citus_shard_logical($1)",
            &[root.into()],
        )
    })
    .ok()
    .flatten();
    if let Some(table) = logical {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("llm_cost: the rollups of {table} were created before Citus distributed it: their sums cannot follow its shards"),
        )
        .hint(format!("Call SELECT llm_cost.distribute_rollups('{table}') on the coordinator: their sums then move into shards next to the table's."))
        .raise();
    }
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
