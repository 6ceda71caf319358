//! Compiles `csrc/copy_state.c` (accessors for PostgreSQL's COPY FROM state, which pgrx does not
//! bind) against the server headers of the PostgreSQL version being built, found the way pgrx
//! finds them: `PGRX_PG_CONFIG_PATH`, else `~/.pgrx/config.toml` (`cargo pgrx init`).
//! PostgreSQL 13 keeps that state private to copy.c: there is no shim, and COPY into a tracked
//! table always goes through the row trigger (`cfg(llm_cost_copy_shim)` unset).

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(llm_cost_copy_shim)");
    println!("cargo:rerun-if-changed=csrc/copy_state.c");
    println!("cargo:rerun-if-env-changed=PGRX_PG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PGRX_HOME");
    let Some(major) =
        (14..=18).find(|v| std::env::var_os(format!("CARGO_FEATURE_PG{v}")).is_some())
    else {
        return;
    };
    let pg_config = match std::env::var_os("PGRX_PG_CONFIG_PATH") {
        Some(p) => pgrx_pg_config::PgConfig::new_with_defaults(PathBuf::from(p)),
        None => pgrx_pg_config::Pgrx::from_config()
            .and_then(|c| c.get(&format!("pg{major}")))
            .unwrap_or_else(|e| {
                panic!("llm_cost: no pg_config for pg{major} (run `cargo pgrx init`): {e}")
            }),
    };
    let include = pg_config
        .includedir_server()
        .unwrap_or_else(|e| panic!("llm_cost: pg_config --includedir-server failed: {e}"));
    if let Ok(home) = pgrx_pg_config::Pgrx::config_toml() {
        println!("cargo:rerun-if-changed={}", home.display());
    }
    cc::Build::new()
        .file("csrc/copy_state.c")
        .include(include)
        .flag_if_supported("-Wno-unused-parameter")
        .compile("llm_cost_copy_state");
    println!("cargo:rustc-cfg=llm_cost_copy_shim");
}
