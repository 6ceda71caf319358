//! Per-backend cache of the price catalog (plumbing around `core::catalog`), and the relation
//! cache callback that tells features a relation changed.
//!
//! The catalog is read once per backend with SPI and kept until `llm_cost.model_prices` or
//! `llm_cost.model_aliases` change. A statement trigger on both tables calls
//! `CacheInvalidateRelcacheByRelid`, a transactional invalidation: when the writing transaction
//! commits, every backend processes it before its next statement and our relcache callback drops
//! the cache. Inside the writing transaction the change is visible from its next command, and a
//! rollback invalidates again, so nobody keeps prices that never committed.

use crate::core::catalog::{Alias, Catalog};
use crate::core::pricing::{Price, PriceRow, TS_INFINITY, TS_NEG_INFINITY};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Names looked up per backend are memoised; past this many distinct names the memo restarts.
const MEMO_LIMIT: usize = 10_000;

pub struct Loaded {
    pub catalog: Catalog,
    memo: RefCell<rustc_hash::FxHashMap<String, Option<usize>>>,
}

impl Loaded {
    /// `Catalog::resolve`, memoised on the name exactly as sent.
    pub fn resolve(&self, name: &str) -> Option<usize> {
        if let Some(hit) = self.memo.borrow().get(name) {
            return *hit;
        }
        let r = self.catalog.resolve(name);
        let mut memo = self.memo.borrow_mut();
        if memo.len() >= MEMO_LIMIT {
            memo.clear();
        }
        memo.insert(name.to_string(), r);
        r
    }
}

thread_local! {
    static CACHE: RefCell<Option<Rc<Loaded>>> = const { RefCell::new(None) };
    static VALID: Cell<bool> = const { Cell::new(false) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    static WATCHED: Cell<(pg_sys::Oid, pg_sys::Oid)> = const { Cell::new((pg_sys::InvalidOid, pg_sys::InvalidOid)) };
}

/// Called on every relation cache invalidation (InvalidOid: all relations), set up by
/// `_PG_init`: the features that keep per-relation state forget it (plumbing calls no feature).
static RELATION_LISTENERS: std::sync::Mutex<Vec<fn(pg_sys::Oid)>> = std::sync::Mutex::new(Vec::new());

/// Adds a function called with the relation of every relation cache invalidation.
pub fn on_relation_change(f: fn(pg_sys::Oid)) {
    if let Ok(mut l) = RELATION_LISTENERS.lock() {
        l.push(f);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let listeners: Vec<fn(pg_sys::Oid)> = RELATION_LISTENERS.lock().map(|l| l.clone()).unwrap_or_default();
    for f in listeners {
        f(relid);
    }
    let (a, b) = WATCHED.with(|w| w.get());
    if relid == pg_sys::InvalidOid || relid == a || relid == b {
        VALID.with(|v| v.set(false));
    }
}

pub fn register_callback() {
    if !CALLBACK_REGISTERED.with(|c| c.get()) {
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0)) };
        CALLBACK_REGISTERED.with(|c| c.set(true));
    }
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
    register_callback();
    // Mark valid before reading: an invalidation that arrives while we read clears it again.
    VALID.with(|v| v.set(true));
    let loaded = match load() {
        Ok(l) => Rc::new(l),
        Err(e) => {
            VALID.with(|v| v.set(false));
            error!("llm_cost: could not read the price catalog: {e}");
        }
    };
    CACHE.with(|c| *c.borrow_mut() = Some(loaded.clone()));
    loaded
}

fn ts(v: Option<pgrx::datum::TimestampWithTimeZone>, open: i64) -> i64 {
    v.map(i64::from).unwrap_or(open)
}

fn price(col: &str, v: Option<String>) -> Option<Price> {
    v.map(|s| match Price::parse(&s) {
        Ok(p) => p,
        // The table's CHECK constraints make this unreachable; say so clearly if it ever is.
        Err(e) => error!("llm_cost.model_prices.{col}: {e}"),
    })
}

fn load() -> SpiResult<Loaded> {
    Spi::connect(|client| {
        let oids = client
            .select(
                "SELECT 'llm_cost.model_prices'::regclass::oid, 'llm_cost.model_aliases'::regclass::oid",
                Some(1),
                &[],
            )?
            .first()
            .get_two::<pg_sys::Oid, pg_sys::Oid>()?;
        WATCHED.with(|w| w.set((oids.0.unwrap_or(pg_sys::InvalidOid), oids.1.unwrap_or(pg_sys::InvalidOid))));

        let mut rows = Vec::new();
        let table = client.select(
            "SELECT id, provider, model, min_input_tokens,
                    input_usd_per_mtok::text, output_usd_per_mtok::text,
                    cache_read_usd_per_mtok::text, cache_write_5m_usd_per_mtok::text,
                    cache_write_1h_usd_per_mtok::text, valid_from, valid_to, origin = 'user'
               FROM llm_cost.model_prices ORDER BY id",
            None,
            &[],
        )?;
        for r in table {
            rows.push(PriceRow {
                id: r.get::<i64>(1)?.unwrap_or(0),
                provider: r.get::<String>(2)?.unwrap_or_default(),
                model: r.get::<String>(3)?.unwrap_or_default(),
                min_input_tokens: r.get::<i64>(4)?.unwrap_or(0),
                input: price("input_usd_per_mtok", r.get::<String>(5)?).unwrap_or_default(),
                output: price("output_usd_per_mtok", r.get::<String>(6)?).unwrap_or_default(),
                cache_read: price("cache_read_usd_per_mtok", r.get::<String>(7)?),
                cache_write_5m: price("cache_write_5m_usd_per_mtok", r.get::<String>(8)?),
                cache_write_1h: price("cache_write_1h_usd_per_mtok", r.get::<String>(9)?),
                valid_from: ts(r.get(10)?, TS_NEG_INFINITY),
                valid_to: ts(r.get(11)?, TS_INFINITY),
                user_defined: r.get::<bool>(12)?.unwrap_or(false),
            });
        }
        let mut aliases = Vec::new();
        for r in client.select("SELECT alias, model, provider FROM llm_cost.model_aliases", None, &[])? {
            aliases.push(Alias {
                alias: r.get::<String>(1)?.unwrap_or_default(),
                model: r.get::<String>(2)?.unwrap_or_default(),
                provider: r.get::<String>(3)?,
            });
        }
        Ok(Loaded { catalog: Catalog::new(rows, aliases), memo: RefCell::new(Default::default()) })
    })
}

/// Statement trigger on the catalog tables: broadcast a relcache invalidation so every backend
/// (this one included, from its next command) reloads the catalog.
#[pg_trigger]
fn catalog_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let relid = trigger.relid()?;
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    invalidate_local();
    Ok(None)
}
