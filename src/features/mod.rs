//! Features: the SQL objects llm_cost offers, built on `pg` (plumbing) and `core`. Imports point
//! down this list, never up: `copy` (COPY FROM path) uses `usage` (the cost trigger), which uses
//! `rollups` (which writes through `stripes`); `budgets` reads rollups' stripes and uses
//! `security` (rollups learn which groups to report through a function `lib.rs` hands them, so
//! they never import budgets); `maintenance` (reprice and rebuild as the table's
//! owner), `retention`, `registry`, `security` and `pricing_sql` stand alone.

pub mod budgets;
pub mod catalog;
pub mod copy;
pub mod maintenance;
pub mod pricing_sql;
pub mod registry;
pub mod retention;
pub mod rollups;
pub mod security;
pub mod usage;
