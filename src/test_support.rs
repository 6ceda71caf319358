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
