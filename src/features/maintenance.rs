//! Maintenance run on a table's behalf (`reprice`, `rebuild_rollup`): as the table's owner under
//! a security-restricted operation, like retention's purge, REFRESH MATERIALIZED VIEW and
//! REINDEX. A superuser repricing a table whose owner wrote a trigger that grants itself
//! superuser when a superuser runs it, grants nothing. The caller must have the owner's rights.

use crate::pg::spi;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// The work each action runs (fixed SQL: `$1` the table, `$2` the JSON arguments).
const ACTIONS: &[(&str, &str)] = &[
    (
        "reprice",
        "SELECT pg_catalog.to_jsonb(r) FROM llm_cost._reprice_impl($1::pg_catalog.regclass,
                ($2 ->> 'from')::pg_catalog.timestamptz, ($2 ->> 'to')::pg_catalog.timestamptz) r",
    ),
    (
        "backfill",
        "SELECT llm_cost._backfill_step($1::pg_catalog.oid, $2)",
    ),
    (
        "fold_rollup",
        "SELECT llm_cost._fold_rollup_impl(($2 ->> 'rollup')::pg_catalog.oid::pg_catalog.regclass,
                ($2 ->> 'before')::pg_catalog.timestamptz, ($2 ->> 'since')::pg_catalog.timestamptz,
                ($2 ->> 'max_periods')::pg_catalog.int4, coalesce(($2 ->> 'wait')::pg_catalog.bool, true))",
    ),
    (
        "rebuild_rollup",
        "SELECT pg_catalog.jsonb_build_object('n', llm_cost._rebuild_rollup_impl(($2 ->> 'rollup')::pg_catalog.oid::pg_catalog.regclass,
                ($2 ->> 'from')::pg_catalog.timestamptz, ($2 ->> 'to')::pg_catalog.timestamptz))",
    ),
];

/// Runs `action` on `table` as its owner (security-restricted); returns the action's result as
/// JSON. 42501 unless the caller has the owner's rights.
#[pg_extern(volatile, parallel_unsafe)]
pub fn _as_table_owner(action: &str, table: pg_sys::Oid, args: pgrx::JsonB) -> pgrx::JsonB {
    let Some((_, sql)) = ACTIONS.iter().find(|(a, _)| *a == action) else {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("llm_cost: no action \"{action}\""),
        )
        .raise();
    };
    crate::pg::privilege::as_table_owner(
        table,
        &format!("{}", action.replace('_', " ")),
        move || {
            spi::get_one_with_args::<pgrx::JsonB>(sql, &[table.into(), args.into()])
                .unwrap_or_else(|e| crate::pg::fail::internal(format!("{e}")))
                .unwrap_or(pgrx::JsonB(serde_json::Value::Null))
        },
    )
}
