//! How a row is priced, on the PostgreSQL side. The decision itself is plain Rust:
//! `llm_cost_core::row::decide` (the row in, the outcome out), from the catalog of
//! `llm_cost_core::catalog` and the arithmetic of `llm_cost_core::pricing`. Here:
//!
//! - `catalog`: the price catalog in a backend: loaded from `llm_cost.model_prices`,
//!   `model_aliases` and `providers`, kept until they change (`catalog_changed`), and one call
//!   priced from it (`price_call`);
//! - `usage`: the cost trigger of `llm_cost.usage_events` and of tables attached with `track()`:
//!   reads a row's columns into `decide` and writes the outcome (cost, cost_source, provider,
//!   priced model); unknown models recorded at statement end; COPY prices through it too
//!   (`features::copy`);
//! - `sql`: the SQL functions over the same catalog: `estimate_cost`, `explain_cost`,
//!   `resolve_model`, `provider_of`, `format_cost`, `usage_tokens`, `_price_document`.

pub mod catalog;
pub mod sql;
pub mod usage;
