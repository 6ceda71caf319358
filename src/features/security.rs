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
