//! Postgres plumbing: what every feature needs from the server, and nothing feature-specific.
//! Imports `llm_cost_core` only (and each other); never a feature.
//!
//! - `row`: a tuple's columns, the tracked table a partition's row belongs to, event times;
//! - `lifecycle` and `pending`: the transaction's callbacks and the state that waits in backend
//!   memory per subtransaction until it is written;
//! - `relcache`: relation-change notifications, handed to the features that registered;
//! - `money`: exact costs as numeric Datums and back;
//! - `jsonb`: a jsonb value read in place (a usage column);
//! - `privilege`: whose rights (a table's owner, the extension's owner);
//! - `citus`: whether Citus distributes a table;
//! - `spi`: the one way llm_cost runs SQL of its own (search_path pinned);
//! - `fail`: the one way it raises an error (a user's, with its SQLSTATE; an internal one).

pub mod citus;
pub mod fail;
pub mod jsonb;
pub mod lifecycle;
pub mod money;
pub mod pending;
pub mod privilege;
pub mod relcache;
pub mod row;
pub mod spi;
