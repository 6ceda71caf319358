//! The price catalog a backend prices with: loaded from `llm_cost.model_prices`,
//! `model_aliases` and `providers` into a `llm_cost_core::catalog` image, and one call priced
//! from it (`price_call`).
//!
//! **One catalog per server.** A catalog version is named by `llm_cost.catalog_version`, a
//! one-row table whose `version` every statement that changes the catalog sets to a new value of
//! a sequence (statement trigger `catalog_changed`, which also takes the row's lock: catalog
//! writers follow one another). The image of a version is built once and published in dynamic
//! shared memory (`pg::shared`); every backend that sees that version attaches it and reads it
//! in place (a few pages, not a copy). The writer builds and publishes the new version just
//! before it commits, so the backends that see it next only attach; one whose snapshot sees a
//! version nobody published (a prepared transaction committed, a restart) builds it under a
//! lock, so that one backend builds and the others attach. A transaction that changed the
//! catalog prices with its own private image (it sees its own rows) until it ends. Without
//! `shared_preload_libraries` every backend builds its own image (the same code reads it).
//!
//! **When a backend looks.** A statement trigger on the three tables also sends a transactional
//! relcache invalidation: when the writer commits, every backend processes it before its next
//! statement and `relation_changed` marks the catalog to be checked; the check reads the version
//! (one query) and keeps, attaches or builds. Inside a statement the catalog never changes.

use crate::pg::{shared, spi};
use llm_cost_core::catalog::{Alias, Catalog, ProviderDef, Resolved};
use llm_cost_core::pricing::{
    Cost, ExtraPrices, Price, PriceRow, ServiceTier, Usage, Window, TS_INFINITY, TS_NEG_INFINITY,
};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// `llm_cost.shared_catalog`: read the server's image (on) or keep one's own (off).
pub static SHARED_CATALOG: pgrx::GucSetting<bool> = pgrx::GucSetting::<bool>::new(true);

pub fn init_gucs() {
    pgrx::GucRegistry::define_bool_guc(
        c"llm_cost.shared_catalog",
        c"Read the price catalog from the one image in shared memory that every backend shares.",
        c"On (default, with llm_cost in shared_preload_libraries): each catalog version is built once for the whole server and every backend reads it in place. Off: this backend builds and keeps its own copy (what every backend does without shared_preload_libraries).",
        &SHARED_CATALOG,
        pgrx::GucContext::Suset,
        pgrx::GucFlags::default(),
    );
}

/// Whether this backend reads the server's image.
fn sharing() -> bool {
    shared::available() && SHARED_CATALOG.get()
}

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
    /// Microseconds the load took (attach or build) and the rows read, for `_catalog_stats()`.
    pub load_us: u64,
    /// Of which reading the tables (0 when attached).
    pub read_us: u64,
    pub rows: usize,
    /// The version this is: (model_prices, catalog_version.version). None: this transaction's
    /// own (it changed the catalog, or read it while a change committed), never reused after.
    pub key: Option<(pg_sys::Oid, i64)>,
    /// How it came: attached (shared by the server), built and published, or built for this
    /// backend alone.
    pub source: Source,
    /// The shared memory the image lies in (dropped after `catalog`, which reads it).
    _mapping: Option<shared::Attached>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    Attached,
    Published,
    Private,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Attached => "attached",
            Source::Published => "built and published",
            Source::Private => "built for this backend",
        }
    }
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
        Some(i) => match loaded.catalog.cost_at(i, at, u, tier) {
            Some(cost) => Priced::Cost(cost),
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
    /// This transaction changed the catalog: it prices with its own image, and publishes the
    /// new version before it commits.
    static WROTE: Cell<bool> = const { Cell::new(false) };
    /// What the last check of the held catalog's version saw.
    static SEEN: Cell<Option<Seen>> = const { Cell::new(None) };
    /// This transaction counted itself among the writers in flight (`shared::writer_starts`).
    static IN_FLIGHT: Cell<bool> = const { Cell::new(false) };
    /// `llm_cost.catalog_version`'s relation (InvalidOid: none).
    static WATCHED_VERSION: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
}

/// A relation changed (`pg::relcache` listener, set up by `_PG_init`): a catalog table (or all
/// relations) makes the catalog to be checked before its next use.
pub fn relation_changed(relid: pg_sys::Oid) {
    let (a, b, c) = WATCHED.with(|w| w.get());
    if relid == pg_sys::InvalidOid || relid == a || relid == b || relid == c {
        VALID.with(|v| v.set(false));
    }
}

/// The writers' (ends, in flight) at the last check, and now, for `_catalog_stats`.
pub fn check_counts() -> (Option<(u64, u64)>, Option<(u64, u64)>) {
    (
        SEEN.with(|s| s.get()).and_then(|s| s.writers),
        shared::generation(),
    )
}

/// Frees this backend's catalog: the next use loads it again.
pub fn drop_cached() {
    VALID.with(|v| v.set(false));
    CACHE.with(|c| *c.borrow_mut() = None);
}

/// Marks this backend's catalog to be checked before its next use.
pub fn invalidate_local() {
    VALID.with(|v| v.set(false));
}

/// The transaction's part (`_PG_init` joins it): a writer of the catalog publishes the version
/// it commits, built from what it sees just before commit (its own rows and all committed
/// ones: catalog writers follow one another on the version row's lock). Its private image goes
/// when it ends, committed or not.
pub static LIFECYCLE: crate::pg::lifecycle::Participant = crate::pg::lifecycle::Participant {
    pre_commit: publish_written,
    end: |_prepared| {
        if IN_FLIGHT.with(|f| f.replace(false)) {
            shared::writer_ends();
        }
        if WROTE.with(|w| w.replace(false)) {
            VALID.with(|v| v.set(false));
        }
        let private = CACHE.with(|c| c.borrow().as_ref().is_some_and(|l| l.key.is_none()));
        if private {
            drop_cached();
        }
    },
    sub_abort: |_| {},
    sub_commit: |_, _| {},
};

fn publish_written() {
    if !WROTE.with(|w| w.get()) {
        return;
    }
    // Before the commit becomes visible: readers check the version until it ended.
    if !IN_FLIGHT.with(|f| f.replace(true)) {
        shared::writer_starts();
    }
    // A prepared transaction commits elsewhere, later: the first reader of its version builds it.
    if crate::pg::lifecycle::preparing() || !sharing() {
        return;
    }
    crate::pg::lifecycle::with_snapshot(|| {
        let Some((relid, Some(version))) = version() else {
            return;
        };
        if let Ok((image, _, _)) = build() {
            // Published and pinned; this backend's next statement attaches it like any other.
            drop(shared::publish(relid, version, &image));
        }
    });
}

/// The catalog tables' relation and the catalog version this statement sees. None: no catalog
/// (the extension is not in this database); a version None: a database on SQL older than 0.10.0.
fn version() -> Option<(pg_sys::Oid, Option<i64>)> {
    // SAFETY: catalog look-ups by name in this database.
    let (prices, aliases, providers, versions) = unsafe {
        let nsp = pg_sys::get_namespace_oid(c"llm_cost".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        (
            pg_sys::get_relname_relid(c"model_prices".as_ptr(), nsp),
            pg_sys::get_relname_relid(c"model_aliases".as_ptr(), nsp),
            pg_sys::get_relname_relid(c"providers".as_ptr(), nsp),
            pg_sys::get_relname_relid(c"catalog_version".as_ptr(), nsp),
        )
    };
    if prices == pg_sys::InvalidOid {
        return None;
    }
    // The tables whose invalidations make the catalog to be checked (`relation_changed`).
    WATCHED.with(|w| w.set((prices, aliases, providers)));
    WATCHED_VERSION.with(|w| w.set(versions));
    if versions == pg_sys::InvalidOid {
        return Some((prices, None));
    }
    Some((prices, read_version(versions, false)))
}

/// The version the latest snapshot sees (committed now), if the table exists.
fn latest_version() -> Option<i64> {
    // SAFETY: a catalog look-up by name in this database.
    let versions = unsafe {
        let nsp = pg_sys::get_namespace_oid(c"llm_cost".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        pg_sys::get_relname_relid(c"catalog_version".as_ptr(), nsp)
    };
    if versions == pg_sys::InvalidOid {
        return None;
    }
    read_version(versions, true)
}

/// `llm_cost.catalog_version.version` read straight from the table (no SQL: this runs before a
/// new backend's first priced statement, and in parallel workers), in the statement's snapshot
/// (the transaction's when no statement runs), or in the latest one.
fn read_version(versions: pg_sys::Oid, latest: bool) -> Option<i64> {
    // SAFETY: the table is opened, scanned and closed here under AccessShareLock with a valid
    // MVCC snapshot; the tuple is deformed with the relation's own descriptor while the scan
    // holds it; `version` is a NOT NULL bigint (attnum looked up by name).
    unsafe {
        let attnum = pg_sys::get_attnum(versions, c"version".as_ptr());
        if attnum <= 0 {
            return None;
        }
        let snapshot = if latest {
            pg_sys::GetLatestSnapshot()
        } else if pg_sys::ActiveSnapshotSet() {
            pg_sys::GetActiveSnapshot()
        } else {
            pg_sys::GetTransactionSnapshot()
        };
        let rel = pg_sys::try_table_open(versions, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        if rel.is_null() {
            return None;
        }
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::InvalidOid,
            false,
            snapshot,
            0,
            std::ptr::null_mut(),
        );
        let tup = pg_sys::systable_getnext(scan);
        let mut out = None;
        if !tup.is_null() {
            let desc = (*rel).rd_att;
            let natts = (*desc).natts as usize;
            let mut values = vec![pg_sys::Datum::from(0usize); natts];
            let mut nulls = vec![true; natts];
            pg_sys::heap_deform_tuple(tup, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            let k = attnum as usize - 1;
            if k < natts && !nulls[k] {
                out = Some(values[k].value() as i64);
            }
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        out
    }
}

/// The catalog as of now: the one this backend holds if its version is still current, else the
/// server's image of the current version (attached), else one built here (and published).
pub fn catalog() -> Rc<Loaded> {
    if VALID.with(|v| v.get()) {
        if let Some(c) = CACHE.with(|c| c.borrow().clone()) {
            if still_current(&c) {
                return c;
            }
        }
    }
    crate::pg::relcache::register_callback();
    crate::pg::lifecycle::ensure_registered();
    // Mark valid before reading: an invalidation that arrives while we read clears it again.
    VALID.with(|v| v.set(true));
    // What the check below compares with, read before the version is.
    let seen = Seen::now();
    let loaded = refresh();
    SEEN.with(|s| s.set(Some(seen)));
    CACHE.with(|c| *c.borrow_mut() = Some(loaded.clone()));
    loaded
}

fn statement_start() -> i64 {
    // SAFETY: reads the backend's statement state.
    unsafe { pg_sys::GetCurrentStatementStartTimestamp() }
}

/// Whether the catalog this backend holds is the version the running statement's snapshot
/// sees. A catalog change reaches a backend as an invalidation before its next statement; but a
/// statement whose snapshot was taken just after that commit, before the invalidation was read,
/// would see the new version in SQL and price with the old one. So the version is read again
/// (one heap fetch) when a catalog writer may have committed since the last check: with shared
/// memory, when the writers' generation moved (writers bump it before they commit); without,
/// once per statement.
fn still_current(c: &Loaded) -> bool {
    let Some((_, v)) = c.key else {
        // This transaction's own image: kept until it ends.
        return true;
    };
    if v < 0 || WROTE.with(|w| w.get()) {
        // A database on SQL older than 0.10.0: invalidations only, as before.
        return true;
    }
    let last = SEEN.with(|s| s.get());
    let stmt = statement_start();
    if last.is_some_and(|l| l.statement == stmt) {
        // Checked in this statement already: one catalog per statement.
        return true;
    }
    let now = Seen::now();
    if let (Some(l), Some((g, 0))) = (last, now.writers) {
        if l.writers == Some((g, 0)) {
            SEEN.with(|s| s.set(Some(now)));
            return true;
        }
    }
    let versions = WATCHED_VERSION.with(|w| w.get());
    if versions == pg_sys::InvalidOid || read_version(versions, false) != Some(v) {
        return false;
    }
    SEEN.with(|s| s.set(Some(now)));
    true
}

/// What a check of the catalog's version saw: the writers' (ends, in flight) and the statement.
#[derive(Clone, Copy)]
struct Seen {
    writers: Option<(u64, u64)>,
    statement: i64,
}

impl Seen {
    fn now() -> Seen {
        Seen {
            writers: shared::generation(),
            statement: statement_start(),
        }
    }
}

fn refresh() -> Rc<Loaded> {
    refresh_inner().map_or_else(|same| same, Rc::new)
}

/// A new catalog, or (Err) the one this backend holds when its version is still current.
fn refresh_inner() -> Result<Loaded, Rc<Loaded>> {
    let started = std::time::Instant::now();
    let wrote = WROTE.with(|w| w.get());
    let seen = if wrote { None } else { version() };
    if let Some((relid, Some(v))) = seen {
        let key = Some((relid, v));
        if let Some(c) = CACHE.with(|c| c.borrow().clone()) {
            if c.key == key {
                // Same version (an unrelated invalidation): keep it.
                return Err(c);
            }
        }
        if sharing() {
            if let Some(l) = attach(relid, v, started) {
                return Ok(l);
            }
            // Nobody published this version yet: build it under a lock, so that one backend
            // builds and the others, waiting, attach what it published.
            let _builders = lock_builders(relid);
            if let Some(l) = attach(relid, v, started) {
                return Ok(l);
            }
            // The image is that version's when no catalog change committed between this
            // statement's snapshot and the end of the build (whatever snapshots the reads took).
            let before = latest_version();
            let (image, rows, read_us) = build_or_fail();
            let same = before == Some(v) && latest_version() == Some(v);
            if same {
                if let Some(m) = shared::publish(relid, v, &image) {
                    // SAFETY: the mapping holds the image and is kept with the catalog.
                    if let Ok(catalog) = unsafe { Catalog::borrowed(m.base, m.len) } {
                        return Ok(Loaded::new(
                            catalog,
                            key,
                            Source::Published,
                            Some(m),
                            rows,
                            read_us,
                            started,
                        ));
                    }
                }
            }
            let key = if same { key } else { None };
            return Ok(Loaded::new(
                Catalog::from_words(image),
                key,
                Source::Private,
                None,
                rows,
                read_us,
                started,
            ));
        }
        let before = latest_version();
        let (image, rows, read_us) = build_or_fail();
        let same = before == Some(v) && latest_version() == Some(v);
        return Ok(Loaded::new(
            Catalog::from_words(image),
            if same { key } else { None },
            Source::Private,
            None,
            rows,
            read_us,
            started,
        ));
    }
    // This transaction's own catalog, or a database on older SQL (no version: reloaded on
    // every change, as before 0.10.0).
    let (image, rows, read_us) = build_or_fail();
    let key = match seen {
        Some((relid, None)) if !wrote => Some((relid, -1)),
        _ => None,
    };
    Ok(Loaded::new(
        Catalog::from_words(image),
        key,
        Source::Private,
        None,
        rows,
        read_us,
        started,
    ))
}

impl Loaded {
    fn new(
        catalog: Catalog,
        key: Option<(pg_sys::Oid, i64)>,
        source: Source,
        mapping: Option<shared::Attached>,
        rows: usize,
        read_us: u64,
        started: std::time::Instant,
    ) -> Loaded {
        Loaded {
            catalog,
            memo: RefCell::new(Default::default()),
            memo_p: RefCell::new(Default::default()),
            reported: RefCell::new(Default::default()),
            load_us: started.elapsed().as_micros() as u64,
            read_us,
            rows,
            key,
            source,
            _mapping: mapping,
        }
    }
}

fn attach(relid: pg_sys::Oid, v: i64, started: std::time::Instant) -> Option<Loaded> {
    let m = shared::find(relid, v)?;
    // SAFETY: a published image stays mapped while `m` lives; it is kept with the catalog.
    let catalog = unsafe { Catalog::borrowed(m.base, m.len) }.ok()?;
    let rows = catalog.rows_read();
    Some(Loaded::new(
        catalog,
        Some((relid, v)),
        Source::Attached,
        Some(m),
        rows,
        0,
        started,
    ))
}

/// `locktag_field4` of the catalog builders' lock (pg_advisory_* use 1 and 2; budgets 0x4c43).
const BUILD_LOCK_SPACE: u16 = 0x4c44;

/// Waits for the backend building this database's catalog image, if one is; held until the
/// guard is dropped (just after the build and publish: never until the transaction ends, which
/// for a Citus worker's backend is the end of a distributed transaction that other backends of
/// it, waiting here, would hold up).
fn lock_builders(relid: pg_sys::Oid) -> BuildersLock {
    let tag = pg_sys::LOCKTAG {
        // SAFETY: a backend global, set once connected.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: relid.to_u32(),
        locktag_field3: 0,
        locktag_field4: BUILD_LOCK_SPACE,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: 2, // USER_LOCKMETHOD
    };
    // SAFETY: an advisory-type lock of llm_cost's own space, released by the guard (or by the
    // transaction's abort on an error).
    unsafe {
        pg_sys::LockAcquire(
            &tag,
            pg_sys::ExclusiveLock as pg_sys::LOCKMODE,
            false,
            false,
        );
    }
    BuildersLock(tag)
}

struct BuildersLock(pg_sys::LOCKTAG);

impl Drop for BuildersLock {
    fn drop(&mut self) {
        // SAFETY: the lock taken by `lock_builders`, held once by this backend.
        unsafe {
            pg_sys::LockRelease(&self.0, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false);
        }
    }
}

fn build_or_fail() -> (Vec<u64>, usize, u64) {
    match build() {
        Ok(b) => b,
        Err(e) => {
            crate::pg::fail::internal(format!("llm_cost: could not read the price catalog: {e}"))
        }
    }
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

/// Reads the catalog tables (as this statement sees them) into an image: (image, rows, µs reading).
fn build() -> SpiResult<(Vec<u64>, usize, u64)> {
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
        let (image, problems) = Catalog::image(rows, rules, providers, aliases);
        for p in problems.iter().take(5) {
            warning!("llm_cost: price catalog: {p}; the model is matched by its id only");
        }
        Ok((image, n, read_us))
    })
}

/// Statement trigger on the catalog tables: broadcast a relcache invalidation so every backend
/// (this one included, from its next command) reloads the catalog.
#[pg_trigger]
fn catalog_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let relid = trigger.relid()?;
    // A new catalog version: a new value of the sequence (never reused, even after a rollback),
    // written as the extension's owner (the writer may only have rights on the catalog table).
    // The row's lock makes catalog writers follow one another until they end.
    // SAFETY: catalog look-ups by name in this database.
    let has_version = unsafe {
        let nsp = pg_sys::get_namespace_oid(c"llm_cost".as_ptr(), true);
        nsp != pg_sys::InvalidOid
            && pg_sys::get_relname_relid(c"catalog_version".as_ptr(), nsp) != pg_sys::InvalidOid
    };
    if has_version {
        crate::pg::privilege::as_extension_owner(|| {
            spi::run("UPDATE llm_cost.catalog_version SET version = pg_catalog.nextval('llm_cost.catalog_version_seq')")
        })
        .unwrap_or_else(|e| crate::pg::fail::internal(format!("llm_cost: could not record a new catalog version: {e}")));
    }
    crate::pg::lifecycle::ensure_registered();
    WROTE.with(|w| w.set(true));
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
