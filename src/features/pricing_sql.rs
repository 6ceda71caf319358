//! SQL functions of the price catalog: a thin shell over `pricing.rs`, `catalog.rs` and `cache.rs`.

use llm_cost_core::pricing::{self, Cost, PriceRow, ServiceTier, Usage};
use crate::features::catalog as cache;
use crate::features::catalog::{price_call, Priced};
use crate::pg::money::{cost_to_numeric_datum, NumericDatum};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use crate::pg::spi;
use pgrx::{AnyNumeric, JsonB, PgSqlErrorCode};
use rust_decimal::Decimal;
use std::str::FromStr;

/// Raises SQLSTATE 22023 naming the first negative count.
pub fn check_usage(u: &Usage) {
    if let Err(e) = u.validate() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            e.to_string()
        );
    }
}

/// The token counts and time of an `estimate_cost`/`explain_cost` call: None when any is NULL
/// (as a strict function would give NULL); 22023 for a negative count.
fn counts_args(
    input: Option<i64>,
    output: Option<i64>,
    cache_read: Option<i64>,
    cache_write: Option<i64>,
    cache_write_1h: Option<i64>,
    at: Option<TimestampWithTimeZone>,
) -> Option<(Usage, TimestampWithTimeZone)> {
    let u = Usage {
        input: input?,
        output: output?,
        cache_read: cache_read?,
        cache_write: cache_write?,
        cache_write_1h: cache_write_1h?,
    };
    check_usage(&u);
    Some((u, at?))
}

/// The service tier of an argument: NULL is standard, an unknown value is 22023.
pub fn tier_arg(v: Option<&str>) -> ServiceTier {
    match v {
        None => ServiceTier::Standard,
        Some(t) => ServiceTier::parse(t).unwrap_or_else(|| {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("unknown service tier \"{t}\""),
                "Service tiers are standard (also default, auto), batch, flex, priority and fast."
            );
        }),
    }
}

/// Cost in USD of one LLM call, from the price catalog at the call's time.
///
/// `input_tokens` are uncached input tokens (OpenAI: prompt_tokens - cached_tokens;
/// Anthropic: input_tokens), `output_tokens` include reasoning tokens, `cache_read_tokens` are
/// prompt tokens read from the cache (OpenAI: cached_tokens; Anthropic:
/// cache_read_input_tokens), `cache_write_tokens` are tokens written to the cache (Anthropic:
/// cache_creation_input_tokens). `provider`: the host the call went to (openrouter, bedrock,
/// azure, ...), when the name does not say; `service_tier`: batch, flex, priority (NULL:
/// standard). NULL when the model is unknown or has no price at `at` for that tier.
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::too_many_arguments)]
pub fn estimate_cost(
    model: Option<&str>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    cache_read_tokens: default!(Option<i64>, 0),
    cache_write_tokens: default!(Option<i64>, 0),
    at: default!(Option<TimestampWithTimeZone>, "now()"),
    provider: default!(Option<&str>, "NULL"),
    service_tier: default!(Option<&str>, "NULL"),
    cache_write_1h_tokens: default!(Option<i64>, 0),
) -> Option<NumericDatum> {
    let model = model?;
    let (u, at) = counts_args(
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        cache_write_1h_tokens,
        at,
    )?;
    let tier = tier_arg(service_tier);
    match price_call(model, provider, tier, &u, at.into()) {
        Priced::Cost(c) => Some(cost_to_numeric_datum(c)),
        Priced::UnknownModel | Priced::NoPriceAt => None,
    }
}

/// The catalog model an application's model name resolves to, or NULL.
#[pg_extern(stable, parallel_safe)]
pub fn resolve_model(model: &str) -> Option<String> {
    let loaded = cache::catalog();
    loaded
        .resolve_index(model, None)
        .map(|i| loaded.catalog.model(i).model.clone())
}

/// The catalog model a name resolves to at a given provider (host), or NULL.
#[pg_extern(stable, parallel_safe, name = "resolve_model")]
pub fn resolve_model_at(model: Option<&str>, provider: Option<&str>) -> Option<String> {
    let loaded = cache::catalog();
    loaded
        .resolve_index(model?, provider)
        .map(|i| loaded.catalog.model(i).model.clone())
}

/// The provider of a model name: the catalog's when it resolves, else a guess from its prefix
/// or family (`claude-*` is anthropic). NULL when nothing is known.
#[pg_extern(stable, parallel_safe)]
pub fn provider_of(model: &str) -> Option<String> {
    let loaded = cache::catalog();
    match loaded.resolve_index(model, None) {
        Some(i) => Some(loaded.catalog.model(i).provider.clone()),
        None => llm_cost_core::catalog::guess_provider(model).map(str::to_string),
    }
}

/// The model a call of this name (and provider value) is reported under: what the cost trigger
/// writes into a priced model column (`track(priced_model_column => ...)`): the catalog model
/// it is priced as, a router's id as the vendor's own model (`openai/gpt-4o-mini` is
/// `gpt-4o-mini`), the name as sent when no model matches.
#[pg_extern(stable, parallel_safe)]
pub fn priced_model(model: &str, provider: default!(Option<&str>, "NULL")) -> String {
    let loaded = cache::catalog();
    match loaded.resolve_index(model, provider) {
        Some(i) => loaded.catalog.model(loaded.reported_model(i)).model.clone(),
        None => model.to_string(),
    }
}

/// The catalog provider a provider value means (`bedrock` is aws, `vertex_ai` google,
/// `together_ai` together, `OpenAI` openai), or NULL when the catalog knows none.
#[pg_extern(stable, parallel_safe)]
pub fn provider_id(provider: &str) -> Option<String> {
    let loaded = cache::catalog();
    loaded
        .catalog
        .provider_named(provider)
        .map(|i| loaded.catalog.provider_id(i).to_string())
}

/// A price document parsed for `llm_cost.import_prices` (internal): refused whole with the
/// JSON path of its first problem (22023).
#[pg_extern(immutable, parallel_safe)]
pub fn _price_document(doc: JsonB, format: &str, at_date: &str) -> JsonB {
    use llm_cost_core::import;
    let parsed = import::detect(&doc.0, format)
        .and_then(|f| import::parse(&doc.0, f, at_date).map(|d| (d, f)));
    match parsed {
        Ok((d, f)) => JsonB(import::to_json(&d, f)),
        Err(e) => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "llm_cost.import_prices: malformed price document at {}: {}",
                    e.path, e.message
                ),
                "Nothing was imported."
            );
        }
    }
}

/// Reloads this backend's catalog and says what it costs (for the benchmark): rows, models,
/// providers, load time, and the resident memory the load added to the backend.
#[pg_extern(volatile, parallel_unsafe)]
pub fn _catalog_stats() -> JsonB {
    fn rss_kb() -> i64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(-1)
    }
    cache::drop_cached();
    let before = rss_kb();
    let loaded = cache::catalog();
    let after = rss_kb();
    JsonB(serde_json::json!({
        "rows": loaded.rows,
        "models": loaded.catalog.models().len(),
        "providers": loaded.catalog.provider_count(),
        "load_ms": loaded.load_us as f64 / 1000.0,
        "read_ms": loaded.read_us as f64 / 1000.0,
        "rss_added_kb": after - before,
        "catalog_kb": loaded.catalog.approx_bytes() / 1024,
    }))
}

/// `$0.00` for zero, two significant digits below a cent (`$0.0012`), cents above (`$1,234.57`);
/// `unpriced` for NULL (a cost llm_cost could not compute is never shown as $0.00).
#[pg_extern(immutable, parallel_safe)]
pub fn format_cost(cost: Option<AnyNumeric>) -> String {
    let Some(cost) = cost else {
        return "unpriced".to_string();
    };
    let text = cost.to_string();
    let d = match Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)) {
        Ok(d) => d,
        Err(_) => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                format!("format_cost: {text} is out of range (at most 28 significant digits)")
            );
        }
    };
    pricing::format_cost(d)
}

fn money_json(c: Cost) -> serde_json::Value {
    serde_json::Value::Number(
        serde_json::Number::from_str(&c.to_plain_string()).unwrap_or_else(|_| 0.into()),
    )
}

fn price_json(p: pricing::Price) -> serde_json::Value {
    serde_json::Value::Number(
        serde_json::Number::from_str(&p.to_decimal().to_string()).unwrap_or_else(|_| 0.into()),
    )
}

/// Why a cost is what it is: the resolved model, the price row used and each part of the cost.
/// Same arguments as `estimate_cost`. Numbers are exact (jsonb numerics).
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::too_many_arguments)]
pub fn explain_cost(
    model: Option<&str>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    cache_read_tokens: default!(Option<i64>, 0),
    cache_write_tokens: default!(Option<i64>, 0),
    at: default!(Option<TimestampWithTimeZone>, "now()"),
    provider: default!(Option<&str>, "NULL"),
    service_tier: default!(Option<&str>, "NULL"),
    cache_write_1h_tokens: default!(Option<i64>, 0),
) -> Option<JsonB> {
    let model = model?;
    let (u, at) = counts_args(
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        cache_write_1h_tokens,
        at,
    )?;
    Some(JsonB(explain(
        model,
        &u,
        at,
        provider,
        tier_arg(service_tier),
        None,
    )))
}

/// `explain_cost` of both forms: the usage it priced, how the name resolved, the row, the parts.
fn explain(
    model: &str,
    u: &Usage,
    at: TimestampWithTimeZone,
    provider: Option<&str>,
    tier: ServiceTier,
    usage_object: Option<serde_json::Value>,
) -> serde_json::Value {
    use serde_json::json;
    let loaded = cache::catalog();
    let provider_known = provider
        .filter(|p| !p.trim().is_empty())
        .map(|p| loaded.catalog.provider_named(p).is_some());
    let mut usage = json!({
        "input_tokens": u.input,
        "output_tokens": u.output,
        "cache_read_tokens": u.cache_read,
        "cache_write_tokens": u.cache_write,
        "cache_write_1h_tokens": u.cache_write_1h,
        "prompt_tokens_for_tier": u.prompt_tokens(),
    });
    if let Some(o) = usage_object {
        usage["from_usage_object"] = o;
    }
    let at_i: i64 = at.into();
    let requested = json!({
        "provider": provider,
        "provider_known": provider_known,
        "service_tier": tier.as_str(),
    });
    let Some(res) = loaded.resolve(model, provider) else {
        return json!({
            "model": model,
            "requested": requested,
            "resolved_model": null,
            "provider": llm_cost_core::catalog::guess_provider(model),
            "usage": usage,
            "cost_usd": null,
            "reason": "unknown model: no catalog model id, match rule or alias covers this name (at the provider, or at any host the name allows)",
        });
    };
    let i = res.model;
    let m = loaded.catalog.model(i);
    let matched = json!({
        "by": res.how.as_str(),
        "rule": m.rule_text.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()),
    });
    let Some(row) = loaded.catalog.price_row(i, at_i, u, tier) else {
        return json!({
            "model": model,
            "requested": requested,
            "resolved_model": m.model,
            "provider": m.provider,
            "matched": matched,
            "usage": usage,
            "cost_usd": null,
            "reason": format!("no {} price row of this model is valid at this time for this prompt size", tier.as_str()),
        });
    };
    let b = row.breakdown(u);
    json!({
        "model": model,
        "requested": requested,
        "resolved_model": m.model,
        "provider": m.provider,
        "matched": matched,
        "service_tier": tier.as_str(),
        "at": at.to_string(),
        "usage": usage,
        "price_row": price_row_json(row),
        "prices_usd_per_mtok": {
            "input": price_json(row.input),
            "output": price_json(row.output),
            "cache_read": price_json(b.cache_read_price),
            "cache_read_is_input_price": row.cache_read.is_none(),
            "cache_write": price_json(b.cache_write_price),
            "cache_write_is_input_price": row.cache_write_5m.is_none(),
            "cache_write_1h": price_json(b.cache_write_1h_price),
            "cache_write_1h_is_catalog_price": row.cache_write_1h.is_some(),
        },
        "parts_usd": {
            "input": money_json(b.input),
            "output": money_json(b.output),
            "cache_read": money_json(b.cache_read),
            "cache_write": money_json(b.cache_write),
            "cache_write_1h": money_json(b.cache_write_1h),
        },
        "cost_usd": money_json(b.total),
        "formula": "(input_tokens*input + output_tokens*output + cache_read_tokens*cache_read + cache_write_tokens*cache_write + cache_write_1h_tokens*cache_write_1h) / 1000000",
    })
}

/// A usage object read into counts, or 22023 naming the JSON path.
pub fn read_usage(
    usage: &serde_json::Value,
    provider: Option<&str>,
) -> llm_cost_core::usage_json::Counts {
    llm_cost_core::usage_json::parse(usage, provider).unwrap_or_else(|e| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("usage object: {e}")
        );
    })
}

fn usage_of(c: &llm_cost_core::usage_json::Counts) -> Usage {
    Usage {
        input: c.input,
        output: c.output,
        cache_read: c.cache_read,
        cache_write: c.cache_write_5m,
        cache_write_1h: c.cache_write_1h,
    }
}

fn counts_json(
    usage: &serde_json::Value,
    c: &llm_cost_core::usage_json::Counts,
) -> serde_json::Value {
    serde_json::json!({
        "input_tokens": c.input,
        "output_tokens": c.output,
        "cache_read_tokens": c.cache_read,
        "cache_write_5m_tokens": c.cache_write_5m,
        "cache_write_1h_tokens": c.cache_write_1h,
        "reasoning_tokens": c.reasoning,
        "audio_input_tokens": c.audio_input,
        "audio_output_tokens": c.audio_output,
        "provided_cost_usd": c.provided_cost.map(|u| money_json(Cost(u))),
        "format": c.format.map(|f| f.name()),
        "ignored_keys": llm_cost_core::usage_json::ignored_keys(usage, c),
    })
}

/// The disjoint token counts llm_cost prices, from a provider's usage object (internal: the SQL
/// function `llm_cost.usage_tokens` returns them as a row).
#[pg_extern(immutable, parallel_safe)]
pub fn _usage_tokens(
    usage: Option<JsonB>,
    provider: default!(Option<&str>, "NULL"),
) -> Option<JsonB> {
    let usage = usage?;
    let c = read_usage(&usage.0, provider);
    Some(JsonB(counts_json(&usage.0, &c)))
}

/// Cost in USD of one call from the provider's usage object (OpenAI Chat Completions or
/// Responses, Anthropic Messages, Gemini usageMetadata, Bedrock Converse, Mistral, DeepSeek,
/// OpenRouter, LiteLLM): cached tokens are not counted twice, reasoning and thinking are output,
/// 1-hour cache writes are priced at the 1-hour price.
#[pg_extern(stable, parallel_safe, name = "estimate_cost")]
pub fn estimate_cost_usage(
    model: Option<&str>,
    usage: Option<JsonB>,
    at: default!(Option<TimestampWithTimeZone>, "now()"),
    provider: default!(Option<&str>, "NULL"),
    service_tier: default!(Option<&str>, "NULL"),
) -> Option<NumericDatum> {
    let (Some(model), Some(usage), Some(at)) = (model, usage, at) else {
        return None;
    };
    let c = read_usage(&usage.0, provider);
    let u = usage_of(&c);
    let tier = tier_arg(service_tier);
    match price_call(model, provider, tier, &u, at.into()) {
        Priced::Cost(cost) => Some(cost_to_numeric_datum(cost)),
        Priced::UnknownModel | Priced::NoPriceAt => None,
    }
}

/// `explain_cost` from a usage object: also the counts read from it, the format recognised, the
/// keys ignored and any cost the provider reported.
#[pg_extern(stable, parallel_safe, name = "explain_cost")]
pub fn explain_cost_usage(
    model: Option<&str>,
    usage: Option<JsonB>,
    at: default!(Option<TimestampWithTimeZone>, "now()"),
    provider: default!(Option<&str>, "NULL"),
    service_tier: default!(Option<&str>, "NULL"),
) -> Option<JsonB> {
    let (Some(model), Some(usage), Some(at)) = (model, usage, at) else {
        return None;
    };
    let c = read_usage(&usage.0, provider);
    let u = usage_of(&c);
    Some(JsonB(explain(
        model,
        &u,
        at,
        provider,
        tier_arg(service_tier),
        Some(counts_json(&usage.0, &c)),
    )))
}

fn price_row_json(row: &PriceRow) -> serde_json::Value {
    // The full catalog row (source, validity as timestamps), read once: explain is not a hot path.
    let full = spi::get_one_with_args::<JsonB>(
        "SELECT to_jsonb(p) FROM llm_cost.model_prices p WHERE id = $1",
        &[row.id.into()],
    );
    match full {
        Ok(Some(JsonB(v))) => v,
        _ => serde_json::json!({ "id": row.id, "min_input_tokens": row.min_input_tokens }),
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use llm_cost_core::pricing::Cost;
    use pgrx::prelude::*;

    /// The binary numeric the cost trigger writes is byte for byte what numeric_in builds from
    /// the cost's text, and reading numerics back gives the same units.
    #[pg_test]
    fn binary_numeric_matches_numeric_in() {
        let values: Vec<i128> = vec![
            0,
            1,
            -1,
            9_999,
            10_000,
            315_000_000_000_000,
            180_000_000_000_000_000,
            123_456_000_000_000_000_000,
            100_000_000_000_000_000_000,
            -25_000_000_000_000_000,
            3_750_000_000,
            12_345_678_901_234_567,
            i128::MAX / 3,
        ];
        for v in values {
            let ours = crate::pg::money::cost_datum(Cost(v), -1);
            let mut buf = [0u8; 64];
            let n = Cost(v).write_plain(&mut buf[..63]);
            let text = std::str::from_utf8(&buf[..n]).unwrap().to_string();
            let theirs = Spi::get_one_with_args::<pgrx::AnyNumeric>(
                "SELECT $1::numeric",
                &[text.clone().into()],
            )
            .unwrap()
            .unwrap();
            let theirs = pgrx::IntoDatum::into_datum(theirs).unwrap();
            unsafe {
                let a = pg_sys::pg_detoast_datum_packed(ours.cast_mut_ptr());
                let b = pg_sys::pg_detoast_datum_packed(theirs.cast_mut_ptr());
                let sa = std::slice::from_raw_parts(
                    pgrx::varlena::vardata_any(a) as *const u8,
                    pgrx::varlena::varsize_any_exhdr(a),
                );
                let sb = std::slice::from_raw_parts(
                    pgrx::varlena::vardata_any(b) as *const u8,
                    pgrx::varlena::varsize_any_exhdr(b),
                );
                assert_eq!(sa, sb, "{text}");
                assert_eq!(crate::pg::money::numeric_units(theirs), Some(v), "{text}");
            }
        }
        // Values numeric arithmetic produces, and ones that do not fit 16 decimals.
        for (sql, want) in [
            ("SELECT 0.1::numeric + 0.2", Some(3_000_000_000_000_000i128)),
            ("SELECT 2.50000::numeric * 1", Some(25_000_000_000_000_000)),
            (
                "SELECT -1e20::numeric",
                Some(-1_000_000_000_000_000_000_000_000_000_000_000_000),
            ),
            ("SELECT 1e-17::numeric", None),
            ("SELECT 'NaN'::numeric", None),
            ("SELECT 1e30::numeric", None),
        ] {
            let n = Spi::get_one::<pgrx::AnyNumeric>(sql).unwrap().unwrap();
            let d = pgrx::IntoDatum::into_datum(n).unwrap();
            assert_eq!(unsafe { crate::pg::money::numeric_units(d) }, want, "{sql}");
        }
    }

    // Moved from lib.rs (the SQL functions of the catalog).

    fn num(sql: &str) -> Option<String> {
        Spi::get_one::<String>(sql).expect("query failed")
    }

    #[pg_test]
    fn sonnet_costs_18() {
        // 100k in, 1M out: below the 200k tier, 0.3 + 15.
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 100000, 1000000)::text")
                .as_deref(),
            Some("15.3")
        );
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('anthropic/claude-sonnet-4-5-20250929', 100000, 1000000)::text").as_deref(),
            Some("15.3")
        );
        // A 1M-token prompt is above 200k: Anthropic charges 6 / 22.50 for the whole call.
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 1000000, 1000000)::text")
                .as_deref(),
            Some("28.5")
        );
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 200000, 0)::text").as_deref(),
            Some("0.6")
        );
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 200001, 0)::text").as_deref(),
            Some("1.200006")
        );
    }

    /// The names of issue #15, each at its host's published price (USD for 1M in + 1M out).
    #[pg_test]
    fn issue_15_names_price_at_their_hosts() {
        let cases = [
            ("anthropic/claude-3-sonnet", "18"),
            ("google/gemini-pro", "2"),
            ("google/gemini-pro-1.5", "6.25"),
            ("meta-llama/llama-3.3-70b-instruct", "1.38"),
            ("qwen/qwen3-235b-a22b", "0.73"),
            ("x-ai/grok-4", "18"),
            ("deepseek/deepseek-r1", "3.2"),
            ("moonshotai/kimi-k2", "2.87"),
            ("z-ai/glm-4.6", "2.8"),
            ("openai/gpt-oss-120b", "0.6"),
            ("gpt-4", "90"),
            ("gemini-1.5-pro", "12.5"),
            ("o3-pro", "100"),
            ("claude-3-5-haiku-latest", "4.8"),
            ("gpt-3.5-turbo-0125", "2"),
            // The three mispricings: each at its own price.
            ("gpt-4o-2024-05-13", "20"),
            ("mistralai/mistral-large", "8"),
            ("groq/llama-3.3-70b-versatile", "1.38"),
        ];
        for (name, want) in cases {
            assert_eq!(
                num(&format!(
                    "SELECT llm_cost.estimate_cost('{name}', 1000000, 1000000)::text"
                ))
                .as_deref(),
                Some(want),
                "{name}"
            );
        }
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('mistral-large-latest', 1000000, 1000000)::text")
                .as_deref(),
            Some("2")
        );
        // A snapshot nothing covers stays unpriced rather than priced as its undated name.
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('gpt-4o-2099-01-01', 1, 1)::text"),
            None
        );
        // Hosts from the provider argument; an unknown service tier is 22023.
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('gpt-4o', 1000000, 0, provider => 'azure')::text")
                .as_deref(),
            Some("2.5")
        );
        // A provider that lists no model of that name leaves the decision to the name.
        assert_eq!(num("SELECT llm_cost.estimate_cost('llama-3.3-70b-versatile', 1000000, 0, provider => 'openai')::text").as_deref(), Some("0.59"));
        assert_eq!(num("SELECT llm_cost.estimate_cost('us.anthropic.claude-sonnet-4-5-20250929-v1:0', 1000000, 0, provider => 'anthropic')::text").as_deref(), Some("3.3"));
        assert_eq!(num("SELECT llm_cost.estimate_cost('gpt-4o', 1000000, 1000000, service_tier => 'batch')::text").as_deref(), Some("6.25"));
        assert_eq!(num("SELECT llm_cost.estimate_cost('gpt-4o', 1000000, 1000000, service_tier => 'default')::text").as_deref(), Some("12.5"));
        Spi::run(
            "DO $$ BEGIN PERFORM llm_cost.estimate_cost('gpt-4o', 1, 1, service_tier => 'turbo');
               EXCEPTION WHEN OTHERS THEN PERFORM set_config('t.tier', SQLSTATE || ':' || SQLERRM, true); END $$",
        )
        .unwrap();
        assert_eq!(
            num("SELECT current_setting('t.tier')").as_deref(),
            Some("22023:unknown service tier \"turbo\"")
        );
        let j = Spi::get_one::<pgrx::JsonB>(
            "SELECT llm_cost.explain_cost('mistralai/mistral-large', 1, 1)",
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(j["provider"], "openrouter");
        assert_eq!(j["matched"]["by"], "match rule");
        assert_eq!(
            j["matched"]["rule"]["or"][0]["equals"],
            "mistralai/mistral-large"
        );
    }

    #[pg_test]
    fn unknown_model_is_null_not_zero() {
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('no-such-model', 1, 1)::text"),
            None
        );
        assert_eq!(num("SELECT llm_cost.resolve_model('no-such-model')"), None);
    }

    #[pg_test]
    fn null_arguments_give_null() {
        assert_eq!(num("SELECT llm_cost.estimate_cost(NULL, 1, 1)::text"), None);
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('gpt-4o', NULL, 1)::text"),
            None
        );
    }

    #[pg_test(error = "input_tokens must not be negative")]
    fn negative_input_tokens() {
        Spi::run("SELECT llm_cost.estimate_cost('gpt-4o', -1, 1)").unwrap();
    }

    #[pg_test(error = "cache_write_tokens must not be negative")]
    fn negative_cache_write_tokens_in_explain() {
        Spi::run("SELECT llm_cost.explain_cost('gpt-4o', 1, 1, 0, -3)").unwrap();
    }

    #[pg_test]
    fn negative_tokens_sqlstate_is_22023() {
        Spi::run(
            "DO $$ BEGIN PERFORM llm_cost.estimate_cost('gpt-4o', 1, -1);
               EXCEPTION WHEN OTHERS THEN PERFORM set_config('t.state', SQLSTATE || ':' || SQLERRM, true); END $$",
        )
        .unwrap();
        assert_eq!(
            num("SELECT current_setting('t.state')").as_deref(),
            Some("22023:output_tokens must not be negative")
        );
    }

    #[pg_test]
    fn bigint_max_does_not_overflow() {
        let v = num("SELECT llm_cost.estimate_cost('claude-opus-4-1-20250805', 9223372036854775807, 9223372036854775807, 9223372036854775807, 9223372036854775807)::text").unwrap();
        // (15 + 75 + 1.5 + 18.75) * (2^63-1) / 1e6
        assert_eq!(v, "1016876767063239.03272175");
        assert_eq!(
            Spi::get_one::<bool>(&format!(
                "SELECT {v}::numeric * 1000000 = 110.25 * 9223372036854775807::numeric"
            ))
            .unwrap(),
            Some(true)
        );
    }

    #[pg_test]
    fn cache_tokens_and_fallback() {
        // Anthropic: cache read 0.3, write 3.75 per 1M.
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 1000, 500, 20000, 4000)::text")
                .as_deref(),
            Some("0.0315")
        );
        // A model with no cache price: the input price (1) applies to both.
        Spi::run("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('acme', 'acme-nocache', 1, 2)").unwrap();
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('acme-nocache', 0, 0, 100000, 100000)::text")
                .as_deref(),
            Some("0.2")
        );
    }

    #[pg_test]
    fn long_context_tier() {
        // gpt-5.4: 2.5/15 up to 272k prompt tokens, 5/22.5 above.
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('gpt-5.4', 272000, 0)::text").as_deref(),
            Some("0.68")
        );
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('gpt-5.4', 272001, 1000000)::text").as_deref(),
            Some("23.860005")
        );
        // Cached prompt tokens count towards the tier.
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('gpt-5.4', 200000, 0, 72001)::text").as_deref(),
            Some("1.0360005")
        );
    }

    #[pg_test]
    fn price_history_by_event_time() {
        Spi::run(
            "INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, valid_from, valid_to)
             VALUES ('acme', 'acme-1', 10, 20, '-infinity', '2026-01-01'),
                    ('acme', 'acme-1', 1, 2, '2026-01-01', 'infinity')",
        )
        .unwrap();
        assert_eq!(num("SELECT llm_cost.estimate_cost('acme-1', 1000000, 0, 0, 0, '2025-12-31 23:59:59+00')::text").as_deref(), Some("10"));
        assert_eq!(num("SELECT llm_cost.estimate_cost('acme-1', 1000000, 0, 0, 0, '2026-01-01 00:00:00+00')::text").as_deref(), Some("1"));
    }

    #[pg_test(
        error = "price rows of acme acme-2 (min_input_tokens 0, service tier standard) overlap in time"
    )]
    fn overlapping_prices_rejected() {
        Spi::run(
            "INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, valid_from, valid_to)
             VALUES ('acme', 'acme-2', 10, 20, '-infinity', '2026-02-01'),
                    ('acme', 'acme-2', 1, 2, '2026-01-01', 'infinity')",
        )
        .unwrap();
    }

    #[pg_test]
    fn own_rows_override_shipped_and_shipped_rows_are_read_only() {
        Spi::run(
            "INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, note)
             VALUES ('anthropic', 'claude-sonnet-4-5', 2, 10, 'negotiated')",
        )
        .unwrap();
        // Your row wins over both shipped tiers.
        assert_eq!(num("SELECT llm_cost.estimate_cost('claude-sonnet-4-5-20250929', 1000000, 1000000)::text").as_deref(), Some("12"));
        Spi::run(
            "DO $$ BEGIN UPDATE llm_cost.model_prices SET input_usd_per_mtok = 0 WHERE id = 3;
               EXCEPTION WHEN insufficient_privilege THEN PERFORM set_config('t.ro', 'refused', true); END $$",
        )
        .unwrap();
        assert_eq!(
            num("SELECT current_setting('t.ro', true)").as_deref(),
            Some("refused")
        );
    }

    #[pg_test]
    fn bad_prices_rejected() {
        for bad in ["-1", "1000000", "0.00000000001"] {
            let r = Spi::run(&format!(
                "DO $$ BEGIN INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'bad', {bad});
                   EXCEPTION WHEN check_violation THEN PERFORM set_config('t.bad', 'refused', true); END $$"
            ));
            assert!(r.is_ok());
            assert_eq!(
                num("SELECT current_setting('t.bad', true)").as_deref(),
                Some("refused"),
                "{bad}"
            );
            Spi::run("SELECT set_config('t.bad', '', true)").unwrap();
        }
    }

    #[pg_test]
    fn aliases_resolve_and_invalidate_within_transaction() {
        assert_eq!(num("SELECT llm_cost.resolve_model('house-llm')"), None);
        Spi::run(
            "INSERT INTO llm_cost.model_aliases (alias, model) VALUES ('house-llm', 'gpt-4o')",
        )
        .unwrap();
        assert_eq!(
            num("SELECT llm_cost.resolve_model('House-LLM')").as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('house-llm', 1000000, 0)::text").as_deref(),
            Some("2.5")
        );
    }

    #[pg_test]
    fn resolution_spellings() {
        let cases = [
            ("claude-sonnet-4-5", "claude-sonnet-4-5"),
            ("CLAUDE-SONNET-4-5-20250929", "claude-sonnet-4-5"),
            ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
            (
                "openrouter/anthropic/claude-sonnet-4.5",
                "anthropic/claude-sonnet-4.5",
            ),
            (
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
            ),
            ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("google/gemini-2.5-flash", "google/gemini-2.5-flash"),
            ("deepseek-chat", "deepseek-chat"),
        ];
        for (name, want) in cases {
            assert_eq!(
                num(&format!("SELECT llm_cost.resolve_model('{name}')")).as_deref(),
                Some(want),
                "{name}"
            );
        }
        assert_eq!(
            num("SELECT llm_cost.provider_of('us.anthropic.claude-sonnet-4-5-20250929-v1:0')")
                .as_deref(),
            Some("aws")
        );
        assert_eq!(
            num("SELECT llm_cost.resolve_model('claude-sonnet-4-5', 'vertex_ai')").as_deref(),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            num("SELECT llm_cost.provider_id('bedrock')").as_deref(),
            Some("aws")
        );
        assert_eq!(
            num("SELECT llm_cost.provider_id('Together_AI')").as_deref(),
            Some("together")
        );
        assert_eq!(
            num("SELECT llm_cost.provider_of('gemini-2.5-pro')").as_deref(),
            Some("google")
        );
        assert_eq!(num("SELECT llm_cost.provider_of('zzz')"), None);
    }

    /// Issue #16: each provider's documented usage object, priced by hand (USD per 1M tokens from
    /// the catalog: gpt-4o 2.5 / 10 / cache 1.25, gpt-5 1.25 / 10 / 0.125, Sonnet 4.5 3 / 15 / 0.3 /
    /// writes 3.75 (5m) and 6 (1h), Gemini 2.5 Flash 0.3 / 2.5 / 0.03, Bedrock Claude 3.7 Sonnet 3 /
    /// 15 / 0.3 / 3.75, DeepSeek chat 0.28 / 0.42 / 0.028, Mistral Small 0.15 / 0.6, OpenRouter's
    /// Claude 3.7 Sonnet 3 / 15 with no cache price).
    #[pg_test]
    fn usage_objects_priced_by_hand() {
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            // OpenAI Chat Completions: prompt_tokens includes the 1,920 cached ones (not counted twice):
            // 86 * 2.5 + 1920 * 1.25 + 300 * 10 = 5615.
            (
                "gpt-4o",
                r#"{"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306, "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}"#,
                None,
                "0.005615",
            ),
            // A whole response with its usage inside.
            (
                "gpt-4o",
                r#"{"id": "chatcmpl-1", "object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1920}}}"#,
                None,
                "0.005615",
            ),
            // OpenAI Responses: 26 * 1.25 + 10 * 0.125 + 87 * 10 (reasoning included) = 903.75.
            (
                "gpt-5",
                r#"{"input_tokens": 36, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 40}, "total_tokens": 123}"#,
                None,
                "0.00090375",
            ),
            // Anthropic: input excludes cache reads and writes; 1-hour writes at 6, not 3.75:
            // 50 * 3 + 503 * 15 + 1800 * 0.3 + 48 * 3.75 + 2000 * 6 = 20415.
            (
                "claude-sonnet-4-5",
                r#"{"input_tokens": 50, "cache_creation_input_tokens": 2048, "cache_read_input_tokens": 1800, "output_tokens": 503, "cache_creation": {"ephemeral_5m_input_tokens": 48, "ephemeral_1h_input_tokens": 2000}, "service_tier": "standard"}"#,
                None,
                "0.020415",
            ),
            // Gemini: thinking is output: 200 * 0.3 + 1000 * 0.03 + (300 + 700) * 2.5 = 2590.
            (
                "gemini-2.5-flash",
                r#"{"usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": 300, "thoughtsTokenCount": 700, "cachedContentTokenCount": 1000, "totalTokenCount": 2200}}"#,
                None,
                "0.00259",
            ),
            // Bedrock Converse: 30 * 3 + 628 * 15 + 100 * 0.3 + 20 * 3.75 = 9615.
            (
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                r#"{"inputTokens": 30, "outputTokens": 628, "totalTokens": 778, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20}"#,
                None,
                "0.009615",
            ),
            // DeepSeek: 200 * 0.28 + 800 * 0.028 + 10 * 0.42 = 82.6.
            (
                "deepseek-chat",
                r#"{"prompt_tokens": 1000, "completion_tokens": 10, "total_tokens": 1010, "prompt_cache_hit_tokens": 800, "prompt_cache_miss_tokens": 200}"#,
                None,
                "0.0000826",
            ),
            // Mistral: 12 * 0.15 + 34 * 0.6 = 22.2.
            (
                "mistral-small-latest",
                r#"{"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}"#,
                Some("mistral"),
                "0.0000222",
            ),
            // OpenRouter: its cost is a provided cost (kept by the trigger); the estimate:
            // 94 * 3 + 100 * 3 (no cache price: input) + 2 * 15 = 612.
            (
                "anthropic/claude-3.7-sonnet",
                r#"{"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196, "cost": 0.95, "is_byok": false, "prompt_tokens_details": {"cached_tokens": 100}}"#,
                Some("openrouter"),
                "0.000612",
            ),
            // LiteLLM's standard logging payload: 500 * 3 + 2000 * 0.3 + 500 * 3.75 + 20 * 15 = 4275.
            (
                "claude-sonnet-4-5",
                r#"{"id": "x", "call_type": "completion", "prompt_tokens": 3000, "completion_tokens": 20, "total_tokens": 3020, "response_cost": 0.0043, "metadata": {"usage_object": {"prompt_tokens": 3000, "completion_tokens": 20, "cache_creation_input_tokens": 500, "cache_read_input_tokens": 2000}}}"#,
                None,
                "0.004275",
            ),
        ];
        for (model, usage, provider, want) in cases {
            let p = provider.map_or("NULL".to_string(), |p| format!("'{p}'"));
            let got = num(&format!(
                "SELECT llm_cost.estimate_cost('{model}', '{usage}'::jsonb, provider => {p})::text"
            ));
            assert_eq!(got.as_deref(), Some(*want), "{model} {usage}");
        }
        // The same call with the counts given directly, the 1-hour writes as an argument.
        assert_eq!(num("SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 50, 503, 1800, 48, cache_write_1h_tokens => 2000)::text").as_deref(), Some("0.020415"));
        // usage_tokens: the counts, the reported cost, the keys llm_cost does not read.
        assert_eq!(
            num(r#"SELECT concat_ws(' ', input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens, provided_cost_usd, format, ignored_keys::text) FROM llm_cost.usage_tokens('{"prompt_tokens": 194, "completion_tokens": 2, "cost": 0.95, "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 1}, "brand_new": 1}')"#).as_deref(),
            Some("94 2 100 0 0 1 0.95 openrouter {brand_new}")
        );
        let j = Spi::get_one::<pgrx::JsonB>(r#"SELECT llm_cost.explain_cost('gpt-4o', '{"prompt_tokens": 10, "completion_tokens": 1, "surprise": {"a": 1}}')"#).unwrap().unwrap().0;
        assert_eq!(
            j["usage"]["from_usage_object"]["ignored_keys"],
            serde_json::json!(["surprise"])
        );
        assert_eq!(j["usage"]["input_tokens"], 10);
    }

    #[pg_test]
    fn usage_objects_bad_input_is_22023_with_the_path() {
        for (usage, provider, want) in [
            (r#"{"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 1.5}}"#, "NULL", "22023: usage object: $.prompt_tokens_details.cached_tokens: must be a non-negative integer token count (got 1.5)"),
            (r#"{"input_tokens": -3, "output_tokens": 1}"#, "NULL", "22023: usage object: $.input_tokens: must be a non-negative integer token count (got -3)"),
            (r#"{"usageMetadata": {"promptTokenCount": "12"}}"#, "NULL", "22023: usage object: $.usageMetadata.promptTokenCount: must be a non-negative integer token count (got \"12\")"),
            (r#"{"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}"#, "NULL", "22023: usage object: $.prompt_tokens_details.cached_tokens: 9 is more than $.prompt_tokens (5) leaves"),
        ] {
            let e = crate::test_support::error_of(&format!("PERFORM llm_cost.estimate_cost('gpt-4o', '{usage}'::jsonb, provider => {provider})"));
            assert_eq!(e, want, "{usage}");
        }
        let e = crate::test_support::error_of(
            r#"PERFORM llm_cost.usage_tokens('{"prompt_tokens": 10, "input_tokens": 10, "output_tokens": 2}')"#,
        );
        assert!(
            e.starts_with("22023: usage object: $: ambiguous usage object")
                && e.contains("name the provider"),
            "{e}"
        );
        assert_eq!(num(r#"SELECT (llm_cost.usage_tokens('{"prompt_tokens": 10, "input_tokens": 10, "output_tokens": 2}', 'anthropic')).input_tokens::text"#).as_deref(), Some("10"));
        let e = crate::test_support::error_of(r#"PERFORM llm_cost.usage_tokens('{"tokens": 10}')"#);
        assert!(
            e.starts_with("22023: usage object: $: not a usage object llm_cost knows"),
            "{e}"
        );
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('gpt-4o', NULL::jsonb)::text"),
            None
        );
        // The 1-hour argument is checked like the others; NULL in it is NULL.
        assert_eq!(
            crate::test_support::error_of("PERFORM llm_cost.estimate_cost('claude-sonnet-4-5', 1, 1, cache_write_1h_tokens => -2)"),
            "22023: cache_write_1h_tokens must not be negative"
        );
        assert_eq!(num("SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 1, 1, cache_write_1h_tokens => NULL)::text"), None);
        // import_prices: no document, a time that is not one.
        assert!(
            crate::test_support::error_of("PERFORM * FROM llm_cost.import_prices(NULL)")
                .starts_with("22004")
        );
        assert!(crate::test_support::error_of(
            r#"PERFORM * FROM llm_cost.import_prices('{"data": []}', valid_from => 'infinity')"#
        )
        .starts_with("22023"));
        assert_eq!(
            num("SELECT (llm_cost.usage_tokens(NULL)).input_tokens::text"),
            None
        );
    }

    #[pg_test]
    fn format_cost_sql() {
        assert_eq!(
            num("SELECT llm_cost.format_cost(0)").as_deref(),
            Some("$0.00")
        );
        assert_eq!(
            num("SELECT llm_cost.format_cost(0.0012345)").as_deref(),
            Some("$0.0012")
        );
        assert_eq!(
            num("SELECT llm_cost.format_cost(0.45)").as_deref(),
            Some("$0.45")
        );
        assert_eq!(
            num("SELECT llm_cost.format_cost(1234.567)").as_deref(),
            Some("$1,234.57")
        );
        // A cost llm_cost could not compute is never shown as $0.00.
        assert_eq!(
            num("SELECT llm_cost.format_cost(NULL)").as_deref(),
            Some("unpriced")
        );
    }

    #[pg_test]
    fn explain_cost_parts() {
        let j = Spi::get_one::<pgrx::JsonB>(
            "SELECT llm_cost.explain_cost('anthropic/claude-sonnet-4-5', 1000, 500, 20000, 4000)",
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(j["resolved_model"], "claude-sonnet-4-5");
        assert_eq!(
            j["price_row"]["source_url"],
            "https://www.anthropic.com/pricing#api"
        );
        assert_eq!(j["parts_usd"]["input"].to_string(), "0.003");
        assert_eq!(j["parts_usd"]["cache_write"].to_string(), "0.015");
        assert_eq!(j["cost_usd"].to_string(), "0.0315");
        let u = Spi::get_one::<pgrx::JsonB>("SELECT llm_cost.explain_cost('nope', 1, 1)")
            .unwrap()
            .unwrap()
            .0;
        assert!(u["cost_usd"].is_null());
    }

    #[pg_test]
    fn catalog_matches_reference_prices() {
        // Every published reference price (tests/data/reference-prices.csv) is what the catalog
        // charges for that name at that provider, at and above each long-context threshold.
        let csv = include_str!("../../tests/data/reference-prices.csv");
        let mut checked = 0;
        for line in csv.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (provider, model, input, output, min) = (f[0], f[1], f[3], f[4], f[8]);
            let output = if output.is_empty() { "0" } else { output };
            let min: i64 = min.parse().unwrap();
            let prompt = if min > 0 { min + 1 } else { 1000 };
            let q = format!(
                "SELECT e->'prices_usd_per_mtok'->>'input' || '/' || (e->'prices_usd_per_mtok'->>'output') || '/' ||
                        coalesce(e->'price_row'->>'cache_read_usd_per_mtok', '') || '/' || coalesce(e->'price_row'->>'cache_write_5m_usd_per_mtok', '')
                   FROM llm_cost.explain_cost('{model}', {prompt}, 1000, provider => '{provider}') e"
            );
            let want = format!("{}/{}/{}/{}", input, output, f[5], f[6]);
            let got = Spi::get_one::<String>(&q).unwrap().unwrap_or_default();
            let norm = |s: &str| {
                s.split('/')
                    .map(|x| {
                        x.parse::<rust_decimal::Decimal>()
                            .map(|d| d.normalize().to_string())
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
            };
            // An empty cache price in the reference list means the list has none, not that the
            // provider charges none: compare the cache prices the list has.
            let (mut g, w) = (norm(&got), norm(&want));
            for i in 2..4 {
                if w[i].is_empty() {
                    g[i] = String::new();
                }
            }
            assert_eq!(g, w, "{line}");
            checked += 1;
        }
        assert_eq!(checked, 46);
        let models = Spi::get_one::<i64>(
            "SELECT count(DISTINCT (provider, model)) FROM llm_cost.model_prices",
        )
        .unwrap()
        .unwrap();
        assert!(models >= 2000, "{models}");
        let providers =
            Spi::get_one::<i64>("SELECT count(DISTINCT provider) FROM llm_cost.model_prices")
                .unwrap()
                .unwrap();
        assert!(providers >= 30, "{providers}");
    }
}
