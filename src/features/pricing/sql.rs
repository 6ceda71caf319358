//! SQL functions of the price catalog: a thin shell over `pricing.rs`, `catalog.rs` and `cache.rs`.

use crate::features::pricing::catalog as cache;
use crate::features::pricing::catalog::{price_call, Priced};
use crate::pg::money::{cost_to_numeric_datum, NumericDatum};
use crate::pg::spi;
use llm_cost_core::pricing::{self, Cost, PriceRow, ServiceTier, Usage};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyNumeric, FromDatum, JsonB};
use rust_decimal::Decimal;
use std::str::FromStr;

/// Raises SQLSTATE 22023 naming the first negative count.
pub fn check_usage(u: &Usage) {
    if let Err(e) = u.validate() {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            e.to_string(),
        )
        .raise();
    }
}

/// The counts of an `estimate_cost`/`explain_cost` call, in argument order.
type CountArgs = [Option<i64>; 12];

/// The token counts and time of an `estimate_cost`/`explain_cost` call: None when any is NULL
/// (as a strict function would give NULL); 22023 for a negative count or parts larger than
/// their count.
fn counts_args(
    c: CountArgs,
    at: Option<TimestampWithTimeZone>,
) -> Option<(Usage, TimestampWithTimeZone)> {
    let u = usage_checked(c)?;
    Some((u, at?))
}

/// The counts of a call as a checked `Usage`: None when one is NULL; 22023 for a negative count
/// or parts larger than their count.
fn usage_checked(c: CountArgs) -> Option<Usage> {
    let [input, output, cache_read, cache_write, cache_write_1h, input_audio, cache_read_audio, output_audio, input_image, cache_read_image, output_image, web_searches] =
        c;
    let u = Usage {
        input: input?,
        output: output?,
        cache_read: cache_read?,
        cache_write: cache_write?,
        cache_write_1h: cache_write_1h?,
        input_audio: input_audio?,
        cache_read_audio: cache_read_audio?,
        output_audio: output_audio?,
        input_image: input_image?,
        cache_read_image: cache_read_image?,
        output_image: output_image?,
        web_searches: web_searches?,
    };
    check_usage(&u);
    Some(u)
}

/// The service tier of an argument: NULL is standard, an unknown value is 22023.
pub fn tier_arg(v: Option<&str>) -> ServiceTier {
    match v {
        None => ServiceTier::Standard,
        Some(t) => ServiceTier::parse(t).unwrap_or_else(|| {
            crate::pg::fail::user(
                pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("unknown service tier \"{t}\""),
            )
            .detail(
                "Service tiers are standard (also default, auto), batch, flex, priority and fast.",
            )
            .raise();
        }),
    }
}

/// Cost in USD of one LLM call, from the price catalog at the call's time: the SQL function
/// `llm_cost.estimate_cost(model, input_tokens, output_tokens, cache_read_tokens,
/// cache_write_tokens, at, provider, service_tier, cache_write_1h_tokens, input_audio_tokens,
/// cache_read_audio_tokens, output_audio_tokens, input_image_tokens, cache_read_image_tokens,
/// output_image_tokens, web_searches)`, declared in sql/estimate.sql.
///
/// `input_tokens` are uncached input tokens (OpenAI: prompt_tokens - cached_tokens;
/// Anthropic: input_tokens), `output_tokens` include reasoning tokens, `cache_read_tokens` are
/// prompt tokens read from the cache (OpenAI: cached_tokens; Anthropic:
/// cache_read_input_tokens), `cache_write_tokens` are tokens written to the cache (Anthropic:
/// cache_creation_input_tokens). `provider`: the host the call went to (openrouter, bedrock,
/// azure, ...), when the name does not say; `service_tier`: batch, flex, priority (NULL:
/// standard). The modality counts are parts of their count (`input_audio_tokens` of
/// `input_tokens`, ...), billed at the modality's price where the catalog has one;
/// `web_searches` are billed at the model's search fee. `at` also picks a time-of-day price.
/// NULL when the model is unknown or has no price at `at` for that tier, or when the model, a
/// count or `at` is NULL.
///
/// A version-1 function read straight from `fcinfo`: pgrx's generated wrapper takes its 16
/// arguments one by one through an iterator, which was a third of a call's time; here each is a
/// load. (The function is hot: one call per row of a report.) Its symbol is the one pgrx gave
/// the function before (`estimate_cost_wrapper`): every earlier install and update script names
/// it, with a prefix of today's arguments (0.1.0 had six); an argument a declaration lacks takes
/// its default.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn estimate_cost_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is the call's; the SQL declaration (sql/estimate.sql) gives it 16 arguments
    // (defaults filled in by the planner), so nargs of them are initialised.
    let args = unsafe { (*fcinfo).args.as_slice((*fcinfo).nargs as usize) };
    let arg = |i: usize| args.get(i).filter(|a| !a.isnull).map(|a| a.value);
    let text = |i: usize| {
        // SAFETY: arguments 0, 6 and 7 are text (the declaration), valid for the call.
        arg(i).and_then(|d| unsafe {
            <&str as FromDatum>::from_polymorphic_datum(d, false, pg_sys::TEXTOID)
        })
    };
    let count = |i: usize| arg(i).map(|d| d.value() as i64);
    let result = (|| {
        let model = text(0)?;
        let mut c: CountArgs = [None; 12];
        for (k, i) in [1usize, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15]
            .into_iter()
            .enumerate()
        {
            // A declaration of an earlier version has fewer arguments: the counts it lacks are 0
            // (input_tokens and output_tokens are in every version).
            c[k] = if i < args.len() { count(i) } else { Some(0) };
            c[k]?;
        }
        // As the other forms: a bad count is an error before a NULL time gives NULL.
        let u = usage_checked(c)?;
        // A timestamptz is an int64 by value: microseconds since 2000-01-01.
        let at = arg(5)?.value() as i64;
        let tier = tier_arg(text(7));
        match price_call(model, text(6), tier, &u, at) {
            Priced::Cost(c) => Some(cost_to_numeric_datum(c).0),
            Priced::UnknownModel | Priced::NoPriceAt => None,
        }
    })();
    match result {
        Some(d) => d,
        None => {
            // SAFETY: fcinfo is the call's; a NULL result is flagged there.
            unsafe { (*fcinfo).isnull = true };
            pg_sys::Datum::from(0usize)
        }
    }
}

/// `pg_finfo_` record of `estimate_cost_wrapper`: a version-1 function.
#[no_mangle]
pub extern "C" fn pg_finfo_estimate_cost_wrapper() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// What prompt caching did to a call at list price (by model name, as `estimate_cost` without a
/// provider): (savings of its cache reads, extra paid for its cache writes), both 10^-16 USD;
/// None when the model has no price then. The rollups sum the same (`rollups::accumulate`).
fn cache_effect(model: &str, counts: [i64; 4], at: TimestampWithTimeZone) -> Option<(i128, i128)> {
    let [input, output, cache_read, cache_write] = counts;
    let u = Usage {
        input,
        output,
        cache_read,
        cache_write,
        ..Usage::ZERO
    };
    check_usage(&u);
    let at = {
        use pgrx::IntoDatum;
        at.into_datum().map_or(0, |d| d.value() as i64)
    };
    cache::estimate_by_name(model, &u, at)?;
    Some(llm_cost_core::ledger::cache_effects(&u, |u| {
        cache::estimate_by_name(model, u, at)
    }))
}

/// What a call's cache reads saved at list price: their cost as plain input minus their cost as
/// cache reads (0 without cache reads; NULL when the model has no price at `at`).
#[pg_extern(stable, parallel_safe, strict)]
pub fn cache_savings(
    model: &str,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: default!(i64, 0),
    cache_write_tokens: default!(i64, 0),
    at: default!(TimestampWithTimeZone, "now()"),
) -> Option<NumericDatum> {
    let counts = [
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
    ];
    cache_effect(model, counts, at).map(|(s, _)| cost_to_numeric_datum(Cost(s)))
}

/// What a call's cache writes cost beyond plain input at list price (0 without cache writes;
/// NULL when the model has no price at `at`).
#[pg_extern(stable, parallel_safe, strict)]
pub fn cache_write_extra(
    model: &str,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: default!(i64, 0),
    cache_write_tokens: default!(i64, 0),
    at: default!(TimestampWithTimeZone, "now()"),
) -> Option<NumericDatum> {
    let counts = [
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
    ];
    cache_effect(model, counts, at).map(|(_, w)| cost_to_numeric_datum(Cost(w)))
}

/// The catalog model an application's model name resolves to, or NULL.
#[pg_extern(stable, parallel_safe)]
pub fn resolve_model(model: &str) -> Option<String> {
    let loaded = cache::catalog();
    loaded
        .resolve_index(model, None)
        .map(|i| loaded.catalog.model(i).model.to_string())
}

/// The catalog model a name resolves to at a given provider (host), or NULL.
#[pg_extern(stable, parallel_safe, name = "resolve_model")]
pub fn resolve_model_at(model: Option<&str>, provider: Option<&str>) -> Option<String> {
    let loaded = cache::catalog();
    loaded
        .resolve_index(model?, provider)
        .map(|i| loaded.catalog.model(i).model.to_string())
}

/// The provider of a model name: the catalog's when it resolves, else a guess from its prefix
/// or family (`claude-*` is anthropic). NULL when nothing is known.
#[pg_extern(stable, parallel_safe)]
pub fn provider_of(model: &str) -> Option<String> {
    let loaded = cache::catalog();
    match loaded.resolve_index(model, None) {
        Some(i) => Some(loaded.catalog.model(i).provider.to_string()),
        None => llm_cost_core::catalog::guess_provider(model).map(str::to_string),
    }
}

/// The provider a call is reported under: what the cost trigger writes into a priced provider
/// column (`track(priced_provider_column => ...)`): the provider value as the providers table
/// names it (`Anthropic`, `claude`: anthropic; an unknown value in lower case), or without one
/// the model's provider. NULL when nothing is known.
#[pg_extern(stable, parallel_safe)]
pub fn priced_provider(model: &str, provider: default!(Option<&str>, "NULL")) -> Option<String> {
    let loaded = cache::catalog();
    match provider.filter(|p| !p.trim().is_empty()) {
        Some(p) => Some(loaded.catalog.normalize_provider(p)),
        None => provider_of(model),
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
        Some(i) => loaded
            .catalog
            .model(loaded.reported_model(i))
            .model
            .to_string(),
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
            crate::pg::fail::user(
                pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "llm_cost.import_prices: malformed price document at {}: {}",
                    e.path, e.message
                ),
            )
            .detail("Nothing was imported.")
            .raise();
        }
    }
}

/// This backend's price catalog and what it cost (for the benchmark and for operators): how it
/// came (attached from shared memory, built and published, built for this backend alone), the
/// version, the image's size, the time the load took, and the memory it added to the backend
/// (resident, and private: anonymous memory, which a shared image does not count in). With
/// `reload`, the catalog is first dropped and loaded again.
#[pg_extern(volatile, parallel_unsafe)]
pub fn _catalog_stats(reload: default!(bool, false)) -> JsonB {
    fn status_kb(field: &str) -> i64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(-1)
    }
    if reload {
        cache::drop_cached();
    }
    let (rss, anon) = (status_kb("VmRSS:"), status_kb("RssAnon:"));
    let loaded = cache::catalog();
    let (rss2, anon2) = (status_kb("VmRSS:"), status_kb("RssAnon:"));
    let server = crate::pg::shared::stats().map(|(n, bytes, published, attached)| {
        serde_json::json!({"images": n, "kb": bytes / 1024, "published": published, "attached": attached})
    });
    JsonB(serde_json::json!({
        "source": loaded.source.as_str(),
        "version": loaded.key.map(|k| k.1),
        "rows": loaded.rows,
        "models": loaded.catalog.model_count(),
        "providers": loaded.catalog.provider_count(),
        "load_ms": loaded.load_us as f64 / 1000.0,
        "read_ms": loaded.read_us as f64 / 1000.0,
        "rss_added_kb": rss2 - rss,
        "private_added_kb": anon2 - anon,
        "catalog_kb": loaded.catalog.bytes() / 1024,
        "shared": server,
        "checked": cache::check_counts(),
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
            crate::pg::fail::user(
                pgrx::PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                format!("format_cost: {text} is out of range (at most 28 significant digits)"),
            )
            .raise();
        }
    };
    pricing::format_cost(d)
}

/// `format_cost` of an amount in a cost unit (`usd`, `cents`, `usd_micros`, `microcents`: what an
/// integer cost column tracked with that unit holds): `format_cost(1530, 'microcents')` is
/// `$0.000015`. 22023 for an unknown unit.
#[pg_extern(immutable, parallel_safe, name = "format_cost")]
pub fn format_cost_in(cost: Option<AnyNumeric>, unit: &str) -> String {
    let Some(scale) = pricing::cost_unit_scale(unit) else {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown cost unit \"{unit}\""),
        )
        .hint("Cost units are usd, cents, usd_micros (millionths of a dollar) and microcents (millionths of a cent).")
        .raise();
    };
    let Some(cost) = cost else {
        return "unpriced".to_string();
    };
    let text = cost.to_string();
    let mut d = match Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)) {
        Ok(d) => d,
        Err(_) => {
            crate::pg::fail::user(
                pgrx::PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                format!("format_cost: {text} is out of range (at most 28 significant digits)"),
            )
            .raise();
        }
    };
    if d.set_scale(d.scale() + scale).is_err() {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            format!("format_cost: {text} {unit} is out of range"),
        )
        .raise();
    }
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
    input_audio_tokens: default!(Option<i64>, 0),
    cache_read_audio_tokens: default!(Option<i64>, 0),
    output_audio_tokens: default!(Option<i64>, 0),
    input_image_tokens: default!(Option<i64>, 0),
    cache_read_image_tokens: default!(Option<i64>, 0),
    output_image_tokens: default!(Option<i64>, 0),
    web_searches: default!(Option<i64>, 0),
) -> Option<JsonB> {
    let model = model?;
    let (u, at) = counts_args(
        [
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            cache_write_1h_tokens,
            input_audio_tokens,
            cache_read_audio_tokens,
            output_audio_tokens,
            input_image_tokens,
            cache_read_image_tokens,
            output_image_tokens,
            web_searches,
        ],
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
    if !u.plain() {
        for (k, v) in u.named().into_iter().skip(5) {
            usage[k] = json!(v);
        }
    }
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
        "rule": m.rule_text.and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()),
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
    let x = row.extras();
    let mut prices = json!({
        "input": price_json(row.input),
        "output": price_json(row.output),
        "cache_read": price_json(b.cache_read_price),
        "cache_read_is_input_price": row.cache_read.is_none(),
        "cache_write": price_json(b.cache_write_price),
        "cache_write_is_input_price": row.cache_write_5m.is_none(),
        "cache_write_1h": price_json(b.cache_write_1h_price),
        "cache_write_1h_is_catalog_price": row.cache_write_1h.is_some(),
    });
    let mut parts = json!({
        "input": money_json(b.input),
        "output": money_json(b.output),
        "cache_read": money_json(b.cache_read),
        "cache_write": money_json(b.cache_write),
        "cache_write_1h": money_json(b.cache_write_1h),
    });
    // Modality prices and fees: shown when the row has them or the call used them.
    for (name, price, count, part) in [
        ("input_audio", x.input_audio, u.input_audio, b.input_audio),
        (
            "cache_read_audio",
            x.cache_read_audio,
            u.cache_read_audio,
            b.cache_read_audio,
        ),
        (
            "output_audio",
            x.output_audio,
            u.output_audio,
            b.output_audio,
        ),
        ("input_image", x.input_image, u.input_image, b.input_image),
        (
            "cache_read_image",
            x.cache_read_image,
            u.cache_read_image,
            b.cache_read_image,
        ),
        (
            "output_image",
            x.output_image,
            u.output_image,
            b.output_image,
        ),
    ] {
        if price.is_some() || count != 0 {
            prices[name] = price.map(price_json).unwrap_or(serde_json::Value::Null);
            parts[name] = money_json(part);
        }
    }
    let mut fees = serde_json::Map::new();
    if x.web_search_per_k.is_some() || u.web_searches != 0 {
        fees.insert(
            "web_searches".into(),
            json!({"count": u.web_searches, "usd_per_1k": x.web_search_per_k.map(price_json), "usd": money_json(b.web_searches)}),
        );
    }
    if let Some(p) = x.request_per_k {
        fees.insert(
            "request".into(),
            json!({"count": 1, "usd_per_1k": price_json(p), "usd": money_json(b.request)}),
        );
    }
    let mut formula = String::from("(input_tokens*input + output_tokens*output + cache_read_tokens*cache_read + cache_write_tokens*cache_write + cache_write_1h_tokens*cache_write_1h) / 1000000");
    if !x.is_empty() {
        formula = String::from("(each count*its price; a modality part at its modality's price, taken out of its count) / 1000000 + searches*usd_per_1k/1000 + request fee");
    }
    let mut out = json!({
        "model": model,
        "requested": requested,
        "resolved_model": m.model,
        "provider": m.provider,
        "matched": matched,
        "service_tier": tier.as_str(),
        "at": at.to_string(),
        "usage": usage,
        "price_row": price_row_json(&row),
        "prices_usd_per_mtok": prices,
        "parts_usd": parts,
        "cost_usd": money_json(b.total),
        "formula": formula,
    });
    if !fees.is_empty() {
        out["fees"] = serde_json::Value::Object(fees);
    }
    out["time_of_day"] = match row.window {
        Some(w) => json!({"window": w.describe(), "applies": true}),
        None => {
            // Say so when the model has time-of-day prices that this instant is outside of.
            let windows: Vec<String> = loaded
                .catalog
                .model_rows(i)
                .iter()
                .filter(|r| r.window.is_some() && r.service_tier == tier && r.valid_at(at_i))
                .filter_map(|r| r.window.map(|w| w.describe()))
                .collect();
            if windows.is_empty() {
                serde_json::Value::Null
            } else {
                json!({"window": "all day", "applies": true, "other_windows": windows})
            }
        }
    };
    out
}

/// The tier a call from a usage object is priced at: the argument when given, else the tier the
/// usage (or the response around it) says it was billed at, else standard.
fn usage_tier(arg: Option<&str>, c: &llm_cost_core::usage_json::Counts) -> ServiceTier {
    match arg {
        Some(_) => tier_arg(arg),
        None => c.service_tier.unwrap_or(ServiceTier::Standard),
    }
}

/// A usage object read into counts, or 22023 naming the JSON path.
pub fn read_usage(
    usage: &serde_json::Value,
    provider: Option<&str>,
) -> llm_cost_core::usage_json::Counts {
    llm_cost_core::usage_json::parse(usage, provider).unwrap_or_else(|e| {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("usage object: {e}"),
        )
        .raise();
    })
}

pub fn usage_of(c: &llm_cost_core::usage_json::Counts) -> Usage {
    Usage {
        input: c.input,
        output: c.output,
        cache_read: c.cache_read,
        cache_write: c.cache_write_5m,
        cache_write_1h: c.cache_write_1h,
        input_audio: c.input_audio,
        cache_read_audio: c.cache_read_audio,
        output_audio: c.output_audio,
        input_image: c.input_image,
        cache_read_image: c.cache_read_image,
        output_image: c.output_image,
        web_searches: c.web_searches,
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
        "audio_input_tokens": if c.input_audio + c.cache_read_audio > 0 { Some(c.input_audio + c.cache_read_audio) } else { None },
        "audio_output_tokens": if c.output_audio > 0 { Some(c.output_audio) } else { None },
        "input_audio_tokens": c.input_audio,
        "cache_read_audio_tokens": c.cache_read_audio,
        "output_audio_tokens": c.output_audio,
        "input_image_tokens": c.input_image,
        "cache_read_image_tokens": c.cache_read_image,
        "output_image_tokens": c.output_image,
        "web_searches": c.web_searches,
        "service_tier": c.service_tier.map(|t| t.as_str()),
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
    let tier = usage_tier(service_tier, &c);
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
        usage_tier(service_tier, &c),
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

    // The SQL surface of the catalog (estimate_cost, explain_cost, resolve_model, usage objects,
    // format_cost, price rows) is tested as SQL: tests/sql/*.sql with tests/expected/*.out.

    #[pg_test]
    fn catalog_matches_reference_prices() {
        // Every published reference price (tests/data/reference-prices.csv) is what the catalog
        // charges for that name at that provider, at and above each long-context threshold. At
        // 07:00 UTC: the list's DeepSeek V4 prices are its peak (standard) hours' prices.
        let csv = include_str!("../../../tests/data/reference-prices.csv");
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
                   FROM llm_cost.explain_cost('{model}', {prompt}, 1000, provider => '{provider}',
                                              at => pg_catalog.date_trunc('day', now()) + interval '7 hours') e"
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
