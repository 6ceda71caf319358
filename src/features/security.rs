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

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::test_support::{error_of, one};
    use pgrx::prelude::*;

    fn seed() {
        Spi::run(
            "INSERT INTO llm_cost.usage_events (tenant_id, user_id, model, input_tokens, output_tokens) VALUES
               ('t', 'alice', 'gpt-4o', 1000000, 0), ('t', 'alice', 'gpt-4o', 1000000, 0),
               ('t', 'bob', 'claude-sonnet-4-5', 1000000, 0), ('t', NULL, 'gpt-4o', 1000000, 0)",
        )
        .unwrap();
    }

    #[pg_test]
    fn writer_inserts_but_cannot_read_or_change_prices() {
        Spi::run("SET LOCAL ROLE llm_cost_writer").unwrap();
        Spi::run("INSERT INTO llm_cost.usage_events (user_id, model, input_tokens, output_tokens) VALUES ('w', 'gpt-4o', 1000000, 0), ('w', 'unknown-w', 1, 1)").unwrap();
        assert_eq!(
            error_of("PERFORM count(*) FROM llm_cost.usage_events"),
            "42501: permission denied for table usage_events"
        );
        assert_eq!(
            error_of("PERFORM count(*) FROM llm_cost.usage_daily"),
            "42501: permission denied for view usage_daily"
        );
        assert_eq!(
            error_of(
                "UPDATE llm_cost.model_prices SET input_usd_per_mtok = 0 WHERE origin = 'user'"
            ),
            "42501: permission denied for table model_prices"
        );
        assert_eq!(error_of("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('x', 'y', 1)"), "42501: permission denied for table model_prices");
        // The catalog is readable by all.
        assert_eq!(
            Spi::get_one::<bool>("SELECT count(*) > 45 FROM llm_cost.model_prices").unwrap(),
            Some(true)
        );
        Spi::run("RESET ROLE").unwrap();
        // The writer's rows were priced and rolled up.
        assert_eq!(
            one("SELECT cost_usd::text FROM llm_cost.usage_daily WHERE user_id = 'w'").as_deref(),
            Some("2.5")
        );
    }

    #[pg_test]
    fn readers_see_their_own_rows_admins_all() {
        seed();
        Spi::run("SET LOCAL ROLE llm_cost_reader").unwrap();
        // Nobody: nothing.
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.usage_events").unwrap(),
            Some(0)
        );
        Spi::run("SET LOCAL llm_cost.principal = 'alice'").unwrap();
        assert_eq!(
            one("SELECT string_agg(DISTINCT user_id, ',') FROM llm_cost.usage_events").as_deref(),
            Some("alice")
        );
        assert_eq!(
            one("SELECT string_agg(user_id || '=' || cost_usd, ',') FROM llm_cost.usage_daily")
                .as_deref(),
            Some("alice=5")
        );
        assert_eq!(
            one("SELECT string_agg(user_id || '=' || requests, ',') FROM llm_cost.usage_monthly")
                .as_deref(),
            Some("alice=2")
        );
        assert_eq!(
            one("SELECT (cost_usd = 5)::text FROM llm_cost.spend_summary WHERE period = 'today'")
                .as_deref(),
            Some("true")
        );
        // PostgREST / Supabase claims win over the plain setting.
        Spi::run(r#"SET LOCAL request.jwt.claims = '{"sub": "bob", "role": "authenticated"}'"#)
            .unwrap();
        assert_eq!(
            one("SELECT llm_cost.current_principal()").as_deref(),
            Some("bob")
        );
        assert_eq!(
            one("SELECT string_agg(DISTINCT user_id, ',') FROM llm_cost.usage_events").as_deref(),
            Some("bob")
        );
        // Malformed claims deny, quietly.
        Spi::run("SET LOCAL request.jwt.claims = '{\"sub\": '").unwrap();
        assert_eq!(one("SELECT llm_cost.current_principal()"), None);
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.usage_events").unwrap(),
            Some(0)
        );
        Spi::run("SET LOCAL request.jwt.claims = ''").unwrap();
        // A principal that tries SQL is only a name.
        Spi::run("SET LOCAL llm_cost.principal = $$alice' OR '1'='1$$").unwrap();
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.usage_events").unwrap(),
            Some(0)
        );
        // PostGraphile and Hasura.
        Spi::run("SET LOCAL llm_cost.principal = ''").unwrap();
        Spi::run("SET LOCAL jwt.claims.user_id = 'alice'").unwrap();
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.usage_events").unwrap(),
            Some(2)
        );
        Spi::run("SET LOCAL jwt.claims.user_id = ''").unwrap();
        Spi::run(r#"SELECT set_config('hasura.user', '{"x-hasura-user-id": "bob", "x-hasura-role": "user"}', true)"#).unwrap();
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.usage_events").unwrap(),
            Some(1)
        );
        Spi::run("RESET ROLE").unwrap();
        // Admins see everything, platform rows (NULL user) included.
        Spi::run("SET LOCAL ROLE llm_cost_admin").unwrap();
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.usage_events").unwrap(),
            Some(4)
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.usage_daily WHERE user_id IS NULL")
                .unwrap(),
            Some(1)
        );
        Spi::run("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'admin-made', 1)").unwrap();
        Spi::run("RESET ROLE").unwrap();
    }

    #[pg_test]
    fn enable_row_security_errors_and_twice() {
        Spi::run("CREATE TABLE public.sec_log (owner uuid, model text, input_tokens int, output_tokens int, created_at timestamptz DEFAULT now(), cost_usd numeric)").unwrap();
        assert_eq!(
            error_of("PERFORM llm_cost.enable_row_security('public.sec_log', 'nobody')"),
            "42703: column \"nobody\" does not exist in public.sec_log"
        );
        Spi::run("SELECT llm_cost.enable_row_security('public.sec_log', 'owner')").unwrap();
        Spi::run("SELECT llm_cost.enable_row_security('public.sec_log', 'owner')").unwrap(); // again: policies rewritten
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT count(*) FROM pg_policy WHERE polrelid = 'public.sec_log'::regclass"
            )
            .unwrap(),
            Some(3)
        );
        assert!(Spi::get_one::<bool>(
            "SELECT relrowsecurity FROM pg_class WHERE oid = 'public.sec_log'::regclass"
        )
        .unwrap()
        .unwrap());
        assert!(
            Spi::get_one::<bool>("SELECT llm_cost.disable_row_security('public.sec_log')")
                .unwrap()
                .unwrap()
        );
        assert!(
            !Spi::get_one::<bool>("SELECT llm_cost.disable_row_security('public.sec_log')")
                .unwrap()
                .unwrap()
        );
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT count(*) FROM pg_policy WHERE polrelid = 'public.sec_log'::regclass"
            )
            .unwrap(),
            Some(0)
        );
        assert_eq!(
            error_of("PERFORM llm_cost.enable_row_security('llm_cost.spend_summary', 'period')"),
            "42809: llm_cost.spend_summary is neither a table nor an llm_cost rollup"
        );
    }
}
