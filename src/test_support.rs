//! Helpers shared by the #[pg_test]s of every module.

use pgrx::prelude::*;

/// The first column of the first row as text (None for NULL). Panics if the query fails.
pub fn one(sql: &str) -> Option<String> {
    Spi::get_one::<String>(sql).expect("query failed")
}

/// Runs `sql` (a PL/pgSQL statement) and returns "SQLSTATE: message" of the error it raises, or
/// "ok": the error is caught in a subtransaction, so the test goes on.
pub fn error_of(sql: &str) -> String {
    Spi::run(&format!(
        "DO $do$ BEGIN {sql}; PERFORM set_config('t.err', 'ok', true);
           EXCEPTION WHEN OTHERS THEN PERFORM set_config('t.err', SQLSTATE || ': ' || SQLERRM, true); END $do$"
    ))
    .expect("DO block failed");
    one("SELECT current_setting('t.err')").unwrap_or_default()
}

/// This backend's row counters per path (`llm_cost._rollup_paths()`): rows added to rollups by
/// a COPY path, by the rollup row trigger, and rows priced as COPY read them.
pub fn paths() -> (i64, i64, i64) {
    let (c, t, p) = Spi::get_three::<i64, i64, i64>(
        "SELECT copy_rows, trigger_rows, copy_priced_rows FROM llm_cost._rollup_paths()",
    )
    .expect("query failed");
    (c.unwrap_or(-1), t.unwrap_or(-1), p.unwrap_or(-1))
}
