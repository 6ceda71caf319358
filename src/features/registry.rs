//! The registry tables (`tracked_tables`, `rollups`, `retention_policies`, `row_security`): what
//! llm_cost records about users' tables. Nobody but the extension's owner may write them
//! directly; the API functions (`track`, `create_rollup`, `set_retention`,
//! `enable_row_security`, and their inverses) write them through `_registry_put` and
//! `_registry_delete`, which check that the caller has the owner's rights over **every** table
//! the row names (a rollup's view, stripes table and source), then write as the extension's
//! owner. A role can thus change what llm_cost records only about its own tables.

use crate::pg::spi;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

struct Registry {
    name: &'static str,
    /// Columns holding relations (regclass, passed as OIDs), the key first.
    relations: &'static [&'static str],
    /// Column set to the caller's name.
    by: Option<&'static str>,
    put: &'static str,
    /// Run before `put` (same argument): removes the row `put` replaces, where `put` is a plain
    /// INSERT of the whole row.
    clear: Option<&'static str>,
    delete: &'static str,
}

const REGISTRIES: &[Registry] = &[
    Registry {
        name: "tracked_tables",
        relations: &["log_table"],
        by: Some("tracked_by"),
        // The whole row is replaced: `SELECT *` takes the columns the table has, so the same
        // statements serve a database whose SQL is still an older version's (an older update
        // script calling track() with this library), whatever columns it has.
        put: "INSERT INTO llm_cost.tracked_tables AS t SELECT * FROM pg_catalog.jsonb_populate_record(NULL::llm_cost.tracked_tables, $1)
              RETURNING pg_catalog.to_jsonb(t.*)",
        clear: Some("DELETE FROM llm_cost.tracked_tables
                      WHERE log_table OPERATOR(pg_catalog.=) (pg_catalog.jsonb_populate_record(NULL::llm_cost.tracked_tables, $1)).log_table"),
        // Everything llm_cost keeps about the table goes with it.
        delete: "SELECT llm_cost._forget_table($1)",
    },
    Registry {
        name: "rollups",
        relations: &["rollup", "stripes", "source"],
        by: Some("created_by"),
        put: "INSERT INTO llm_cost.rollups AS r (rollup, stripes, source, grain, group_by, time_zone, created_by)
              SELECT n.rollup, n.stripes, n.source, n.grain, n.group_by, n.time_zone, n.created_by
                FROM pg_catalog.jsonb_populate_record(NULL::llm_cost.rollups, $1) n
               WHERE (pg_catalog.now() AT TIME ZONE n.time_zone) IS NOT NULL
              RETURNING pg_catalog.to_jsonb(r.*)",
        clear: None,
        delete: "DELETE FROM llm_cost.rollups WHERE rollup = $1",
    },
    Registry {
        name: "retention_policies",
        relations: &["log_table"],
        by: Some("created_by"),
        put: "INSERT INTO llm_cost.retention_policies AS p (log_table, keep, created_by)
              SELECT n.log_table, n.keep, n.created_by FROM pg_catalog.jsonb_populate_record(NULL::llm_cost.retention_policies, $1) n
              ON CONFLICT ON CONSTRAINT retention_policies_pkey DO UPDATE
                 SET keep = excluded.keep, created_at = pg_catalog.now(), created_by = excluded.created_by
              RETURNING pg_catalog.to_jsonb(p.*)",
        clear: None,
        delete: "DELETE FROM llm_cost.retention_policies WHERE log_table = $1",
    },
    Registry {
        name: "row_security",
        relations: &["rel", "target"],
        by: None,
        put: "INSERT INTO llm_cost.row_security AS s (rel, target, owner_column)
              SELECT n.rel, n.target, n.owner_column FROM pg_catalog.jsonb_populate_record(NULL::llm_cost.row_security, $1) n
              ON CONFLICT ON CONSTRAINT row_security_pkey DO UPDATE SET owner_column = excluded.owner_column, enabled_at = pg_catalog.now()
              RETURNING pg_catalog.to_jsonb(s.*)",
        clear: None,
        delete: "DELETE FROM llm_cost.row_security WHERE rel = $1",
    },
];

fn registry(name: &str) -> &'static Registry {
    REGISTRIES
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| {
            crate::pg::fail::user(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("llm_cost: no registry \"{name}\""),
            )
            .raise()
        })
}

/// 42501 unless the caller has the rights of `relid`'s owner.
fn check_owner(relid: pg_sys::Oid, what: &str) {
    crate::pg::privilege::require_owner_rights(relid, &format!("change {what}"));
}

fn oid_field(row: &serde_json::Value, col: &str) -> Option<pg_sys::Oid> {
    match row.get(col) {
        None | Some(serde_json::Value::Null) => None,
        // jsonb_build_object writes an oid as a JSON string, a number as a number: take both.
        Some(v) => match v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse::<u64>().ok()))
            .filter(|n| *n > 0 && *n <= u32::MAX as u64)
        {
            Some(n) => Some(pg_sys::Oid::from(n as u32)),
            None => crate::pg::fail::user(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("llm_cost: {col} must be given as a relation OID"),
            )
            .raise(),
        },
    }
}

/// Inserts or replaces a registry row (JSON of the row; relations as OIDs), after checking that
/// the caller owns every relation it names. Returns the row as stored.
#[pg_extern(volatile, parallel_unsafe)]
pub fn _registry_put(registry_name: &str, row: pgrx::JsonB) -> pgrx::JsonB {
    let reg = registry(registry_name);
    let mut row = row.0;
    if !row.is_object() {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "llm_cost: a registry row is a JSON object",
        )
        .raise();
    }
    let key = oid_field(&row, reg.relations[0]);
    if key.is_none() {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("llm_cost: {} must not be NULL", reg.relations[0]),
        )
        .raise();
    }
    for col in reg.relations {
        if let Some(oid) = oid_field(&row, col) {
            check_owner(
                oid,
                &format!("what llm_cost records about it ({}.{col})", reg.name),
            );
        }
    }
    if let Some(by) = reg.by {
        // SAFETY: the current user exists (GetUserNameFromId errors otherwise); the name is copied at once.
        let me = unsafe {
            std::ffi::CStr::from_ptr(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false))
        };
        row[by] = serde_json::Value::String(me.to_string_lossy().into_owned());
    }
    let sql = reg.put;
    crate::pg::privilege::as_extension_owner(move || {
        if let Some(clear) = reg.clear {
            spi::run_with_args(clear, &[pgrx::JsonB(row.clone()).into()]).unwrap_or_else(|e| {
                crate::pg::fail::internal(format!(
                    "llm_cost: could not write llm_cost.{}: {e}",
                    reg.name
                ))
            });
        }
        spi::get_one_with_args::<pgrx::JsonB>(sql, &[pgrx::JsonB(row).into()])
            .unwrap_or_else(|e| {
                crate::pg::fail::internal(format!(
                    "llm_cost: could not write llm_cost.{}: {e}",
                    reg.name
                ))
            })
            .unwrap_or_else(|| {
                crate::pg::fail::internal(format!(
                    "llm_cost: llm_cost.{} refused the row",
                    reg.name
                ))
            })
    })
}

/// Deletes the registry row of `key` (a dropped relation's row, or one of a relation the caller
/// owns). Returns whether there was one.
#[pg_extern(volatile, parallel_unsafe)]
pub fn _registry_delete(registry_name: &str, key: pg_sys::Oid) -> bool {
    let reg = registry(registry_name);
    if crate::pg::privilege::owner_of(key).is_some() {
        check_owner(
            key,
            &format!("what llm_cost records about it ({})", reg.name),
        );
    }
    let (sql, table, col) = (reg.delete, reg.name, reg.relations[0]);
    crate::pg::privilege::as_extension_owner(move || {
        let had = spi::get_one_with_args::<bool>(
            &format!("SELECT EXISTS (SELECT 1 FROM llm_cost.{table} WHERE {col} = $1)"),
            &[key.into()],
        )
        .ok()
        .flatten()
        .unwrap_or(false);
        spi::run_with_args(sql, &[key.into()]).unwrap_or_else(|e| {
            crate::pg::fail::internal(format!("llm_cost: could not write llm_cost.{table}: {e}"))
        });
        had
    })
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::test_support::{error_of, one};
    use pgrx::prelude::*;

    fn setup_roles() {
        Spi::run(
            "CREATE ROLE t_hostile NOLOGIN; CREATE SCHEMA t_hostile_s AUTHORIZATION t_hostile;
             CREATE ROLE t_owner NOLOGIN; CREATE SCHEMA t_owner_s AUTHORIZATION t_owner;",
        )
        .unwrap();
    }

    /// Item 1: a role with no grants changes nothing llm_cost records about tables it does not own.
    #[pg_test]
    fn a_role_without_grants_cannot_switch_the_ledger_off() {
        setup_roles();
        Spi::run("SET ROLE t_hostile").unwrap();
        let denied = [
            "PERFORM llm_cost._forget_table('llm_cost.usage_events'::regclass::oid)",
            "PERFORM llm_cost._registry_delete('tracked_tables', 'llm_cost.usage_events'::regclass::oid)",
            "PERFORM llm_cost._registry_delete('rollups', 'llm_cost.usage_daily'::regclass::oid)",
            "PERFORM llm_cost._record_unpriced('llm_cost.usage_events'::regclass::oid, 'x', 1, now(), now())",
            "PERFORM llm_cost._record_run('llm_cost.usage_events'::regclass::oid, 'x', now(), now(), 0, 0, NULL, 'x')",
            "PERFORM * FROM llm_cost._rollup_defs('llm_cost.usage_events', 'llm_cost.usage_events')",
            "PERFORM llm_cost.untrack('llm_cost.usage_events')",
            "PERFORM llm_cost.set_retention('llm_cost.usage_events', '1 day')",
            "PERFORM llm_cost.drop_rollup('llm_cost.usage_daily')",
            "PERFORM llm_cost.disable_row_security('llm_cost.usage_events')",
            "DELETE FROM llm_cost.tracked_tables",
            "UPDATE llm_cost.rollups SET time_zone = 'No/Where'",
            "INSERT INTO llm_cost.retention_policies (log_table, keep) VALUES ('llm_cost.usage_events', '1 day')",
            "DELETE FROM llm_cost.row_security",
            "PERFORM llm_cost._retention_purge_batch('llm_cost.usage_events'::regclass::oid, 'occurred_at', now(), 10)",
            "PERFORM llm_cost._retention_drop_partitions('llm_cost.usage_events'::regclass::oid, 'occurred_at', now())",
        ];
        for sql in denied {
            let e = error_of(sql);
            assert!(e.starts_with("42501"), "{sql}: {e}");
        }
        // Its own view and table as the stripes of someone else's source: refused by the API, and
        // by the registry table itself.
        Spi::run(
            "CREATE TABLE t_hostile_s.sink (period_start timestamptz, stripe int);
             CREATE VIEW t_hostile_s.v AS SELECT 1 AS x;",
        )
        .unwrap();
        let e = error_of(
            "PERFORM llm_cost._registry_put('rollups', jsonb_build_object('rollup', 't_hostile_s.v'::regclass::oid,
               'stripes', 't_hostile_s.sink'::regclass::oid, 'source', 'llm_cost.usage_events'::regclass::oid,
               'grain', 'day', 'group_by', '{}'::text[], 'time_zone', 'UTC'))",
        );
        assert_eq!(e, "42501: must be owner of llm_cost.usage_events to change what llm_cost records about it (rollups.source)");
        let e = error_of(
            "INSERT INTO llm_cost.rollups (rollup, stripes, source, grain, group_by) VALUES ('t_hostile_s.v', 't_hostile_s.sink', 'llm_cost.usage_events', 'day', '{}')",
        );
        assert!(e.starts_with("42501"), "{e}");
        Spi::run("RESET ROLE").unwrap();
        // Nothing changed: still tracked, still two rollups, rows still summed.
        assert_eq!(one("SELECT count(*)::text FROM llm_cost.tracked_tables WHERE log_table = 'llm_cost.usage_events'::regclass").as_deref(), Some("1"));
        assert_eq!(one("SELECT count(*)::text FROM llm_cost.rollups WHERE source = 'llm_cost.usage_events'::regclass").as_deref(), Some("2"));
        Spi::run("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, user_id) VALUES ('gpt-4o', 1000000, 0, 'u')").unwrap();
        assert_eq!(
            one("SELECT sum(cost_usd)::text FROM llm_cost.usage_daily").as_deref(),
            Some("2.5")
        );
        // The superuser's API still works, and the registry rows carry who wrote them.
        assert_eq!(
            error_of("PERFORM llm_cost.set_retention('llm_cost.usage_events', '400 days')"),
            "ok"
        );
        assert_eq!(
            one("SELECT created_by::text FROM llm_cost.retention_policies").as_deref(),
            Some("postgres")
        );
        // A bad time zone never reaches the registry, even from an owner calling the internal function.
        let e = error_of(
            "PERFORM llm_cost._registry_put('rollups', jsonb_build_object('rollup', 'llm_cost.usage_daily'::regclass::oid,
               'stripes', 'llm_cost.usage_daily_stripes'::regclass::oid, 'source', 'llm_cost.usage_events'::regclass::oid,
               'grain', 'day', 'group_by', '{}'::text[], 'time_zone', 'No/Where'))",
        );
        assert!(e.starts_with("22023"), "{e}");
        // Bad input to the internal functions: a relation not given as an OID, an unknown registry
        // or action, a row that is not an object, a missing key.
        for (sql, code) in [
            ("PERFORM llm_cost._registry_put('tracked_tables', '{\"log_table\": \"llm_cost.usage_events\"}')", "22023"),
            ("PERFORM llm_cost._registry_put('tracked_tables', '{\"log_table\": 12.5}')", "22023"),
            ("PERFORM llm_cost._registry_put('no_such_registry', '{}')", "22023"),
            ("PERFORM llm_cost._registry_put('tracked_tables', '[1]')", "22023"),
            ("PERFORM llm_cost._registry_put('tracked_tables', '{}')", "22004"),
            ("PERFORM llm_cost._registry_delete('no_such_registry', 1)", "22023"),
            ("PERFORM llm_cost._as_table_owner('drop_everything', 'llm_cost.usage_events'::regclass::oid, '{}')", "22023"),
            ("PERFORM llm_cost._as_table_owner('reprice', 4294967295, '{}')", "42P01"),
        ] {
            let e = error_of(sql);
            assert!(e.starts_with(code), "{sql}: {e}");
        }
    }

    /// Item 3: an owner that is not a superuser tracks, rolls up, sets and drops retention.
    #[pg_test]
    fn a_plain_owner_manages_its_own_tables() {
        setup_roles();
        Spi::run("SET ROLE t_owner").unwrap();
        Spi::run(
            "CREATE TABLE t_owner_s.calls (created_at timestamptz NOT NULL DEFAULT now(), team text, model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text);
             SELECT llm_cost.track('t_owner_s.calls');
             SELECT llm_cost.create_rollup('t_owner_s.calls_daily', 't_owner_s.calls', 'day', '{team}');
             INSERT INTO t_owner_s.calls (team, model, input_tokens, output_tokens) VALUES ('a', 'gpt-4o', 1000000, 0), ('a', 'nope-model', 1, 1);",
        )
        .unwrap();
        assert_eq!(
            error_of("PERFORM llm_cost.set_retention('t_owner_s.calls', '30 days')"),
            "ok"
        );
        assert_eq!(one("SELECT keep::text || ' ' || created_by FROM llm_cost.retention_policies WHERE log_table = 't_owner_s.calls'::regclass").as_deref(), Some("30 days t_owner"));
        assert_eq!(one("SELECT format('%s %s', rows_deleted, coalesce(error, 'ok')) FROM llm_cost.run_retention()").as_deref(), Some("0 ok"));
        assert_eq!(
            one("SELECT llm_cost.drop_retention('t_owner_s.calls')::text").as_deref(),
            Some("true")
        );
        assert_eq!(one("SELECT sum(cost_usd)::text || ' ' || sum(unpriced_requests) FROM t_owner_s.calls_daily").as_deref(), Some("2.5 1"));
        // Its unknown model is listed to it.
        assert_eq!(
            one("SELECT string_agg(model, ',') FROM llm_cost.unpriced_models").as_deref(),
            Some("nope-model")
        );
        // A rollup of a table it does not own: refused.
        let e = error_of("PERFORM llm_cost.create_rollup('t_owner_s.theirs', 'llm_cost.usage_events', 'day', '{}')");
        assert!(e.starts_with("42501"), "{e}");
        assert_eq!(
            error_of("PERFORM llm_cost.drop_rollup('t_owner_s.calls_daily')"),
            "ok"
        );
        assert_eq!(
            error_of("PERFORM llm_cost.untrack('t_owner_s.calls')"),
            "ok"
        );
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(one("SELECT count(*)::text FROM llm_cost.tracked_tables WHERE log_table::text LIKE 't_owner_s.%'").as_deref(), Some("0"));
    }

    /// Item 4: unknown models and retention runs are seen by who may see the rows they describe.
    #[pg_test]
    fn unpriced_models_and_retention_runs_follow_row_visibility() {
        setup_roles();
        Spi::run(
            "CREATE ROLE t_reader NOLOGIN IN ROLE llm_cost_reader; CREATE ROLE t_admin NOLOGIN IN ROLE llm_cost_admin;
             INSERT INTO llm_cost.usage_events (occurred_at, user_id, model, input_tokens, output_tokens)
             VALUES (now() - interval '400 days', 'someone', 'secret-model-x', 10, 10);
             SELECT llm_cost.set_retention('llm_cost.usage_events', '90 days');
             SELECT * FROM llm_cost.run_retention();",
        )
        .unwrap();
        let seen = |role: &str| {
            Spi::run(&format!("SET ROLE {role}")).unwrap();
            let r = one(
                "SELECT (SELECT count(*) FROM llm_cost.unpriced_models) || ' ' || (SELECT count(*) FROM llm_cost.unpriced_stats)
                   || ' ' || (SELECT count(*) FROM llm_cost.retention_runs) || ' ' || (SELECT count(*) FROM llm_cost.retention_last_runs)",
            );
            Spi::run("RESET ROLE").unwrap();
            r.unwrap()
        };
        assert_eq!(seen("t_hostile"), "0 0 0 0");
        assert_eq!(seen("t_reader"), "0 0 0 0"); // reads usage_events only under row-level security
        assert_eq!(seen("t_admin"), "1 1 1 1");
        assert_eq!(seen("postgres"), "1 1 1 1");
    }
}

/// Citus functions that give a table a new identity under its name: the first two turn it into a
/// shard of a new table of the same name (the original relation is renamed `<name>_<shardid>`, a
/// new "shell" relation takes the name), the others re-create it and drop the old one. llm_cost's
/// registries name tables by OID: they would follow the renamed shard, or lose the table.
const CITUS_RENAMING: [&str; 5] = [
    "create_distributed_table_concurrently",
    "citus_add_local_table_to_metadata",
    "alter_distributed_table",
    "undistribute_table",
    "alter_table_set_access_method",
];

/// Refuses, before it runs, a statement that calls one of `CITUS_RENAMING` on a table llm_cost
/// tracks or rolls up (one of its triggers is on it; 0A000, with what to do instead): called from the executor hook for every
/// statement; costs one settings look-up where Citus is not loaded, and looks further only at a
/// `SELECT f(...)` or `SELECT * FROM f(...)` in a database with Citus. The table is read from the call's first argument when it is a
/// constant or a parameter (a literal, a prepared statement, a PL/pgSQL variable).
///
/// # Safety
/// `query_desc` is the executor's query descriptor for the statement about to start.
pub unsafe fn refuse_citus_renaming(query_desc: *mut pg_sys::QueryDesc) {
    if !crate::pg::citus::loaded() {
        return;
    }
    // SAFETY: the planned statement and its plan tree belong to the query descriptor; nodes are
    // read by tag. `SELECT f(...)` plans as a Result (or ProjectSet) whose target list holds the
    // call, `SELECT * FROM f(...)` as a FunctionScan.
    let calls = unsafe {
        let stmt = (*query_desc).plannedstmt;
        if stmt.is_null() || (*stmt).commandType != pg_sys::CmdType::CMD_SELECT {
            return;
        }
        let plan = (*stmt).planTree;
        if plan.is_null() {
            return;
        }
        match (*plan).type_ {
            pg_sys::NodeTag::T_Result | pg_sys::NodeTag::T_ProjectSet => ptrs((*plan).targetlist)
                .into_iter()
                .map(|te| (*(te as *mut pg_sys::TargetEntry)).expr as *mut pg_sys::Node)
                .collect::<Vec<_>>(),
            pg_sys::NodeTag::T_FunctionScan => {
                ptrs((*(plan as *mut pg_sys::FunctionScan)).functions)
                    .into_iter()
                    .map(|rf| (*(rf as *mut pg_sys::RangeTblFunction)).funcexpr)
                    .collect()
            }
            _ => return,
        }
    };
    if calls.is_empty() || !crate::pg::citus::installed() {
        return;
    }
    for expr in calls {
        // SAFETY: expressions are checked by tag before they are read as a call.
        let table = unsafe {
            if expr.is_null() || (*expr).type_ != pg_sys::NodeTag::T_FuncExpr {
                continue;
            }
            let f = expr as *mut pg_sys::FuncExpr;
            if pg_sys::get_func_namespace((*f).funcid)
                != pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE)
            {
                continue;
            }
            let name = pg_sys::get_func_name((*f).funcid);
            if name.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned();
            if !CITUS_RENAMING.contains(&name.as_str()) {
                continue;
            }
            let args = ptrs((*f).args).first().copied();
            match args.and_then(|a| first_oid(a as *mut pg_sys::Node, (*query_desc).params)) {
                Some(oid) => (name, oid),
                None => continue,
            }
        };
        let (name, oid) = table;
        // (No SQL here: a statement run now would give the Citus function's transaction an id,
        // and its non-blocking split then waits for that transaction forever.)
        // SAFETY: a relation cache look-up by OID, closed at once.
        let hit = unsafe { llm_cost_triggered(oid) };
        if let Some(hit) = hit {
            let (what, hint) = if name.starts_with("alter_") || name == "undistribute_table" {
                (
                    "re-creates {hit}, which llm_cost tracks or rolls up: llm_cost would lose the table, its rollups, budgets and retention policy",
                    "Nothing was changed. To change it anyway: llm_cost.untrack() the table (its rollups go with it), run the Citus function, then track() it and create_rollup() again (rollups backfill from the rows); budgets and retention policies are set again after.",
                )
            } else {
                (
                    "would turn {hit}, which llm_cost tracks or rolls up, into a shard of a new table of the same name: llm_cost would not follow it",
                    "Nothing was changed. Use create_distributed_table() (llm_cost follows it), then create the rollups; or llm_cost.untrack() the table (its rollups go with it), run the Citus function, and track() it and create_rollup() again (rollups backfill from the rows).",
                )
            };
            crate::pg::fail::user(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("llm_cost: Citus's {name} {}", what.replace("{hit}", &hit)),
            )
            .hint(hint)
            .raise();
        }
    }
}

/// The qualified name of `relid` when one of llm_cost's triggers is on it (a tracked table, the
/// source of a rollup), read from the relation cache.
unsafe fn llm_cost_triggered(relid: pg_sys::Oid) -> Option<String> {
    // SAFETY: catalog cache look-ups; the relation cache entry is released before returning.
    unsafe {
        let ns = pg_sys::get_namespace_oid(c"llm_cost".as_ptr(), true);
        if ns == pg_sys::InvalidOid {
            return None;
        }
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return None;
        }
        let td = (*rel).trigdesc;
        let ours = !td.is_null()
            && (0..(*td).numtriggers as usize)
                .any(|i| pg_sys::get_func_namespace((*(*td).triggers.add(i)).tgfoid) == ns);
        let name = ours.then(|| {
            let q = pg_sys::quote_qualified_identifier(
                pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace),
                (*(*rel).rd_rel).relname.data.as_ptr(),
            );
            std::ffi::CStr::from_ptr(q).to_string_lossy().into_owned()
        });
        pg_sys::RelationClose(rel);
        name
    }
}

/// The pointers of a node list (NIL: none).
unsafe fn ptrs(list: *mut pg_sys::List) -> Vec<*mut std::ffi::c_void> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: a valid List of pointers, read cell by cell within its length.
    unsafe {
        (0..(*list).length)
            .map(|i| (*(*list).elements.add(i as usize)).ptr_value)
            .collect()
    }
}

/// The OID a regclass/oid argument holds, when it is a constant or a bound parameter.
unsafe fn first_oid(
    mut node: *mut pg_sys::Node,
    params: pg_sys::ParamListInfo,
) -> Option<pg_sys::Oid> {
    // SAFETY: nodes are read by tag; parameters through the list's own fetch hook when it has one.
    unsafe {
        while !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_RelabelType {
            node = (*(node as *mut pg_sys::RelabelType)).arg as *mut pg_sys::Node;
        }
        if node.is_null() {
            return None;
        }
        let (value, isnull, ty) = match (*node).type_ {
            pg_sys::NodeTag::T_Const => {
                let c = node as *mut pg_sys::Const;
                ((*c).constvalue, (*c).constisnull, (*c).consttype)
            }
            pg_sys::NodeTag::T_Param => {
                let p = node as *mut pg_sys::Param;
                if (*p).paramkind != pg_sys::ParamKind::PARAM_EXTERN
                    || params.is_null()
                    || (*p).paramid < 1
                    || (*p).paramid > (*params).numParams
                {
                    return None;
                }
                let mut workspace = pg_sys::ParamExternData::default();
                let d = match (*params).paramFetch {
                    Some(fetch) => fetch(params, (*p).paramid, false, &mut workspace),
                    None => (*params).params.as_mut_ptr().add((*p).paramid as usize - 1),
                };
                if d.is_null() {
                    return None;
                }
                ((*d).value, (*d).isnull, (*p).paramtype)
            }
            _ => return None,
        };
        if isnull || (ty != pg_sys::REGCLASSOID && ty != pg_sys::OIDOID) {
            return None;
        }
        Some(pg_sys::Oid::from(value.value() as u32))
    }
}
