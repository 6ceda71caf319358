//! SQL functions of the price catalog: a thin shell over `pricing.rs`, `catalog.rs` and `cache.rs`.

use crate::cache;
use crate::pricing::{self, Cost, PriceRow, Usage};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyNumeric, JsonB, PgSqlErrorCode};
use rust_decimal::Decimal;
use std::str::FromStr;

/// Raises SQLSTATE 22023 naming the first negative count.
pub fn check_usage(u: &Usage) {
    if let Err(e) = u.validate() {
        ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string());
    }
}

/// Outcome of pricing one call.
pub enum Priced {
    Cost(Cost),
    /// The name resolves to nothing in the catalog.
    UnknownModel,
    /// The model is known but no price row is valid at the call's time.
    NoPriceAt,
}

/// Prices one call from the cached catalog; no query unless the catalog changed.
pub fn price_call(model: &str, u: &Usage, at: i64) -> Priced {
    let loaded = cache::catalog();
    match loaded.resolve(model) {
        None => Priced::UnknownModel,
        Some(i) => match loaded.catalog.price_row(i, at, u) {
            Some(row) => Priced::Cost(row.cost(u)),
            None => Priced::NoPriceAt,
        },
    }
}

/// A cost as a numeric Datum (palloc'd in the current memory context). Without a typmod it is
/// built directly in numeric's binary form (`numeric.rs`), exactly as `numeric_in` would build
/// it from the cost's plain text; with one (-1 for none), via `numeric_in`, which rounds it to
/// the column's declared scale.
pub fn cost_datum(c: Cost, typmod: i32) -> pg_sys::Datum {
    if typmod < 0 {
        let body = crate::numeric::encode_units(c.0);
        unsafe {
            let len = pg_sys::VARHDRSZ + body.len();
            let p = pg_sys::palloc(len) as *mut u8;
            std::ptr::copy_nonoverlapping(body.as_ptr(), p.add(pg_sys::VARHDRSZ), body.len());
            pgrx::set_varsize_4b(p as *mut pg_sys::varlena, len as i32);
            return pg_sys::Datum::from(p);
        }
    }
    let mut buf = [0u8; 64];
    let len = c.write_plain(&mut buf[..63]);
    buf[len] = 0;
    let d = unsafe {
        pgrx::direct_function_call_as_datum(
            pg_sys::numeric_in,
            &[
                Some(pg_sys::Datum::from(buf.as_ptr())),
                Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                Some(pg_sys::Datum::from(typmod)),
            ],
        )
    };
    d.unwrap_or_else(|| error!("llm_cost: cannot represent cost {c} as numeric"))
}

/// A numeric Datum (possibly packed or toasted) as a count of 10^-16 USD, when it has at most 16
/// decimals and fits; None otherwise (NaN, infinities, more decimals).
///
/// # Safety
/// `d` must be a numeric Datum.
pub unsafe fn numeric_units(d: pg_sys::Datum) -> Option<i128> {
    let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
    let body = std::slice::from_raw_parts(pgrx::varlena::vardata_any(v) as *const u8, pgrx::varlena::varsize_any_exhdr(v));
    crate::numeric::decode_units(body)
}

/// Whether a numeric Datum is NaN, Infinity or -Infinity.
pub unsafe fn numeric_special(d: pg_sys::Datum) -> bool {
    let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
    let body = std::slice::from_raw_parts(pgrx::varlena::vardata_any(v) as *const u8, pgrx::varlena::varsize_any_exhdr(v));
    crate::numeric::is_special(body)
}

pub fn cost_to_numeric(c: Cost) -> AnyNumeric {
    unsafe { AnyNumeric::from_datum(cost_datum(c, -1), false) }.unwrap_or_else(|| error!("llm_cost: numeric conversion failed"))
}

/// Cost in USD of one LLM call, from the price catalog at the call's time.
///
/// `input_tokens` are uncached input tokens (OpenAI: prompt_tokens - cached_tokens;
/// Anthropic: input_tokens), `output_tokens` include reasoning tokens, `cache_read_tokens` are
/// prompt tokens read from the cache (OpenAI: cached_tokens; Anthropic:
/// cache_read_input_tokens), `cache_write_tokens` are tokens written to the cache (Anthropic:
/// cache_creation_input_tokens). NULL when the model is unknown or has no price at `at`.
#[pg_extern(stable, parallel_safe)]
pub fn estimate_cost(
    model: &str,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: default!(i64, 0),
    cache_write_tokens: default!(i64, 0),
    at: default!(TimestampWithTimeZone, "now()"),
) -> Option<AnyNumeric> {
    let u = Usage { input: input_tokens, output: output_tokens, cache_read: cache_read_tokens, cache_write: cache_write_tokens };
    check_usage(&u);
    match price_call(model, &u, at.into()) {
        Priced::Cost(c) => Some(cost_to_numeric(c)),
        Priced::UnknownModel | Priced::NoPriceAt => None,
    }
}

/// The catalog model an application's model name resolves to, or NULL.
#[pg_extern(stable, parallel_safe)]
pub fn resolve_model(model: &str) -> Option<String> {
    let loaded = cache::catalog();
    loaded.resolve(model).map(|i| loaded.catalog.model(i).model.clone())
}

/// The provider of a model name: the catalog's when it resolves, else a guess from its prefix
/// or family (`claude-*` is anthropic). NULL when nothing is known.
#[pg_extern(stable, parallel_safe)]
pub fn provider_of(model: &str) -> Option<String> {
    let loaded = cache::catalog();
    match loaded.resolve(model) {
        Some(i) => Some(loaded.catalog.model(i).provider.clone()),
        None => crate::catalog::guess_provider(model).map(str::to_string),
    }
}

/// `$0.00` for zero, two significant digits below a cent (`$0.0012`), cents above (`$1,234.57`).
#[pg_extern(immutable, parallel_safe)]
pub fn format_cost(cost: AnyNumeric) -> String {
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
    serde_json::Value::Number(serde_json::Number::from_str(&c.to_plain_string()).unwrap_or_else(|_| 0.into()))
}

fn price_json(p: pricing::Price) -> serde_json::Value {
    serde_json::Value::Number(serde_json::Number::from_str(&p.to_decimal().to_string()).unwrap_or_else(|_| 0.into()))
}

/// Why a cost is what it is: the resolved model, the price row used and each part of the cost.
/// Same arguments as `estimate_cost`. Numbers are exact (jsonb numerics).
#[pg_extern(stable, parallel_safe)]
pub fn explain_cost(
    model: &str,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: default!(i64, 0),
    cache_write_tokens: default!(i64, 0),
    at: default!(TimestampWithTimeZone, "now()"),
) -> JsonB {
    use serde_json::json;
    let u = Usage { input: input_tokens, output: output_tokens, cache_read: cache_read_tokens, cache_write: cache_write_tokens };
    check_usage(&u);
    let loaded = cache::catalog();
    let usage = json!({
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read_tokens,
        "cache_write_tokens": cache_write_tokens,
        "prompt_tokens_for_tier": u.prompt_tokens(),
    });
    let at_i: i64 = at.into();
    let Some(i) = loaded.resolve(model) else {
        return JsonB(json!({
            "model": model,
            "resolved_model": null,
            "provider": crate::catalog::guess_provider(model),
            "usage": usage,
            "cost_usd": null,
            "reason": "unknown model: no catalog model or alias matches this name",
        }));
    };
    let m = loaded.catalog.model(i);
    let Some(row) = loaded.catalog.price_row(i, at_i, &u) else {
        return JsonB(json!({
            "model": model,
            "resolved_model": m.model,
            "provider": m.provider,
            "usage": usage,
            "cost_usd": null,
            "reason": "no price row of this model is valid at this time for this prompt size",
        }));
    };
    let b = row.breakdown(&u);
    JsonB(json!({
        "model": model,
        "resolved_model": m.model,
        "provider": m.provider,
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
        },
        "parts_usd": {
            "input": money_json(b.input),
            "output": money_json(b.output),
            "cache_read": money_json(b.cache_read),
            "cache_write": money_json(b.cache_write),
        },
        "cost_usd": money_json(b.total),
        "formula": "(input_tokens*input + output_tokens*output + cache_read_tokens*cache_read + cache_write_tokens*cache_write) / 1000000",
    }))
}

fn price_row_json(row: &PriceRow) -> serde_json::Value {
    // The full catalog row (source, validity as timestamps), read once: explain is not a hot path.
    let full = Spi::get_one_with_args::<JsonB>(
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
    use crate::pricing::Cost;
    use pgrx::prelude::*;

    /// The binary numeric the cost trigger writes is byte for byte what numeric_in builds from
    /// the cost's text, and reading numerics back gives the same units.
    #[pg_test]
    fn binary_numeric_matches_numeric_in() {
        let values: Vec<i128> = vec![
            0, 1, -1, 9_999, 10_000, 315_000_000_000_000, 180_000_000_000_000_000, 123_456_000_000_000_000_000,
            100_000_000_000_000_000_000, -25_000_000_000_000_000, 3_750_000_000, 12_345_678_901_234_567, i128::MAX / 3,
        ];
        for v in values {
            let ours = super::cost_datum(Cost(v), -1);
            let mut buf = [0u8; 64];
            let n = Cost(v).write_plain(&mut buf[..63]);
            let text = std::str::from_utf8(&buf[..n]).unwrap().to_string();
            let theirs = Spi::get_one_with_args::<pgrx::AnyNumeric>("SELECT $1::numeric", &[text.clone().into()]).unwrap().unwrap();
            let theirs = pgrx::IntoDatum::into_datum(theirs).unwrap();
            unsafe {
                let a = pg_sys::pg_detoast_datum_packed(ours.cast_mut_ptr());
                let b = pg_sys::pg_detoast_datum_packed(theirs.cast_mut_ptr());
                let sa = std::slice::from_raw_parts(pgrx::varlena::vardata_any(a) as *const u8, pgrx::varlena::varsize_any_exhdr(a));
                let sb = std::slice::from_raw_parts(pgrx::varlena::vardata_any(b) as *const u8, pgrx::varlena::varsize_any_exhdr(b));
                assert_eq!(sa, sb, "{text}");
                assert_eq!(super::numeric_units(theirs), Some(v), "{text}");
            }
        }
        // Values numeric arithmetic produces, and ones that do not fit 16 decimals.
        for (sql, want) in [
            ("SELECT 0.1::numeric + 0.2", Some(3_000_000_000_000_000i128)),
            ("SELECT 2.50000::numeric * 1", Some(25_000_000_000_000_000)),
            ("SELECT -1e20::numeric", Some(-1_000_000_000_000_000_000_000_000_000_000_000_000)),
            ("SELECT 1e-17::numeric", None),
            ("SELECT 'NaN'::numeric", None),
            ("SELECT 1e30::numeric", None),
        ] {
            let n = Spi::get_one::<pgrx::AnyNumeric>(sql).unwrap().unwrap();
            let d = pgrx::IntoDatum::into_datum(n).unwrap();
            assert_eq!(unsafe { super::numeric_units(d) }, want, "{sql}");
        }
    }
}
