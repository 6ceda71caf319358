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
//! - `shared`: immutable images in dynamic shared memory, one per key for the whole server;
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
pub mod shared;
pub mod spi;

/// The extension's own source, for the tests that check how it is written (`pg::spi`, `pg::fail`,
/// the `unsafe` blocks): each `.rs` file under `src/` but `skip`, as its lines up to its test module
/// (`mod tests`, or the first `#[cfg(any(test, feature = "pg_test"))]` item).
#[cfg(test)]
pub(crate) fn source_files(skip: &[&str]) -> Vec<(std::path::PathBuf, Vec<String>)> {
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().and_then(|s| s.to_str()) == Some("rs")
                && !skip.iter().any(|s| p.ends_with(s))
            {
                let lines = std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .take_while(|l| {
                        !l.starts_with("mod tests")
                            && !l.starts_with("pub mod tests")
                            && !l.starts_with("#[cfg(any(test, feature = \"pg_test\"))]")
                    })
                    .map(str::to_string)
                    .collect();
                out.push((p, lines));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// Every `unsafe` block outside tests says why it is sound: a `SAFETY:` comment on its line or
    /// in the comment lines just above it (an `unsafe fn` states its contract in `# Safety`).
    #[test]
    fn unsafe_blocks_say_why() {
        let mut bad = Vec::new();
        for (p, lines) in super::source_files(&["tests.rs"]) {
            for (i, line) in lines.iter().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if !code.contains("unsafe {") || line.contains("SAFETY:") {
                    continue;
                }
                // The comment block right above (and the statement's first lines).
                let said = lines[i.saturating_sub(8)..i]
                    .iter()
                    .rev()
                    .map(|l| l.trim())
                    .take_while(|t| {
                        !(t.ends_with(';')
                            || t.ends_with('}')
                            || t.ends_with('{') && !t.starts_with("//"))
                    })
                    .any(|t| t.contains("SAFETY:"));
                if !said {
                    bad.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "{} unsafe blocks without a SAFETY: line:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
}
