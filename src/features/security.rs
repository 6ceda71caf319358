//! Security: who the session speaks for. GraphQL and REST layers put the caller's identity into
//! session settings; `llm_cost.current_principal()` reads them (pure parsing below, unit-tested),
//! and the row-level-security policies of `sql/security.sql` compare owner columns with it.

use pgrx::prelude::*;
use std::cell::RefCell;
use std::ffi::CStr;

/// The settings a principal is read from, in order. The first one that is set decides; a
/// malformed value denies (no principal) rather than falling through to the next.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Settings {
    /// PostgREST / Supabase: `request.jwt.claims`, JSON, principal in `sub`.
    pub jwt_claims: Option<String>,
    /// Older PostgREST: `request.jwt.claim.sub`.
    pub jwt_claim_sub: Option<String>,
    /// PostGraphile: `jwt.claims.user_id` (or `jwt.claims.sub`).
    pub pg_user_id: Option<String>,
    pub pg_sub: Option<String>,
    /// Hasura (mutations only): `hasura.user`, JSON, principal in `x-hasura-user-id`.
    pub hasura_user: Option<String>,
    /// Plain SQL sessions and reports: `llm_cost.principal`.
    pub principal: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn json_field(raw: &str, key: &str) -> Result<Option<String>, ()> {
    let v: serde_json::Value = serde_json::from_str(raw).map_err(|_| ())?;
    let obj = v.as_object().ok_or(())?;
    let found = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v);
    match found {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
            Ok(Some(s.trim().to_string()))
        }
        Some(serde_json::Value::String(_)) => Ok(None),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(()), // objects, arrays, booleans are not identities
    }
}

/// Resolves the principal from the settings; None means "nobody" (deny).
pub fn principal(s: &Settings) -> Option<String> {
    if let Some(raw) = non_empty(&s.jwt_claims) {
        return json_field(raw, "sub").ok().flatten();
    }
    if let Some(v) = non_empty(&s.jwt_claim_sub) {
        return Some(v.to_string());
    }
    if let Some(v) = non_empty(&s.pg_user_id).or(non_empty(&s.pg_sub)) {
        return Some(v.to_string());
    }
    if let Some(raw) = non_empty(&s.hasura_user) {
        return json_field(raw, "x-hasura-user-id").ok().flatten();
    }
    non_empty(&s.principal).map(str::to_string)
}

fn setting(name: &CStr) -> Option<String> {
    // SAFETY: GetConfigOption returns a pointer into the GUC's own storage (or NULL), copied at once.
    unsafe {
        let p = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        if p.is_null() {
            None
        } else {
            Some(CStr::from_ptr(p).to_string_lossy().into_owned())
        }
    }
}

thread_local! {
    static LAST: RefCell<Option<(Settings, Option<String>)>> = const { RefCell::new(None) };
}

/// Who this session speaks for, from the settings GraphQL/REST layers set; NULL for nobody.
/// Row-level security compares owner columns with it.
#[pg_extern(stable, parallel_safe)]
pub fn current_principal() -> Option<String> {
    let s = Settings {
        jwt_claims: setting(c"request.jwt.claims"),
        jwt_claim_sub: setting(c"request.jwt.claim.sub"),
        pg_user_id: setting(c"jwt.claims.user_id"),
        pg_sub: setting(c"jwt.claims.sub"),
        hasura_user: setting(c"hasura.user"),
        principal: setting(c"llm_cost.principal"),
    };
    // Evaluated once per row in policies: reuse the last answer while the settings are the same.
    if let Some(hit) = LAST.with(|l| {
        l.borrow()
            .as_ref()
            .filter(|(k, _)| *k == s)
            .map(|(_, v)| v.clone())
    }) {
        return hit;
    }
    let p = principal(&s);
    LAST.with(|l| *l.borrow_mut() = Some((s, p.clone())));
    p
}

// ---- The principal on Citus workers ----
//
// Row security of a distributed table (a rollup's table of sums) is evaluated on the workers,
// in the connections Citus opens for the coordinator's transaction. GraphQL and REST layers set
// the principal with `set_config(..., true)`, which Citus does not send on (only `SET LOCAL`,
// with `citus.propagate_set_commands = 'local'`). So before each statement of a transaction
// block on a node with Citus, the settings the principal is read from are sent on with SET LOCAL
// when they differ from what was sent before in the transaction: the workers then read the same
// settings, hence the same principal, as the coordinator (`current_principal()` is one function
// of them). Outside a transaction block Citus sends no SET: a reader of a distributed rollup
// then sees nothing of it (never someone else's rows).

/// The settings a principal is read from, in `Settings` order.
const NAMES: [&CStr; 6] = [
    c"request.jwt.claims",
    c"request.jwt.claim.sub",
    c"jwt.claims.user_id",
    c"jwt.claims.sub",
    c"hasura.user",
    c"llm_cost.principal",
];

type Values = [Option<String>; 6];

fn values() -> Values {
    NAMES.map(setting)
}

thread_local! {
    /// What was sent on in the running transaction, and in which subtransaction; `None` for
    /// nothing yet. A subtransaction that aborts takes its SETs back on the workers too: then
    /// what the workers hold is not known and everything is sent again.
    static SENT: RefCell<Option<(pg_sys::SubTransactionId, Option<Values>)>> = const { RefCell::new(None) };
    static SENDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn sent_end(_prepared: bool) {
    SENT.with(|s| *s.borrow_mut() = None);
}

fn sent_sub_abort(my: pg_sys::SubTransactionId) {
    SENT.with(|s| {
        let mut s = s.borrow_mut();
        if matches!(*s, Some((sub, _)) if sub >= my) {
            *s = Some((my, None));
        }
    });
}

fn sent_sub_commit(my: pg_sys::SubTransactionId, parent: pg_sys::SubTransactionId) {
    SENT.with(|s| {
        if let Some((sub, _)) = s.borrow_mut().as_mut() {
            if *sub == my {
                *sub = parent;
            }
        }
    });
}

fn no_pre_commit() {}

/// The principal's part in the transaction's lifecycle: what was sent to the workers is
/// forgotten when the transaction ends, and re-sent after a subtransaction that sent it aborted.
pub static LIFECYCLE: crate::pg::lifecycle::Participant = crate::pg::lifecycle::Participant {
    pre_commit: no_pre_commit,
    end: sent_end,
    sub_abort: sent_sub_abort,
    sub_commit: sent_sub_commit,
};

/// Sends the principal's settings on to the Citus workers when they changed (see above).
fn forward_to_citus_workers() {
    // SAFETY: reads of the backend's transaction state.
    let eligible = unsafe { !pg_sys::IsInParallelMode() && pg_sys::IsTransactionBlock() };
    if !eligible || crate::pg::lifecycle::in_pre_commit() || SENDING.with(|s| s.get()) {
        return;
    }
    // Citus loaded in this backend and installed in this database; not a connection Citus
    // itself opened (a worker's side of a coordinator's transaction gets the SETs from it).
    if !crate::pg::citus::loaded()
        || !crate::pg::citus::installed()
        || setting(c"application_name").is_some_and(|a| a.starts_with("citus_internal"))
    {
        return;
    }
    let now = values();
    let sub = crate::pg::lifecycle::current_subtransaction();
    let before = SENT.with(|s| s.borrow().clone());
    let send: Vec<usize> = match &before {
        // First look in this transaction: what is set (the workers start without these).
        None => (0..NAMES.len())
            .filter(|&i| non_empty(&now[i]).is_some())
            .collect(),
        Some((_, Some(v))) => (0..NAMES.len()).filter(|&i| v[i] != now[i]).collect(),
        // Taken back by an aborted subtransaction: all of them.
        Some((_, None)) => (0..NAMES.len()).collect(),
    };
    if send.is_empty() {
        if before.is_none() {
            crate::pg::lifecycle::ensure_registered();
            SENT.with(|s| *s.borrow_mut() = Some((sub, Some(now))));
        }
        return;
    }
    crate::pg::lifecycle::ensure_registered();
    SENDING.with(|s| s.set(true));
    let pairs: Vec<(&CStr, &str)> = send
        .iter()
        .map(|&i| (NAMES[i], now[i].as_deref().unwrap_or("")))
        .collect();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::pg::citus::set_local_everywhere(&pairs)
    }));
    SENDING.with(|s| s.set(false));
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
    // Sent in this subtransaction: if it aborts, the workers take these SETs back.
    SENT.with(|s| *s.borrow_mut() = Some((sub, Some(now))));
}

static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;

/// Installs the executor hook that sends the principal on to Citus workers (from `_PG_init`).
pub fn install_hooks() {
    // SAFETY: set once per process in _PG_init, before any statement; the previous hook is kept and chained.
    unsafe {
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(
    query_desc: *mut pg_sys::QueryDesc,
    eflags: std::ffi::c_int,
) {
    if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as std::ffi::c_int == 0 {
        // SAFETY: the query descriptor the executor was given.
        unsafe { crate::features::registry::refuse_citus_renaming(query_desc) };
        forward_to_citus_workers();
    }
    // SAFETY: the previous hook (or the standard function) with the arguments we were given.
    unsafe {
        match PREV_EXECUTOR_START {
            // An ERROR in the next hook comes back as a Rust panic, re-raised by pg_guard.
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query_desc, eflags)),
            None => pg_sys::standard_ExecutorStart(query_desc, eflags),
        }
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn postgrest_and_supabase() {
        let s = Settings {
            jwt_claims: Some(r#"{"sub":"user-a","role":"authenticated"}"#.into()),
            ..Default::default()
        };
        assert_eq!(principal(&s).as_deref(), Some("user-a"));
        let s = Settings {
            jwt_claims: Some(r#"{"sub":42}"#.into()),
            ..Default::default()
        };
        assert_eq!(principal(&s).as_deref(), Some("42"));
        let s = Settings {
            jwt_claim_sub: Some("old-style".into()),
            ..Default::default()
        };
        assert_eq!(principal(&s).as_deref(), Some("old-style"));
    }

    #[test]
    fn malformed_json_denies_and_does_not_fall_through() {
        for bad in [
            "{not json",
            r#"["sub"]"#,
            r#"{"sub":{"x":1}}"#,
            r#"{"sub":true}"#,
            r#"{"role":"admin"}"#,
        ] {
            let s = Settings {
                jwt_claims: Some(bad.into()),
                principal: Some("fallback".into()),
                ..Default::default()
            };
            assert_eq!(principal(&s), None, "{bad}");
        }
        let s = Settings {
            hasura_user: Some("{".into()),
            principal: Some("fallback".into()),
            ..Default::default()
        };
        assert_eq!(principal(&s), None);
    }

    #[test]
    fn postgraphile_hasura_and_plain() {
        let s = Settings {
            pg_user_id: Some("u7".into()),
            ..Default::default()
        };
        assert_eq!(principal(&s).as_deref(), Some("u7"));
        let s = Settings {
            pg_sub: Some("u8".into()),
            ..Default::default()
        };
        assert_eq!(principal(&s).as_deref(), Some("u8"));
        let s = Settings {
            hasura_user: Some(r#"{"x-hasura-role":"user","X-Hasura-User-Id":"h1"}"#.into()),
            ..Default::default()
        };
        assert_eq!(principal(&s).as_deref(), Some("h1"));
        let s = Settings {
            principal: Some("  report ".into()),
            ..Default::default()
        };
        assert_eq!(principal(&s).as_deref(), Some("report"));
        // Empty settings (PostgREST resets them to '') are unset.
        let s = Settings {
            jwt_claims: Some("".into()),
            principal: Some("p".into()),
            ..Default::default()
        };
        assert_eq!(principal(&s).as_deref(), Some("p"));
        assert_eq!(principal(&Settings::default()), None);
    }

    #[test]
    fn injection_is_just_a_string() {
        let s = Settings {
            principal: Some("x' OR '1'='1".into()),
            ..Default::default()
        };
        assert_eq!(principal(&s).as_deref(), Some("x' OR '1'='1"));
    }
}

// Row-level security (writers, readers and their principals from PostgREST, PostGraphile and
// Hasura settings, admins, enable_row_security) is tested as SQL: tests/sql/row_security.sql.
