//! The core: exact cost arithmetic, price look-up and model-name resolution, numeric's binary
//! form. Plain Rust: no pgrx, no PostgreSQL; unit-tested with `cargo test --lib`.

pub mod budget;
pub mod catalog;
pub mod flat;
pub mod hist;
pub mod import;
pub mod ledger;
pub mod matching;
pub mod numeric;
pub mod pricing;
pub mod row;
pub mod text;
pub mod usage_json;
