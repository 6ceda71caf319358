//! Anomaly watches (`sql/anomalies.sql`): the registry writes, owner-checked, and the background
//! worker's pass, which runs `llm_cost.spend_anomalies()` for a watch as the rollup's owner
//! (security-restricted, as autovacuum runs a table owner's code) and records what it lists
//! once per group and period in `llm_cost.anomaly_alerts`, with NOTIFY llm_cost_anomaly
//! `{"id": ...}` (the id only: a listener reads the row under its row security).

use crate::pg::{privilege, spi};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// Writes the watch registry for watch_anomalies / drop_anomaly_watch, which validate the
/// arguments; this checks that the caller has the owner's rights over the rollup (its view and
/// its table of sums) and writes as the extension's owner.
#[pg_extern(volatile, parallel_unsafe)]
fn _anomaly_write(op: &str, args: pgrx::JsonB) -> Option<pgrx::JsonB> {
    let a = args.0;
    let rollup: Option<i64> = match op {
        "create" => a.get("rollup").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        }),
        "drop" => spi::get_one_with_args::<i64>(
            "SELECT w.rollup::pg_catalog.oid::pg_catalog.int8 FROM llm_cost.anomaly_watches w WHERE w.id = $1",
            &[a.get("id").and_then(|v| v.as_i64()).unwrap_or(0).into()],
        )
        .ok()
        .flatten(),
        _ => crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("llm_cost: no anomaly watch operation \"{op}\""),
        )
        .raise(),
    };
    let Some(rollup) = rollup.map(|n| pg_sys::Oid::from(n as u32)) else {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "llm_cost: no such anomaly watch or rollup",
        )
        .raise();
    };
    let stripes = stripes_of(rollup).unwrap_or_else(|| {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "llm_cost: not an llm_cost rollup",
        )
        .raise()
    });
    privilege::require_owner_rights(rollup, "watch it for anomalies");
    privilege::require_owner_rights(stripes, "watch it for anomalies");
    let me =
        // SAFETY: the current user exists (GetUserNameFromId errors otherwise); the name is copied at once.
        unsafe { std::ffi::CStr::from_ptr(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false)) }
            .to_string_lossy()
            .into_owned();
    let sql = match op {
        "create" => {
            "INSERT INTO llm_cost.anomaly_watches AS w (name, rollup, \"by\", periods, threshold, min_requests, filter, created_by)
             SELECT $1->>'name', ($1->>'rollup')::pg_catalog.oid::pg_catalog.regclass,
                    ARRAY(SELECT x FROM pg_catalog.jsonb_array_elements_text($1->'by') x), ($1->>'periods')::pg_catalog.int4,
                    ($1->>'threshold')::pg_catalog.numeric, ($1->>'min_requests')::pg_catalog.int8, $1->'filter', $2
             RETURNING pg_catalog.to_jsonb(w.*)"
        }
        _ => {
            "WITH d AS (DELETE FROM llm_cost.anomaly_watches WHERE id = ($1->>'id')::pg_catalog.int8 RETURNING 1)
             SELECT NULL::pg_catalog.jsonb WHERE $2 IS NOT NULL"
        }
    };
    let a = pgrx::JsonB(a);
    privilege::as_extension_owner(move || {
        spi::connect_mut(|client| {
            let rows = client.update(sql, None, &[a.into(), me.into()])?;
            rows.first().get_one::<pgrx::JsonB>()
        })
        .unwrap_or_else(|e| {
            crate::pg::fail::internal(format!("llm_cost: could not write the anomaly watch: {e}"))
        })
    })
}

/// The table of sums of a rollup (None: not a rollup).
fn stripes_of(rollup: pg_sys::Oid) -> Option<pg_sys::Oid> {
    spi::get_one_with_args::<i64>(
        "SELECT r.stripes::pg_catalog.oid::pg_catalog.int8 FROM llm_cost.rollups r WHERE r.rollup = $1",
        &[rollup.into()],
    )
    .ok()
    .flatten()
    .map(|n| pg_sys::Oid::from(n as u32))
}

/// The background worker's pass over one watch (each naptime, one transaction per watch, so a
/// broken watch does not hold up the others): the groups `spend_anomalies` lists now, read as
/// the owner of the rollup's table of sums under a security-restricted operation; those not
/// alerted yet in this period are recorded and notified (at commit). Returns how many.
#[pg_extern(volatile, parallel_unsafe)]
fn _anomaly_sweep(watch: i64) -> i64 {
    if !privilege::has_rights_of(privilege::extension_owner()) {
        crate::pg::fail::user(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "llm_cost._anomaly_sweep: only the extension's owner (the background worker) runs it",
        )
        .raise();
    }
    let rollup = privilege::as_extension_owner(|| {
        spi::get_one_with_args::<i64>(
            "SELECT w.rollup::pg_catalog.oid::pg_catalog.int8 FROM llm_cost.anomaly_watches w WHERE w.id = $1",
            &[watch.into()],
        )
    })
    .ok()
    .flatten()
    .map(|n| pg_sys::Oid::from(n as u32));
    let Some(owner) = rollup.and_then(stripes_of).and_then(privilege::owner_of) else {
        return 0; // dropped since the list was read
    };
    let found: pgrx::JsonB = privilege::as_role(owner, true, || {
        spi::get_one_with_args::<pgrx::JsonB>(
            "SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x)), '[]')
               FROM llm_cost.anomaly_watches w,
                    LATERAL llm_cost.spend_anomalies(w.rollup, w.\"by\", w.periods, w.threshold, w.min_requests,
                                                     pg_catalog.now(), w.filter) x
              WHERE w.id = $1",
            &[watch.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(pgrx::JsonB(serde_json::json!([])));
    if found.0.as_array().is_none_or(|a| a.is_empty()) {
        return 0;
    }
    privilege::as_extension_owner(|| {
        spi::get_one_with_args::<i64>(
            "WITH a AS (
                INSERT INTO llm_cost.anomaly_alerts AS a (watch_id, watch, \"group\", period_start, requests, spent_usd,
                                                          baseline_usd, spread_usd, score)
                SELECT w.id, w.name, x.\"group\", x.period_start, x.requests, x.spent_usd, x.baseline_usd, x.spread_usd, x.score
                  FROM llm_cost.anomaly_watches w,
                       pg_catalog.jsonb_to_recordset($2) AS x(\"group\" pg_catalog.jsonb, period_start pg_catalog.timestamptz,
                                                             requests pg_catalog.int8, spent_usd pg_catalog.numeric,
                                                             baseline_usd pg_catalog.numeric, spread_usd pg_catalog.numeric,
                                                             score pg_catalog.numeric)
                 WHERE w.id = $1
                ON CONFLICT (watch_id, \"group\", period_start) DO NOTHING
                RETURNING a.id)
             SELECT pg_catalog.count(pg_catalog.pg_notify('llm_cost_anomaly',
                        pg_catalog.json_build_object('id', a.id)::pg_catalog.text)) FROM a",
            &[watch.into(), found.into()],
        )
    })
    .unwrap_or_else(|e| {
        crate::pg::fail::internal(format!("llm_cost: could not record the anomalies of watch {watch}: {e}"))
    })
    .unwrap_or(0)
}
