//! Backfill (`sql/backfill.sql`): the rows a table held before `track()` priced in batches. One
//! batch is an UPDATE of the rows that need pricing in a range of the table's blocks, run as the
//! table's owner (`maintenance`'s `backfill` action) with the cost trigger told to price them as
//! inserts (`pricing::usage::backfilling`): whatever the row held before is what the
//! application logged, not an earlier estimate.

use crate::pg::spi;
use pgrx::prelude::*;

/// One batch of `llm_cost.backfill` on `table` (`args`: part, from, to); returns
/// `{"rows": n, "unpriced": m}`. 42501 unless the caller has the table owner's rights.
#[pg_extern(volatile, parallel_unsafe)]
pub fn _backfill_step(table: pg_sys::Oid, args: pgrx::JsonB) -> pgrx::JsonB {
    crate::pg::privilege::require_owner_rights(table, "backfill it");
    crate::features::pricing::usage::backfilling(table, || {
        spi::get_one_with_args::<pgrx::JsonB>(
            "SELECT pg_catalog.to_jsonb(r) FROM llm_cost._backfill_chunk($1::pg_catalog.regclass,
                    ($2 ->> 'part')::pg_catalog.oid, ($2 ->> 'from')::pg_catalog.int8, ($2 ->> 'to')::pg_catalog.int8) r",
            &[table.into(), args.into()],
        )
        .unwrap_or_else(|e| crate::pg::fail::internal(format!("llm_cost.backfill: {e}")))
        .unwrap_or(pgrx::JsonB(serde_json::Value::Null))
    })
}

// Tested as SQL (tests/sql/adoption.sql: history attached with and without a cost_source
// column, NOT NULL and integer cost columns, rollups created before and after) and in
// tests/integration/test_adoption.py (the procedure's commits, progress, a concurrent writer).
