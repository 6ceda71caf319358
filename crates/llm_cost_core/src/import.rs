//! Price documents read by `llm_cost.import_prices`: genai-prices' data.json, LiteLLM's
//! model_prices_and_context_window.json and OpenRouter's `/api/v1/models` response, turned into
//! catalog rows (USD per 1M tokens, exact). Plain Rust; the merge into the catalog is SQL.
//!
//! A document that is not what its format says is refused whole, with the JSON path of the first
//! problem. Entries that are well formed but cannot be priced per token (audio, images, variable
//! router prices) are returned as skipped, with the reason.

use crate::matching::Rule;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    GenaiPrices,
    LiteLlm,
    OpenRouter,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::GenaiPrices => "genai-prices",
            Format::LiteLlm => "litellm",
            Format::OpenRouter => "openrouter",
        }
    }
}

/// A refused document: the JSON path and what is wrong there.
#[derive(Debug, PartialEq, Eq)]
pub struct DocError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn bad<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, DocError> {
    Err(DocError {
        path: path.into(),
        message: message.into(),
    })
}

/// `format` as given (`auto` looks at the document).
pub fn detect(doc: &Value, format: &str) -> Result<Format, DocError> {
    match format.trim().to_ascii_lowercase().as_str() {
        "genai-prices" | "genai_prices" | "genai" => Ok(Format::GenaiPrices),
        "litellm" => Ok(Format::LiteLlm),
        "openrouter" => Ok(Format::OpenRouter),
        "auto" | "" => {
            if doc
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p.get("models").is_some()))
            {
                Ok(Format::GenaiPrices)
            } else if doc.get("data").is_some_and(|d| d.is_array()) {
                Ok(Format::OpenRouter)
            } else if doc.as_object().is_some_and(|o| {
                o.values().any(|v| {
                    v.get("litellm_provider").is_some() || v.get("input_cost_per_token").is_some()
                })
            }) {
                Ok(Format::LiteLlm)
            } else {
                bad("$", "not a price document llm_cost knows: a genai-prices data.json array of providers, a LiteLLM price map or an OpenRouter /api/v1/models response")
            }
        }
        other => bad(
            "$",
            format!("unknown format \"{other}\" (auto, genai-prices, litellm, openrouter)"),
        ),
    }
}

/// A price as exact decimal text, from a JSON number or numeric string, times `scale`
/// (1e6 turns per-token into per-1M-token prices). Prices with more than 10 decimals are rounded
/// to 10 (the catalog's precision) and reported in `notes`.
fn price(v: &Value, path: &str, scale: i64, notes: &mut Vec<String>) -> Result<Decimal, DocError> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return bad(path, "must be a number"),
    };
    let d = Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text));
    let Ok(d) = d else {
        return bad(path, format!("\"{text}\" is not a number"));
    };
    let Some(d) = d.checked_mul(Decimal::from(scale)) else {
        return bad(path, "out of range");
    };
    if d.is_sign_negative() && !d.is_zero() {
        return bad(path, format!("{text} is negative"));
    }
    if d >= Decimal::from(1_000_000) {
        return bad(
            path,
            format!("{text} is 1,000,000 USD per 1M tokens or more"),
        );
    }
    let d = d.normalize();
    if d.scale() > 10 {
        let r = d.round_dp(10).normalize();
        notes.push(format!("{path} rounded to 10 decimals from {d}"));
        return Ok(r);
    }
    Ok(d)
}

/// One catalog row of an imported model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    pub min_input_tokens: i64,
    pub service_tier: &'static str,
    pub input: Decimal,
    pub output: Decimal,
    pub cache_read: Option<Decimal>,
    pub cache_write_5m: Option<Decimal>,
    pub cache_write_1h: Option<Decimal>,
    /// Modality prices and fees, in `EXTRA_NAMES` order (USD per 1M tokens; per 1,000 searches
    /// or calls for the last two).
    pub extra: [Option<Decimal>; 8],
    /// A time-of-day price's daily window, UTC `HH:MM:SS` from and to; None: all day.
    pub window: Option<(String, String)>,
}

/// The catalog's extra price columns, as `to_json` names them: input_audio_usd_per_mtok, ...
pub const EXTRA_NAMES: [&str; 8] = [
    "input_audio",
    "cache_read_audio",
    "output_audio",
    "input_image",
    "cache_read_image",
    "output_image",
    "web_search_per_1k",
    "request_per_1k",
];

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// As the document names the provider (mapped to a catalog provider by SQL).
    pub provider: String,
    pub model: String,
    pub match_rule: Option<Value>,
    pub rows: Vec<Row>,
    /// Why the model is not imported; None when it is.
    pub skip: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Provider {
    pub id: String,
    pub name: Option<String>,
    pub pricing_url: Option<String>,
    pub model_match: Option<Value>,
    pub provider_match: Option<Value>,
    pub fallback: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Document {
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
}

/// Parses a whole document; `at_date` (YYYY-MM-DD) picks genai-prices' dated price in effect.
pub fn parse(doc: &Value, format: Format, at_date: &str) -> Result<Document, DocError> {
    match format {
        Format::GenaiPrices => genai(doc, at_date),
        Format::LiteLlm => litellm(doc),
        Format::OpenRouter => openrouter(doc),
    }
}

fn str_at<'a>(o: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a str, DocError> {
    match o.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(_) => bad(format!("{path}.{key}"), "must be a non-empty string"),
        None => bad(format!("{path}.{key}"), "is missing"),
    }
}

fn obj<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, DocError> {
    v.as_object()
        .map_or_else(|| bad(path, "must be an object"), Ok)
}

fn check_rule(v: &Value, path: &str) -> Result<(), DocError> {
    Rule::parse(v).map(|_| ()).map_err(|e| DocError {
        path: format!("{path}{}", e.path.trim_start_matches('$')),
        message: e.message,
    })
}

// ---------------------------------------------------------------------------------------------
// genai-prices
// ---------------------------------------------------------------------------------------------

const GENAI_KEYS: &[(&str, u8)] = &[
    ("input_mtok", 0),
    ("output_mtok", 1),
    ("cache_read_mtok", 2),
    ("cache_write_mtok", 3),
    ("cache_write_5m_mtok", 3),
    ("cache_write_1h_mtok", 4),
    ("input_audio_mtok", 5),
    ("cache_audio_read_mtok", 6),
    ("output_audio_mtok", 7),
    ("input_image_mtok", 8),
    ("cache_image_read_mtok", 9),
    ("output_image_mtok", 10),
    ("web_searches_kcount", 11),
    ("requests_kcount", 12),
];

/// A genai-prices price: a number, or `{"base": n, "tiers": [{"start": n, "price": n}]}`.
/// Returns (base, [(start, price)]).
fn genai_price(
    v: &Value,
    path: &str,
    notes: &mut Vec<String>,
) -> Result<(Decimal, Vec<(i64, Decimal)>), DocError> {
    if let Some(o) = v.as_object() {
        let base = price(
            o.get("base").unwrap_or(&Value::Null),
            &format!("{path}.base"),
            1,
            notes,
        )?;
        let mut tiers = Vec::new();
        let Some(ts) = o.get("tiers").and_then(|t| t.as_array()) else {
            return bad(format!("{path}.tiers"), "must be an array");
        };
        for (i, t) in ts.iter().enumerate() {
            let tp = format!("{path}.tiers[{i}]");
            let Some(start) = t.get("start").and_then(|s| s.as_i64()).filter(|s| *s >= 0) else {
                return bad(format!("{tp}.start"), "must be a non-negative integer");
            };
            tiers.push((
                start,
                price(
                    t.get("price").unwrap_or(&Value::Null),
                    &format!("{tp}.price"),
                    1,
                    notes,
                )?,
            ));
        }
        tiers.sort_by_key(|t| t.0);
        return Ok((base, tiers));
    }
    Ok((price(v, path, 1, notes)?, vec![]))
}

/// Rows for one genai-prices price object (all prompt-size tiers), or None with the reason.
fn genai_rows(
    prices: &Map<String, Value>,
    path: &str,
    tier: &'static str,
    notes: &mut Vec<String>,
) -> Result<Result<Vec<Row>, String>, DocError> {
    let mut parts: [Option<(Decimal, Vec<(i64, Decimal)>)>; 13] = Default::default();
    let mut other = Vec::new();
    for (k, v) in prices {
        if v.is_null() {
            continue;
        }
        match GENAI_KEYS.iter().find(|(n, _)| n == k) {
            Some((_, slot)) => {
                parts[*slot as usize] = Some(genai_price(v, &format!("{path}.{k}"), notes)?)
            }
            None => other.push(k.clone()),
        }
    }
    if parts.iter().all(|p| p.is_none()) {
        if other.is_empty() {
            // No price at all: free.
            parts[0] = Some((Decimal::ZERO, vec![]));
        } else {
            return Ok(Err(format!(
                "no per-token price (only {})",
                other.join(", ")
            )));
        }
    }
    if !other.is_empty() {
        notes.push(format!(
            "{path}: prices not per token left out: {}",
            other.join(", ")
        ));
    }
    let mut starts: Vec<i64> = parts
        .iter()
        .flatten()
        .flat_map(|p| p.1.iter().map(|t| t.0))
        .collect();
    starts.sort();
    starts.dedup();
    let at = |p: &Option<(Decimal, Vec<(i64, Decimal)>)>, above: i64| -> Option<Decimal> {
        p.as_ref().map(|(base, tiers)| {
            tiers
                .iter()
                .rev()
                .find(|t| above >= t.0)
                .map_or(*base, |t| t.1)
        })
    };
    let mut rows = Vec::new();
    for lo in std::iter::once(0).chain(starts.iter().map(|s| s + 1)) {
        let above = lo - 1;
        rows.push(Row {
            min_input_tokens: lo,
            service_tier: tier,
            input: at(&parts[0], above).unwrap_or(Decimal::ZERO),
            output: at(&parts[1], above).unwrap_or(Decimal::ZERO),
            cache_read: at(&parts[2], above),
            cache_write_5m: at(&parts[3], above),
            cache_write_1h: at(&parts[4], above),
            extra: std::array::from_fn(|k| at(&parts[5 + k], above)),
            window: None,
        });
    }
    Ok(Ok(rows))
}

fn genai_tier(when: &Map<String, Value>) -> Option<&'static str> {
    if when.len() != 1 {
        return None;
    }
    let (k, v) = when.iter().next()?;
    match (k.as_str(), v.as_str()?) {
        ("processing", "batch") | ("service_tier", "batch") => Some("batch"),
        ("service_tier", "flex") => Some("flex"),
        ("service_tier", "priority") => Some("priority"),
        ("service_tier", "fast") | ("speed", "fast") => Some("fast"),
        _ => None,
    }
}

/// A constraint's start date if it is a start-date constraint active at `at_date`;
/// Err(()) for a constraint that does not apply (later start, time of day).
fn active_from(
    c: Option<&Value>,
    at_date: &str,
    path: &str,
) -> Result<Result<String, ()>, DocError> {
    match c {
        None | Some(Value::Null) => Ok(Ok(String::new())),
        Some(Value::Object(o)) => {
            if let Some(d) = o.get("start_date") {
                let Some(d) = d.as_str().filter(|d| d.len() == 10) else {
                    return bad(format!("{path}.start_date"), "must be a date (YYYY-MM-DD)");
                };
                Ok(if d <= at_date {
                    Ok(d.to_string())
                } else {
                    Err(())
                })
            } else if o.contains_key("start_time") {
                Ok(Err(()))
            } else {
                bad(
                    path,
                    "unknown constraint (start_date or start_time/end_time)",
                )
            }
        }
        Some(_) => bad(path, "must be an object"),
    }
}

/// A time-of-day constraint's window as UTC `HH:MM:SS` (from, to); None for another constraint.
fn time_window(c: Option<&Value>, path: &str) -> Result<Option<(String, String)>, DocError> {
    let Some(o) = c.and_then(|c| c.as_object()) else {
        return Ok(None);
    };
    if !o.contains_key("start_time") {
        return Ok(None);
    }
    let utc = |k: &str| -> Result<String, DocError> {
        let Some(t) = o.get(k).and_then(|t| t.as_str()) else {
            return bad(
                format!("{path}.{k}"),
                "must be a time of day (HH:MM:SS, UTC unless an offset says otherwise)",
            );
        };
        let secs = utc_seconds(t).ok_or_else(|| DocError {
            path: format!("{path}.{k}"),
            message: format!("\"{t}\" is not a time of day (HH:MM[:SS][Z|+HH:MM])"),
        })?;
        Ok(format!(
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        ))
    };
    let (from, to) = (utc("start_time")?, utc("end_time")?);
    if from == to {
        return bad(path, "start_time and end_time are the same");
    }
    Ok(Some((from, to)))
}

/// Seconds after UTC midnight of `HH:MM[:SS[.ffffff]][Z|±HH[:MM]]` (no offset: UTC).
fn utc_seconds(t: &str) -> Option<i64> {
    let (clock, offset) = match t.find(|ch| ch == 'Z' || ch == '+' || ch == '-') {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let mut parts = clock.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec: i64 = match parts.next() {
        Some(x) => x.split('.').next()?.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some()
        || !(0..24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..60).contains(&sec)
    {
        return None;
    }
    let off = match offset {
        "" | "Z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let mut op = o[1..].split(':');
            let oh: i64 = op.next()?.parse().ok()?;
            let om: i64 = op.next().map_or(Some(0), |x| x.parse().ok())?;
            sign * (oh * 3600 + om * 60)
        }
    };
    Some((h * 3600 + m * 60 + sec - off).rem_euclid(86_400))
}

fn genai(doc: &Value, at_date: &str) -> Result<Document, DocError> {
    let Some(providers) = doc.as_array() else {
        return bad("$", "a genai-prices document is an array of providers");
    };
    let mut out = Document::default();
    for (pi, p) in providers.iter().enumerate() {
        let pp = format!("$[{pi}]");
        let po = obj(p, &pp)?;
        let id = str_at(po, "id", &pp)?.to_ascii_lowercase();
        for key in ["model_match", "provider_match"] {
            if let Some(r) = po.get(key).filter(|r| !r.is_null()) {
                check_rule(r, &format!("{pp}.{key}"))?;
            }
        }
        let fallback = match po.get("fallback_model_providers") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                return bad(
                    format!("{pp}.fallback_model_providers"),
                    "must be an array of provider ids",
                )
            }
        };
        out.providers.push(Provider {
            id: id.clone(),
            name: po.get("name").and_then(|n| n.as_str()).map(str::to_string),
            pricing_url: po
                .get("pricing_urls")
                .and_then(|u| u.get(0))
                .and_then(|u| u.as_str())
                .map(str::to_string),
            model_match: po.get("model_match").filter(|r| !r.is_null()).cloned(),
            provider_match: po.get("provider_match").filter(|r| !r.is_null()).cloned(),
            fallback,
        });
        let Some(models) = po.get("models").and_then(|m| m.as_array()) else {
            return bad(format!("{pp}.models"), "must be an array of models");
        };
        for (mi, m) in models.iter().enumerate() {
            let mp = format!("{pp}.models[{mi}]");
            let mo = obj(m, &mp)?;
            let model_id = str_at(mo, "id", &mp)?;
            let rule = match mo.get("match") {
                Some(r) if !r.is_null() => {
                    check_rule(r, &format!("{mp}.match"))?;
                    Some(r.clone())
                }
                _ => None,
            };
            let mut model = Model {
                provider: id.clone(),
                model: model_id.to_string(),
                match_rule: rule,
                ..Default::default()
            };
            // The standard price in effect at the import date (the last active one; the first if none),
            // and the time-of-day prices that apply over it.
            let mut tod: Vec<((String, String), &Map<String, Value>, String)> = Vec::new();
            let base: &Map<String, Value> = match mo.get("prices") {
                Some(Value::Object(o)) => o,
                Some(Value::Array(list)) => {
                    let mut chosen: Option<&Map<String, Value>> = None;
                    let mut chosen_at = 0;
                    let mut windows = Vec::new();
                    for (ci, c) in list.iter().enumerate() {
                        let cp = format!("{mp}.prices[{ci}]");
                        let co = obj(c, &cp)?;
                        let prices = co
                            .get("prices")
                            .and_then(|x| x.as_object())
                            .map_or_else(|| bad(format!("{cp}.prices"), "must be an object"), Ok)?;
                        if ci == 0 && chosen.is_none() {
                            chosen = Some(prices);
                        }
                        if let Some(w) =
                            time_window(co.get("constraint"), &format!("{cp}.constraint"))?
                        {
                            windows.push((ci, w, prices, cp));
                        } else if active_from(
                            co.get("constraint"),
                            at_date,
                            &format!("{cp}.constraint"),
                        )?
                        .is_ok()
                        {
                            chosen = Some(prices);
                            chosen_at = ci;
                        }
                    }
                    // Time-of-day prices listed after the all-day price in effect win in their
                    // window (the last active price wins).
                    for (ci, w, prices, cp) in windows {
                        if ci > chosen_at {
                            tod.push((w, prices, cp));
                        }
                    }
                    match chosen {
                        Some(c) => c,
                        None => return bad(format!("{mp}.prices"), "must not be empty"),
                    }
                }
                None => return bad(format!("{mp}.prices"), "is missing"),
                Some(_) => {
                    return bad(
                        format!("{mp}.prices"),
                        "must be an object or an array of dated prices",
                    )
                }
            };
            match genai_rows(base, &format!("{mp}.prices"), "standard", &mut model.notes)? {
                Err(reason) => {
                    model.skip = Some(reason);
                    out.models.push(model);
                    continue;
                }
                Ok(rows) => model.rows = rows,
            }
            for (w, prices, cp) in tod {
                if let Ok(rows) = genai_rows(
                    prices,
                    &format!("{cp}.prices"),
                    "standard",
                    &mut model.notes,
                )? {
                    model.rows.extend(rows.into_iter().map(|r| Row {
                        window: Some(w.clone()),
                        ..r
                    }));
                }
            }
            // Service tiers: the standard price with the variant's prices over it.
            if let Some(vars) = mo.get("price_variants").filter(|v| !v.is_null()) {
                let Some(vars) = vars.as_array() else {
                    return bad(format!("{mp}.price_variants"), "must be an array");
                };
                for tier in ["batch", "flex", "priority", "fast"] {
                    let mut merged = base.clone();
                    let mut any = false;
                    let mut taken: Vec<String> = Vec::new();
                    for (vi, v) in vars.iter().enumerate() {
                        let vp = format!("{mp}.price_variants[{vi}]");
                        let vo = obj(v, &vp)?;
                        let when = vo
                            .get("when")
                            .and_then(|w| w.as_object())
                            .map_or_else(|| bad(format!("{vp}.when"), "must be an object"), Ok)?;
                        if genai_tier(when) != Some(tier) {
                            continue;
                        }
                        if active_from(vo.get("constraint"), at_date, &format!("{vp}.constraint"))?
                            .is_err()
                        {
                            continue;
                        }
                        let prices = vo
                            .get("prices")
                            .and_then(|x| x.as_object())
                            .map_or_else(|| bad(format!("{vp}.prices"), "must be an object"), Ok)?;
                        any = true;
                        for (k, p) in prices {
                            if !p.is_null() && !taken.contains(k) {
                                merged.insert(k.clone(), p.clone());
                                taken.push(k.clone());
                            }
                        }
                    }
                    if any {
                        if let Ok(rows) = genai_rows(
                            &merged,
                            &format!("{mp}.price_variants"),
                            tier,
                            &mut model.notes,
                        )? {
                            model.rows.extend(rows);
                        }
                    }
                }
            }
            out.models.push(model);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// LiteLLM
// ---------------------------------------------------------------------------------------------

fn litellm(doc: &Value) -> Result<Document, DocError> {
    let Some(entries) = doc.as_object() else {
        return bad("$", "a LiteLLM price map is an object of models");
    };
    let mut out = Document::default();
    for (name, e) in entries {
        if name == "sample_spec" {
            continue;
        }
        let path = format!("$.{}", json_key(name));
        let eo = obj(e, &path)?;
        let provider = match eo.get("litellm_provider") {
            Some(Value::String(s)) if !s.is_empty() => s.to_ascii_lowercase(),
            Some(Value::Null) | None => match name.split_once('/') {
                // No provider field: the key's route says it (`azure/gpt-…`).
                Some((route, _)) if !route.is_empty() => route.to_ascii_lowercase(),
                _ => {
                    out.models.push(Model {
                        provider: String::new(),
                        model: name.clone(),
                        skip: Some("no litellm_provider and no provider route in the name".into()),
                        ..Default::default()
                    });
                    continue;
                }
            },
            Some(_) => {
                return bad(
                    format!("{path}.litellm_provider"),
                    "must be a non-empty string",
                )
            }
        };
        // `bedrock/us.anthropic…` under provider bedrock: the model id is what follows the route.
        let lower = name.to_ascii_lowercase();
        let model_id = lower
            .strip_prefix(&format!("{provider}/"))
            .map(|_| &name[provider.len() + 1..])
            .unwrap_or(name);
        let mut model = Model {
            provider: provider.clone(),
            model: model_id.to_string(),
            ..Default::default()
        };
        let get = |k: &str, notes: &mut Vec<String>| -> Result<Option<Decimal>, DocError> {
            match eo.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => price(v, &format!("{path}.{k}"), 1_000_000, notes).map(Some),
            }
        };
        let notes = &mut model.notes;
        let Some(input) = get("input_cost_per_token", notes)? else {
            model.skip = Some("no input_cost_per_token (not priced per token)".into());
            out.models.push(model);
            continue;
        };
        let output = get("output_cost_per_token", notes)?.unwrap_or(Decimal::ZERO);
        let cache_read = get("cache_read_input_token_cost", notes)?;
        let cache_write_5m = get("cache_creation_input_token_cost", notes)?;
        let cache_write_1h = get("cache_creation_input_token_cost_above_1hr", notes)?;
        // Audio and image token prices; a web search's price per query (the medium context
        // size, as LiteLLM bills it by default) per 1,000.
        let search = match eo.get("search_context_cost_per_query") {
            Some(Value::Object(o)) => match o.get("search_context_size_medium") {
                None | Some(Value::Null) => None,
                Some(v) => Some(price(
                    v,
                    &format!("{path}.search_context_cost_per_query.search_context_size_medium"),
                    1_000,
                    notes,
                )?),
            },
            _ => None,
        };
        let extra = [
            get("input_cost_per_audio_token", notes)?,
            get("cache_read_input_audio_token_cost", notes)?,
            get("output_cost_per_audio_token", notes)?,
            get("input_cost_per_image_token", notes)?,
            None,
            get("output_cost_per_image_token", notes)?,
            search,
            None,
        ];
        let std = Row {
            min_input_tokens: 0,
            service_tier: "standard",
            input,
            output,
            cache_read,
            cache_write_5m,
            cache_write_1h,
            extra,
            window: None,
        };
        let mut rows = vec![std.clone()];
        // Long-context tiers: input_cost_per_token_above_200k_tokens, ...
        let mut ks: Vec<i64> = eo
            .keys()
            .filter_map(|k| {
                k.strip_prefix("input_cost_per_token_above_")
                    .and_then(|r| r.strip_suffix("k_tokens"))
                    .and_then(|n| n.parse::<i64>().ok())
            })
            .collect();
        ks.sort();
        for kt in ks {
            let suffix = format!("_above_{kt}k_tokens");
            let r = Row {
                min_input_tokens: kt * 1000 + 1,
                service_tier: "standard",
                input: get(&format!("input_cost_per_token{suffix}"), notes)?.unwrap_or(input),
                output: get(&format!("output_cost_per_token{suffix}"), notes)?.unwrap_or(output),
                cache_read: get(&format!("cache_read_input_token_cost{suffix}"), notes)?
                    .or(cache_read),
                cache_write_5m: get(&format!("cache_creation_input_token_cost{suffix}"), notes)?
                    .or(cache_write_5m),
                cache_write_1h,
                extra,
                window: None,
            };
            rows.push(r);
        }
        for (tier, suffix) in [
            ("batch", "_batches"),
            ("flex", "_flex"),
            ("priority", "_priority"),
        ] {
            let i = get(&format!("input_cost_per_token{suffix}"), notes)?;
            let o = get(&format!("output_cost_per_token{suffix}"), notes)?;
            if i.is_some() || o.is_some() {
                rows.push(Row {
                    min_input_tokens: 0,
                    service_tier: tier,
                    input: i.unwrap_or(input),
                    output: o.unwrap_or(output),
                    cache_read: get(&format!("cache_read_input_token_cost{suffix}"), notes)?
                        .or(cache_read),
                    cache_write_5m,
                    cache_write_1h,
                    extra,
                    window: None,
                });
            }
        }
        model.rows = rows;
        out.models.push(model);
    }
    Ok(out)
}

fn json_key(k: &str) -> String {
    if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        k.to_string()
    } else {
        format!("\"{}\"", k.replace('"', "\\\""))
    }
}

// ---------------------------------------------------------------------------------------------
// OpenRouter /api/v1/models
// ---------------------------------------------------------------------------------------------

fn openrouter(doc: &Value) -> Result<Document, DocError> {
    let Some(data) = doc.get("data").and_then(|d| d.as_array()) else {
        return bad("$.data", "must be an array of models");
    };
    let mut out = Document::default();
    for (i, m) in data.iter().enumerate() {
        let path = format!("$.data[{i}]");
        let mo = obj(m, &path)?;
        let id = str_at(mo, "id", &path)?;
        let mut model = Model {
            provider: "openrouter".into(),
            model: id.to_string(),
            ..Default::default()
        };
        let pp = format!("{path}.pricing");
        let Some(pr) = mo.get("pricing") else {
            return bad(pp, "is missing");
        };
        let pr = obj(pr, &pp)?;
        let raw = |k: &str| pr.get(k).filter(|v| !v.is_null());
        // Router models (openrouter/auto) publish -1: the price depends on the model picked.
        if ["prompt", "completion"].iter().any(|k| {
            raw(k)
                .and_then(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .or_else(|| v.as_f64().map(|f| f.to_string()))
                })
                .is_some_and(|s| s.starts_with('-'))
        }) {
            model.skip = Some("variable price (the router picks the model)".into());
            out.models.push(model);
            continue;
        }
        let notes = &mut model.notes;
        let get = |k: &str, notes: &mut Vec<String>| -> Result<Option<Decimal>, DocError> {
            match raw(k) {
                None => Ok(None),
                Some(v) => price(v, &format!("{pp}.{k}"), 1_000_000, notes).map(Some),
            }
        };
        let Some(input) = get("prompt", notes)? else {
            return bad(format!("{pp}.prompt"), "is missing");
        };
        let output = get("completion", notes)?.unwrap_or(Decimal::ZERO);
        let cache_read = get("input_cache_read", notes)?;
        let cache_write_5m = get("input_cache_write", notes)?;
        // Per call and per search (USD each) as per 1,000; audio input per token as per 1M.
        let per_1k = |k: &str, notes: &mut Vec<String>| -> Result<Option<Decimal>, DocError> {
            match raw(k) {
                None => Ok(None),
                Some(v) => price(v, &format!("{pp}.{k}"), 1_000, notes)
                    .map(|d| (!d.is_zero()).then_some(d)),
            }
        };
        let extra = [
            get("audio", notes)?.filter(|d| !d.is_zero()),
            None,
            None,
            None,
            None,
            None,
            per_1k("web_search", notes)?,
            per_1k("request", notes)?,
        ];
        let fees: Vec<&str> = ["image"]
            .into_iter()
            .filter(|k| {
                raw(k).is_some_and(|v| {
                    v.as_str().map_or(true, |s| {
                        Decimal::from_str(s).map_or(true, |d| !d.is_zero())
                    })
                })
            })
            .collect();
        if !fees.is_empty() {
            notes.push(format!(
                "{pp}: prices not per token left out: {}",
                fees.join(", ")
            ));
        }
        model.match_rule = Some(json!({ "equals": id }));
        model.rows = vec![Row {
            min_input_tokens: 0,
            service_tier: "standard",
            input,
            output,
            cache_read,
            cache_write_5m,
            cache_write_1h: None,
            extra,
            window: None,
        }];
        out.models.push(model);
    }
    Ok(out)
}

/// The document as the JSON `llm_cost.import_prices` merges: `{format, providers, models}`.
pub fn to_json(d: &Document, f: Format) -> Value {
    let num = |x: &Decimal| Value::String(x.to_string());
    json!({
        "format": f.name(),
        "providers": d.providers.iter().map(|p| json!({
            "provider": p.id, "name": p.name, "pricing_url": p.pricing_url,
            "model_match": p.model_match, "provider_match": p.provider_match, "fallback_providers": p.fallback,
        })).collect::<Vec<_>>(),
        "models": d.models.iter().map(|m| json!({
            "provider": m.provider, "model": m.model, "match_rule": m.match_rule, "skip": m.skip,
            "note": if m.notes.is_empty() { Value::Null } else { Value::String(m.notes.join("; ")) },
            "rows": m.rows.iter().map(|r| json!({
                "min_input_tokens": r.min_input_tokens, "service_tier": r.service_tier,
                "input": num(&r.input), "output": num(&r.output),
                "cache_read": r.cache_read.as_ref().map(num), "cache_write_5m": r.cache_write_5m.as_ref().map(num),
                "cache_write_1h": r.cache_write_1h.as_ref().map(num),
                "time_of_day_from": r.window.as_ref().map(|w| w.0.clone()), "time_of_day_to": r.window.as_ref().map(|w| w.1.clone()),
                "extra": EXTRA_NAMES.iter().zip(r.extra.iter()).map(|(k, v)| ((*k).to_string(), v.as_ref().map(num).unwrap_or(Value::Null))).collect::<Map<String, Value>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn genai_prices_document() {
        let doc: Value = serde_json::from_str(r#"[{"id": "anthropic", "name": "Anthropic", "model_match": {"contains": "claude"},
            "models": [
              {"id": "claude-sonnet-4-5", "match": {"starts_with": "claude-sonnet-4-5"},
               "prices": {"input_mtok": {"base": 3, "tiers": [{"start": 200000, "price": 6}]}, "output_mtok": 15, "cache_read_mtok": 0.3, "web_searches_kcount": 10},
               "price_variants": [{"when": {"processing": "batch"}, "prices": {"input_mtok": 1.5, "output_mtok": 7.5}}]},
              {"id": "claude-old", "match": {"equals": "claude-old"},
               "prices": [{"prices": {"input_mtok": 8, "output_mtok": 24}}, {"constraint": {"start_date": "2026-01-01"}, "prices": {"input_mtok": 4, "output_mtok": 12}}]},
              {"id": "free-one", "match": {"equals": "free-one"}, "prices": {}},
              {"id": "voice", "match": {"equals": "voice"}, "prices": {"audio_hours": 1}}
            ]}]"#).unwrap();
        let f = detect(&doc, "auto").unwrap();
        assert_eq!(f, Format::GenaiPrices);
        let out = parse(&doc, f, "2026-06-01").unwrap();
        assert_eq!(out.providers[0].id, "anthropic");
        let s = &out.models[0];
        assert_eq!(s.rows.len(), 3, "{:?}", s.rows);
        assert_eq!(
            (
                s.rows[0].min_input_tokens,
                s.rows[0].input,
                s.rows[0].output
            ),
            (0, d("3"), d("15"))
        );
        assert_eq!(
            (
                s.rows[1].min_input_tokens,
                s.rows[1].input,
                s.rows[1].cache_read
            ),
            (200001, d("6"), Some(d("0.3")))
        );
        assert_eq!(
            (s.rows[2].service_tier, s.rows[2].input, s.rows[2].output),
            ("batch", d("1.5"), d("7.5"))
        );
        // The search fee is imported with the token prices (per 1,000 searches).
        assert_eq!(s.rows[0].extra[6], Some(d("10")));
        assert!(s.notes.is_empty(), "{:?}", s.notes);
        assert_eq!(out.models[1].rows[0].input, d("4"));
        assert_eq!(
            parse(&doc, f, "2025-06-01").unwrap().models[1].rows[0].input,
            d("8")
        );
        assert_eq!(out.models[2].rows[0].input, d("0"));
        assert!(out.models[3]
            .skip
            .as_deref()
            .unwrap()
            .contains("audio_hours"));
    }

    #[test]
    fn litellm_document() {
        let doc: Value = serde_json::from_str(r#"{"sample_spec": {"x": 1},
            "gemini-2.5-pro": {"litellm_provider": "vertex_ai-language-models", "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
               "input_cost_per_token_above_200k_tokens": 2.5e-06, "output_cost_per_token_above_200k_tokens": 1.5e-05, "input_cost_per_token_batches": 6.25e-07},
            "groq/llama-3.3-70b-versatile": {"litellm_provider": "groq", "input_cost_per_token": 5.9e-07, "output_cost_per_token": 7.9e-07},
            "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04}}"#).unwrap();
        let f = detect(&doc, "auto").unwrap();
        assert_eq!(f, Format::LiteLlm);
        let out = parse(&doc, f, "2026-01-01").unwrap();
        let g = out
            .models
            .iter()
            .find(|m| m.model == "gemini-2.5-pro")
            .unwrap();
        assert_eq!(
            g.rows
                .iter()
                .map(|r| (r.min_input_tokens, r.service_tier, r.input, r.output))
                .collect::<Vec<_>>(),
            vec![
                (0, "standard", d("1.25"), d("10")),
                (200001, "standard", d("2.5"), d("15")),
                (0, "batch", d("0.625"), d("10"))
            ]
        );
        let q = out.models.iter().find(|m| m.provider == "groq").unwrap();
        assert_eq!(
            (q.model.as_str(), q.rows[0].input, q.rows[0].output),
            ("llama-3.3-70b-versatile", d("0.59"), d("0.79"))
        );
        assert!(out
            .models
            .iter()
            .find(|m| m.model == "dall-e-3")
            .unwrap()
            .skip
            .is_some());
    }

    #[test]
    fn openrouter_document() {
        let doc: Value = serde_json::from_str(r#"{"data": [
            {"id": "anthropic/claude-3.5-sonnet", "pricing": {"prompt": "0.000003", "completion": "0.000015", "input_cache_read": "0.0000003", "request": "0"}},
            {"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}},
            {"id": "x/odd", "pricing": {"prompt": "0.0000000416666666666667", "completion": "0"}}]}"#).unwrap();
        let out = parse(&doc, detect(&doc, "auto").unwrap(), "2026-01-01").unwrap();
        assert_eq!(
            (
                out.models[0].rows[0].input,
                out.models[0].rows[0].output,
                out.models[0].rows[0].cache_read
            ),
            (d("3"), d("15"), Some(d("0.3")))
        );
        assert!(out.models[0].notes.is_empty());
        assert!(out.models[1].skip.is_some());
        assert_eq!(out.models[2].rows[0].input, d("0.0416666667"));
        assert!(out.models[2].notes[0].contains("rounded"));
    }

    #[test]
    fn malformed_documents_name_the_path() {
        let e = |s: &str, f: &str| {
            let v: Value = serde_json::from_str(s).unwrap();
            detect(&v, f)
                .and_then(|f| parse(&v, f, "2026-01-01"))
                .unwrap_err()
        };
        assert_eq!(
            e(
                r#"{"data": [{"id": "a", "pricing": {"prompt": "abc"}}]}"#,
                "auto"
            )
            .path,
            "$.data[0].pricing.prompt"
        );
        assert_eq!(
            e(
                r#"{"data": [{"id": "a", "pricing": {"prompt": "0.1", "completion": []}}]}"#,
                "auto"
            )
            .path,
            "$.data[0].pricing.completion"
        );
        assert_eq!(
            e(
                r#"[{"id": "p", "models": [{"id": "m", "match": {"regex": "("}, "prices": {}}]}]"#,
                "auto"
            )
            .path,
            "$[0].models[0].match.regex"
        );
        assert_eq!(
            e(
                r#"[{"id": "p", "models": [{"match": {"equals": "m"}, "prices": {}}]}]"#,
                "auto"
            )
            .path,
            "$[0].models[0].id"
        );
        assert_eq!(
            e(
                r#"{"m": {"litellm_provider": "openai", "input_cost_per_token": -1}}"#,
                "litellm"
            )
            .path,
            "$.m.input_cost_per_token"
        );
        assert_eq!(e(r#"{"a": 1}"#, "auto").path, "$");
        assert_eq!(e(r#"[]"#, "csv").path, "$");
    }

    #[test]
    fn genai_time_of_day_prices_become_windowed_rows() {
        let doc: Value = serde_json::from_str(r#"[{"id": "deepseek", "models": [
              {"id": "deepseek-v9", "prices": [
                 {"prices": {"input_mtok": 0.135, "output_mtok": 0.55}},
                 {"constraint": {"start_date": "2026-01-01"}, "prices": {"input_mtok": 0.14, "output_mtok": 0.56}},
                 {"constraint": {"start_time": "00:30:00+00:00", "end_time": "16:30:00+00:00"}, "prices": {"input_mtok": 0.27, "output_mtok": 1.1}},
                 {"constraint": {"start_time": "01:00:00+02:00", "end_time": "02:00:00Z"}, "prices": {"input_mtok": 0.3, "output_mtok": 1.2}}]}]}]"#).unwrap();
        let out = parse(&doc, Format::GenaiPrices, "2026-06-01").unwrap();
        let rows = &out.models[0].rows;
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!((rows[0].input, &rows[0].window), (d("0.14"), &None));
        assert_eq!(
            (rows[1].input, rows[1].window.clone()),
            (
                d("0.27"),
                Some(("00:30:00".to_string(), "16:30:00".to_string()))
            )
        );
        // An offset is converted to UTC.
        assert_eq!(
            rows[2].window,
            Some(("23:00:00".to_string(), "02:00:00".to_string()))
        );
        assert_eq!(utc_seconds("7:05"), Some(25_500));
        assert_eq!(utc_seconds("25:00"), None);
    }
}
