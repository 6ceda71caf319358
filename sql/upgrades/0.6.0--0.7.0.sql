-- llm_cost 0.6.0 -> 0.7.0: architecture. No behaviour changes. The columns of a table of sums are
-- one list (llm_cost._stripes_layout(), from src/features/rollups/stripes.rs), which
-- _stripes_columns, create_rollup's CREATE TABLE and _rollup_upsert read; "is this row unpriced"
-- is one rule (llm_cost._is_unpriced, crates/llm_cost_core/src/ledger.rs), which the rollup
-- backfill calls. Tables of sums made before keep their columns: the list is the same.
--
-- Nothing here by hand: every change is a function, generated below.

-- @generated
