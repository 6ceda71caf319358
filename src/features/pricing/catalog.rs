//! The price catalog in a backend: loaded from `llm_cost.model_prices`, `model_aliases` and
//! `providers` into `llm_cost_core::catalog`, kept per backend, and one call priced from it
//! (`price_call`).
//!
//! The catalog is read once per backend with SPI and kept until `llm_cost.model_prices` or
//! `llm_cost.model_aliases` change. A statement trigger on both tables calls
//! `CacheInvalidateRelcacheByRelid`, a transactional invalidation: when the writing transaction
//! commits, every backend processes it before its next statement and `relation_changed` (a
//! listener of `pg::relcache`) drops the cache. Inside the writing transaction the change is visible from its next command, and a
//! rollback invalidates again, so nobody keeps prices that never committed.

use crate::pg::spi;
use llm_cost_core::catalog::{Alias, Catalog, ProviderDef, Resolved};
use llm_cost_core::pricing::{
    Cost, ExtraPrices, Price, PriceRow, ServiceTier, Usage, Window, TS_INFINITY, TS_NEG_INFINITY,
};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Names looked up per backend are memoised; past this many distinct names the memo restarts.
const MEMO_LIMIT: usize = 10_000;

pub struct Loaded {
    pub catalog: Catalog,
    /// Names resolved without a provider, exactly as sent.
    memo: RefCell<rustc_hash::FxHashMap<String, Option<Resolved>>>,
    /// Names resolved with a provider value: provider -> name -> result.
    memo_p: RefCell<rustc_hash::FxHashMap<String, rustc_hash::FxHashMap<String, Option<Resolved>>>>,
    /// Model index -> the model rows are reported under (`Catalog::reported_model`).
    reported: RefCell<rustc_hash::FxHashMap<usize, usize>>,
    /// Microseconds the load took and the rows read, for `llm_cost._catalog_stats()`.
    pub load_us: u64,
    /// Of which reading the tables.
    pub read_us: u64,
    pub rows: usize,
}

impl Loaded {
    /// `Catalog::resolve`, memoised on the name (and provider value) exactly as sent. An empty
    /// provider value is no provider.
    pub fn resolve(&self, name: &str, provider: Option<&str>) -> Option<Resolved> {
        match provider.filter(|p| !p.trim().is_empty()) {
            None => {
                if let Some(hit) = self.memo.borrow().get(name) {
                    return *hit;
                }
                let r = self.catalog.resolve(name, None);
                let mut memo = self.memo.borrow_mut();
                if memo.len() >= MEMO_LIMIT {
                    memo.clear();
                }
                memo.insert(name.to_string(), r);
                r
            }
            Some(p) => {
                if let Some(hit) = self.memo_p.borrow().get(p).and_then(|m| m.get(name)) {
                    return *hit;
                }
                let r = self.catalog.resolve(name, Some(p));
                let mut memo = self.memo_p.borrow_mut();
                if memo.values().map(|m| m.len()).sum::<usize>() >= MEMO_LIMIT {
                    memo.clear();
                }
                memo.entry(p.to_string())
                    .or_default()
                    .insert(name.to_string(), r);
                r
            }
        }
    }

    /// `Catalog::reported_model`, memoised.
    pub fn reported_model(&self, i: usize) -> usize {
        if let Some(r) = self.reported.borrow().get(&i) {
            return *r;
        }
        let r = self.catalog.reported_model(i);
        self.reported.borrow_mut().insert(i, r);
        r
    }

    /// The model index a name resolves to.
    pub fn resolve_index(&self, name: &str, provider: Option<&str>) -> Option<usize> {
        self.resolve(name, provider).map(|r| r.model)
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

/// Prices one call from the cached catalog; no query unless the catalog changed. `provider`:
/// the host the call went to, if known (a value the catalog does not know is ignored).
pub fn price_call(
    model: &str,
    provider: Option<&str>,
    tier: ServiceTier,
    u: &Usage,
    at: i64,
) -> Priced {
    let loaded = catalog();
    match loaded.resolve_index(model, provider) {
        None => Priced::UnknownModel,
        Some(i) => match loaded.catalog.price_row(i, at, u, tier) {
            Some(row) => Priced::Cost(row.cost(u)),
            None => Priced::NoPriceAt,
        },
    }
}

/// A call's cost by model name alone (no host, standard tier), None when it has no price then:
/// what rollups compare a default cost with (`rollups::estimate_with`, set by `lib.rs`).
pub fn estimate_by_name(model: &str, u: &Usage, at: i64) -> Option<Cost> {
    match price_call(model, None, ServiceTier::Standard, u, at) {
        Priced::Cost(c) => Some(c),
        _ => None,
    }
}

thread_local! {
    static CACHE: RefCell<Option<Rc<Loaded>>> = const { RefCell::new(None) };
    static VALID: Cell<bool> = const { Cell::new(false) };
    static WATCHED: Cell<(pg_sys::Oid, pg_sys::Oid, pg_sys::Oid)> = const { Cell::new((pg_sys::InvalidOid, pg_sys::InvalidOid, pg_sys::InvalidOid)) };
}

/// A relation changed (`pg::relcache` listener, set up by `_PG_init`): a catalog table (or all
/// relations) makes the cached catalog stale.
pub fn relation_changed(relid: pg_sys::Oid) {
    let (a, b, c) = WATCHED.with(|w| w.get());
    if relid == pg_sys::InvalidOid || relid == a || relid == b || relid == c {
        VALID.with(|v| v.set(false));
    }
}

/// Frees this backend's catalog: the next use loads it again.
pub fn drop_cached() {
    VALID.with(|v| v.set(false));
    CACHE.with(|c| *c.borrow_mut() = None);
}

/// Drops this backend's cache now (used by the invalidation trigger and tests).
pub fn invalidate_local() {
    VALID.with(|v| v.set(false));
}

/// The catalog as of now, loading it if a change made the cached copy stale.
pub fn catalog() -> Rc<Loaded> {
    if VALID.with(|v| v.get()) {
        if let Some(c) = CACHE.with(|c| c.borrow().clone()) {
            return c;
        }
    }
    crate::pg::relcache::register_callback();
    // Mark valid before reading: an invalidation that arrives while we read clears it again.
    VALID.with(|v| v.set(true));
    let loaded = match load() {
        Ok(l) => Rc::new(l),
        Err(e) => {
            VALID.with(|v| v.set(false));
            crate::pg::fail::internal(format!("llm_cost: could not read the price catalog: {e}"));
        }
    };
    CACHE.with(|c| *c.borrow_mut() = Some(loaded.clone()));
    loaded
}

/// A price column read in binary: numeric's units of 10^-16 to the catalog's 10^-10.
fn price(col: &str, v: Option<pgrx::AnyNumeric>) -> Option<Price> {
    use pgrx::IntoDatum;
    let n = v?;
    let units = n
        .clone()
        .into_datum()
        // SAFETY: into_datum of an AnyNumeric is a numeric datum.
        .and_then(|d| unsafe { crate::pg::money::numeric_units(d) });
    match units {
        Some(u) if u >= 0 && u % 1_000_000 == 0 => Some(Price(u / 1_000_000)),
        // The table's CHECK constraints make this unreachable; say so clearly if it ever is.
        _ => crate::pg::fail::user(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("llm_cost.model_prices.{col}: {n} is not a price (0 to 1000000, at most 10 decimals)")).raise(),
    }
}

fn load() -> SpiResult<Loaded> {
    spi::connect(|client| {
        let started = std::time::Instant::now();
        let oids = client
            .select(
                "SELECT 'llm_cost.model_prices'::pg_catalog.regclass::pg_catalog.oid, 'llm_cost.model_aliases'::pg_catalog.regclass::pg_catalog.oid,
                        pg_catalog.to_regclass('llm_cost.providers')::pg_catalog.oid",
                Some(1),
                &[],
            )?
            .first()
            .get_three::<pg_sys::Oid, pg_sys::Oid, pg_sys::Oid>()?;
        let o = |x: Option<pg_sys::Oid>| x.unwrap_or(pg_sys::InvalidOid);
        WATCHED.with(|w| w.set((o(oids.0), o(oids.1), o(oids.2))));
        // A database still on an older version of the extension's SQL (a new library installed,
        // ALTER EXTENSION UPDATE not run yet) has no providers, service tiers or match rules:
        // its rows are standard-tier prices matched by their ids, as that version did.
        let current = oids.2.is_some();
        // 0.8.0 added modality prices, fees and time-of-day windows.
        let extras = current
            && client
                .select(
                    "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid OPERATOR(pg_catalog.=) 'llm_cost.model_prices'::pg_catalog.regclass
                                       AND attname OPERATOR(pg_catalog.=) 'time_of_day_from' AND NOT attisdropped)",
                    Some(1),
                    &[],
                )?
                .first()
                .get_one::<bool>()?
                .unwrap_or(false);

        // Binary values (numeric read as exact integer units, timestamps as microseconds): no text
        // conversions but the match rules'.
        let query = if current {
            "SELECT id, provider, model, min_input_tokens, input_usd_per_mtok, output_usd_per_mtok,
                    cache_read_usd_per_mtok, cache_write_5m_usd_per_mtok, cache_write_1h_usd_per_mtok,
                    valid_from, valid_to, CASE origin WHEN 'user' THEN 2 WHEN 'import' THEN 1 ELSE 0 END::pg_catalog.int4,
                    service_tier, match_rule::pg_catalog.text
               FROM llm_cost.model_prices ORDER BY id"
        } else {
            "SELECT id, provider, model, min_input_tokens, input_usd_per_mtok, output_usd_per_mtok,
                    cache_read_usd_per_mtok, cache_write_5m_usd_per_mtok, cache_write_1h_usd_per_mtok,
                    valid_from, valid_to, CASE origin WHEN 'user' THEN 2 ELSE 0 END::pg_catalog.int4, 'standard'::pg_catalog.text, NULL::pg_catalog.text
               FROM llm_cost.model_prices ORDER BY id"
        };
        let mut rows = Vec::new();
        let mut rules = Vec::new();
        for r in client.select(query, None, &[])? {
            let tier = r.get::<&str>(13)?.unwrap_or_default();
            rows.push(PriceRow {
                id: r.get::<i64>(1)?.unwrap_or(0),
                provider: r.get::<String>(2)?.unwrap_or_default(),
                model: r.get::<String>(3)?.unwrap_or_default(),
                min_input_tokens: r.get::<i64>(4)?.unwrap_or(0),
                input: price(
                    "input_usd_per_mtok",
                    r.get_datum_by_ordinal(5)?.value::<pgrx::AnyNumeric>()?,
                )
                .unwrap_or_default(),
                output: price(
                    "output_usd_per_mtok",
                    r.get_datum_by_ordinal(6)?.value::<pgrx::AnyNumeric>()?,
                )
                .unwrap_or_default(),
                cache_read: price(
                    "cache_read_usd_per_mtok",
                    r.get_datum_by_ordinal(7)?.value::<pgrx::AnyNumeric>()?,
                ),
                cache_write_5m: price(
                    "cache_write_5m_usd_per_mtok",
                    r.get_datum_by_ordinal(8)?.value::<pgrx::AnyNumeric>()?,
                ),
                cache_write_1h: price(
                    "cache_write_1h_usd_per_mtok",
                    r.get_datum_by_ordinal(9)?.value::<pgrx::AnyNumeric>()?,
                ),
                valid_from: r
                    .get::<pgrx::datum::TimestampWithTimeZone>(10)?
                    .map(i64::from)
                    .unwrap_or(TS_NEG_INFINITY),
                valid_to: r
                    .get::<pgrx::datum::TimestampWithTimeZone>(11)?
                    .map(i64::from)
                    .unwrap_or(TS_INFINITY),
                rank: r.get::<i32>(12)?.unwrap_or(0) as u8,
                service_tier: ServiceTier::parse(tier).unwrap_or_else(|| {
                    crate::pg::fail::user(
                        pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        format!("llm_cost.model_prices: unknown service tier {tier}"),
                    )
                    .raise()
                }),
                extra: None,
                window: None,
            });
            rules.push(r.get::<String>(14)?);
        }
        // Modality prices, fees and time-of-day windows (0.8.0): a few rows have them; read
        // apart, so the main read stays as narrow as before.
        if extras {
            let at: std::collections::HashMap<i64, usize> =
                rows.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
            for r in client.select(
                "SELECT id, input_audio_usd_per_mtok, cache_read_audio_usd_per_mtok, output_audio_usd_per_mtok,
                        input_image_usd_per_mtok, cache_read_image_usd_per_mtok, output_image_usd_per_mtok,
                        web_search_usd_per_1k, request_usd_per_1k,
                        pg_catalog.round(pg_catalog.date_part('epoch', time_of_day_from) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8,
                        pg_catalog.round(pg_catalog.date_part('epoch', time_of_day_to) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8
                   FROM llm_cost.model_prices
                  WHERE pg_catalog.num_nonnulls(input_audio_usd_per_mtok, cache_read_audio_usd_per_mtok, output_audio_usd_per_mtok,
                        input_image_usd_per_mtok, cache_read_image_usd_per_mtok, output_image_usd_per_mtok,
                        web_search_usd_per_1k, request_usd_per_1k, time_of_day_from) OPERATOR(pg_catalog.>) 0",
                None,
                &[],
            )? {
                let Some(&i) = r.get::<i64>(1)?.and_then(|id| at.get(&id)) else {
                    continue;
                };
                let col = |k: usize, name: &str| -> SpiResult<Option<Price>> {
                    Ok(price(name, r.get_datum_by_ordinal(k)?.value::<pgrx::AnyNumeric>()?))
                };
                let extra = ExtraPrices {
                    input_audio: col(2, "input_audio_usd_per_mtok")?,
                    cache_read_audio: col(3, "cache_read_audio_usd_per_mtok")?,
                    output_audio: col(4, "output_audio_usd_per_mtok")?,
                    input_image: col(5, "input_image_usd_per_mtok")?,
                    cache_read_image: col(6, "cache_read_image_usd_per_mtok")?,
                    output_image: col(7, "output_image_usd_per_mtok")?,
                    web_search_per_k: col(8, "web_search_usd_per_1k")?,
                    request_per_k: col(9, "request_usd_per_1k")?,
                };
                rows[i].extra = (!extra.is_empty()).then(|| Box::new(extra));
                rows[i].window = match (r.get::<i64>(10)?, r.get::<i64>(11)?) {
                    (Some(from), Some(to)) => Some(Window { from, to }),
                    _ => None,
                };
            }
        }
        let mut aliases = Vec::new();
        for r in client.select(
            "SELECT alias, model, provider FROM llm_cost.model_aliases",
            None,
            &[],
        )? {
            aliases.push(Alias {
                alias: r.get::<String>(1)?.unwrap_or_default(),
                model: r.get::<String>(2)?.unwrap_or_default(),
                provider: r.get::<String>(3)?,
            });
        }
        let mut providers = Vec::new();
        for r in client.select(
            if current {
                "SELECT provider, model_match::pg_catalog.text, provider_match::pg_catalog.text, coalesce(fallback_providers, '{}')
                   FROM llm_cost.providers ORDER BY CASE origin WHEN 'user' THEN 0 WHEN 'import' THEN 1 ELSE 2 END, provider"
            } else {
                "SELECT NULL::pg_catalog.text, NULL::pg_catalog.text, NULL::pg_catalog.text, '{}'::pg_catalog.text[] WHERE false"
            },
            None,
            &[],
        )? {
            providers.push(ProviderDef {
                id: r.get::<String>(1)?.unwrap_or_default(),
                model_match: r.get::<String>(2)?,
                provider_match: r.get::<String>(3)?,
                fallback: r.get::<Vec<String>>(4)?.unwrap_or_default(),
            });
        }
        let n = rows.len();
        let read_us = started.elapsed().as_micros() as u64;
        let (catalog, problems) = Catalog::new(rows, rules, providers, aliases);
        for p in problems.iter().take(5) {
            warning!("llm_cost: price catalog: {p}; the model is matched by its id only");
        }
        Ok(Loaded {
            catalog,
            memo: RefCell::new(Default::default()),
            memo_p: RefCell::new(Default::default()),
            reported: RefCell::new(Default::default()),
            load_us: started.elapsed().as_micros() as u64,
            read_us,
            rows: n,
        })
    })
}

/// Statement trigger on the catalog tables: broadcast a relcache invalidation so every backend
/// (this one included, from its next command) reloads the catalog.
#[pg_trigger]
fn catalog_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let relid = trigger.relid()?;
    // SAFETY: transactional invalidations of the catalog tables, looked up by name in this database.
    unsafe {
        pg_sys::CacheInvalidateRelcacheByRelid(relid);
        // Fired on a copy of a catalog table (a shard of it on a Citus worker: the catalog made a
        // reference table): every backend of this node reads the catalog through the table itself.
        let nsp = pg_sys::get_namespace_oid(c"llm_cost".as_ptr(), true);
        if nsp != pg_sys::InvalidOid {
            for name in [c"model_prices", c"model_aliases", c"providers"] {
                let table = pg_sys::get_relname_relid(name.as_ptr(), nsp);
                if table != pg_sys::InvalidOid && table != relid {
                    pg_sys::CacheInvalidateRelcacheByRelid(table);
                }
            }
        }
    }
    invalidate_local();
    Ok(None)
}
