//! Retention: the background launcher and the per-database purge workers (Postgres shell; the
//! purge itself is SQL in `sql/retention.sql`).
//!
//! With `llm_cost` in `shared_preload_libraries`, a launcher (connected to no database: it
//! reads the shared catalog pg_database) wakes every `llm_cost.retention_naptime` seconds and starts one short-lived worker
//! per database that allows connections. The worker exits at once where the extension is not
//! installed; elsewhere it purges each table with a policy in batches of
//! `llm_cost.retention_batch_size` rows, one transaction each, records the run, and exits. Short
//! runs keep databases free for DROP DATABASE between runs; a database that creates the
//! extension is served by the next round, one that drops it is left alone.

use crate::pg::spi;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
    SignalWakeFlags,
};
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PgTryBuilder};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub static NAPTIME: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static HISTORY_DAYS: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static BATCH_DELAY: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static LOCK_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static DUTY_CYCLE: GucSetting<i32> = GucSetting::<i32>::new(25);
pub static FOLD: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static WAL_COMPRESSION: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"off"));

pub fn init_gucs() {
    GucRegistry::define_int_guc(
        c"llm_cost.retention_naptime",
        c"Seconds between two retention rounds of the llm_cost background worker.",
        c"Each round starts one short-lived worker per database; in databases with the extension it purges every table with a retention policy.",
        &NAPTIME,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"llm_cost.retention_batch_size",
        c"Rows deleted per transaction by the llm_cost retention purge.",
        c"Smaller batches hold locks for less time and react faster to shutdown; larger ones purge faster.",
        &BATCH_SIZE,
        1,
        10_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"llm_cost.retention_enabled",
        c"Whether the llm_cost background worker purges old usage rows.",
        c"Off: the worker purges nothing (llm_cost.run_retention() still works); it still records the budget crossings no writer saw.",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"llm_cost.retention_batch_delay",
        c"Milliseconds the llm_cost retention worker sleeps between two batches.",
        c"Leaves the machine to the application between batches (like vacuum_cost_delay); 0 purges as fast as possible.",
        &BATCH_DELAY,
        0,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"llm_cost.retention_duty_cycle",
        c"Percent of the time the llm_cost retention worker may spend deleting while it purges a table.",
        c"After a batch that took t, the worker sleeps at least t x (100 - duty cycle) / duty cycle (and at least llm_cost.retention_batch_delay): the purge slows down as the machine gets busier. 100: only the batch delay.",
        &DUTY_CYCLE,
        1,
        100,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"llm_cost.retention_wal_compression",
        c"wal_compression of the llm_cost retention worker's own deletes, where the server's is off.",
        c"A purge writes a full image of each page it first touches after a checkpoint: compressed, its WAL is less than half. Any value wal_compression takes (lz4, zstd, pglz); off (the default) or empty: the server's setting. Only the worker's session uses it. PostgreSQL keeps wal_compression to superusers because the size of a compressed page image can hint at the page's contents to whoever can both write on that page and watch WAL positions: turn it on where that does not matter.",
        &WAL_COMPRESSION,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"llm_cost.retention_lock_timeout",
        c"Milliseconds the retention purge waits for the lock that drops an old partition.",
        c"Dropping a partition locks its parent table; while it waits behind a reader, inserts queue behind it. Past this wait the partition is left for the next round (counted in llm_cost.retention_runs.partitions_skipped).",
        &LOCK_TIMEOUT,
        1,
        60_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"llm_cost.fold_rollups",
        c"Whether the llm_cost background worker folds the rows of sums of closed periods.",
        c"Each round, the closed periods of the last 35 days of every rollup (not Citus ones) get one row per group instead of one per backend that wrote it (llm_cost.fold_rollup()): reads add up fewer rows; the sums do not change.",
        &FOLD,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"llm_cost.retention_history_days",
        c"Days of llm_cost.retention_runs history kept.",
        c"Older run records are deleted by each run.",
        &HISTORY_DAYS,
        1,
        36_500,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// Folds the closed periods of the last 35 days of every rollup of this database whose sums are
/// not in a Citus table nor replicated from a publication (the publisher's folds replicate):
/// one period per transaction, as the table of sums' owner
/// (`llm_cost._as_table_owner`); a rollup that fails is logged and left for the next round.
fn fold_rollups() {
    let rollups = in_transaction(|| {
        spi::connect(|c| {
            let mut v = Vec::new();
            if c.select(
                "SELECT 1 WHERE pg_catalog.to_regprocedure('llm_cost._fold_rollup_impl(pg_catalog.regclass, pg_catalog.timestamptz, pg_catalog.timestamptz, integer, boolean)') IS NOT NULL",
                None,
                &[],
            )?
            .is_empty()
            {
                return Ok(v);
            }
            for r in c.select(
                "SELECT r.rollup::pg_catalog.oid, r.stripes::pg_catalog.oid, r.rollup::pg_catalog.text FROM llm_cost.rollups r
                  WHERE (SELECT d.method FROM llm_cost._citus_distribution(r.stripes) d) IS NULL
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel sr WHERE sr.srrelid = r.stripes) ORDER BY r.id",
                None,
                &[],
            )? {
                v.push((
                    r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                    r.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
                    r.get::<String>(3)?.unwrap_or_default(),
                ));
            }
            Ok::<_, pgrx::spi::Error>(v)
        })
    });
    for (rollup, stripes, name) in rollups.ok().and_then(|r| r.ok()).unwrap_or_default() {
        let mut removed: i64 = 0;
        // Where the next step starts: the period after the last one folded (None: 35 days back).
        let mut since: Option<String> = None;
        loop {
            if BackgroundWorker::sigterm_received() {
                return;
            }
            let from = since.clone();
            let step = in_transaction(move || {
                // (a fold or rebuild of the rollup in progress: "busy", next round)
                spi::run("SET LOCAL lock_timeout = 1000")?;
                spi::get_one_with_args::<pgrx::JsonB>(
                    "SELECT llm_cost._as_table_owner('fold_rollup', $2,
                            pg_catalog.jsonb_build_object('rollup', $1, 'before', pg_catalog.now(),
                                                          'since', coalesce($3::pg_catalog.timestamptz, pg_catalog.now() - interval '35 days'),
                                                          'max_periods', 1, 'wait', false))",
                    &[rollup.into(), stripes.into(), from.into()],
                )
            });
            match step {
                Ok(Ok(Some(pgrx::JsonB(j)))) => {
                    removed += j.get("removed").and_then(|v| v.as_i64()).unwrap_or(0);
                    match (
                        j.get("more").and_then(|v| v.as_bool()),
                        j.get("next").and_then(|v| v.as_str()),
                    ) {
                        (Some(true), Some(next)) => since = Some(next.to_string()),
                        _ => break,
                    }
                }
                Ok(Ok(None)) => break,
                Ok(Err(e)) => {
                    log!("llm_cost: folding rollup {name} failed: {e}");
                    break;
                }
                Err(e) => {
                    log!("llm_cost: folding rollup {name} failed: {e}");
                    break;
                }
            }
        }
        if removed > 0 {
            log!("llm_cost: folded the closed periods of rollup {name}: {removed} rows of sums fewer");
        }
    }
}

/// Registers the launcher; called from _PG_init while shared_preload_libraries is processed.
pub fn register_launcher() {
    BackgroundWorkerBuilder::new("llm_cost retention launcher")
        .set_type("llm_cost retention launcher")
        .set_function("llm_cost_retention_launcher")
        .set_library("llm_cost")
        .enable_spi_access()
        .set_start_time(pgrx::bgworkers::BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

fn reload_config_if_asked() {
    if BackgroundWorker::sighup_received() {
        // SAFETY: the worker's own process, between transactions, as the postmaster asked.
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    }
}

/// Runs `f` in its own transaction. An ERROR aborts that transaction and comes back as Err with
/// its message: the worker logs it, records it and goes on.
fn in_transaction<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    // SAFETY: the background worker's main loop, outside any transaction: starts one and its snapshot.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let r = PgTryBuilder::new(|| Ok(f()))
        .catch_others(|e| {
            let msg = match &e {
                pg_sys::panic::CaughtError::PostgresError(r)
                | pg_sys::panic::CaughtError::ErrorReport(r)
                | pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => {
                    r.message().to_string()
                }
            };
            Err(msg)
        })
        .execute();
    // SAFETY: ends the transaction started above (commit, or abort after an error was caught).
    unsafe {
        match r {
            Ok(_) => {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            Err(_) => {
                pg_sys::AbortCurrentTransaction();
                pg_sys::FlushErrorState();
            }
        }
    }
    r
}

/// The databases a round serves, in the order it tries them: `dbs` (sorted by OID) rotated so
/// that the first database the previous round could not serve (`first`) comes first. With too
/// few free worker slots every database still gets its turn: a database skipped once is first
/// in line the next round.
pub fn round_order(dbs: &[u32], first: Option<u32>) -> Vec<u32> {
    let start = first
        .and_then(|f| dbs.iter().position(|&d| d >= f))
        .unwrap_or(0);
    dbs[start..]
        .iter()
        .chain(dbs[..start].iter())
        .copied()
        .collect()
}

/// Databases that allow connections, read from the shared catalog pg_database (the launcher
/// is connected to no database: it works on a cluster without a `postgres` database and never
/// holds one open).
fn database_list() -> Vec<(pg_sys::Oid, String)> {
    let mut v = Vec::new();
    // SAFETY: pg_database scanned under AccessShareLock with a catalog snapshot, in the launcher's transaction.
    unsafe {
        let rel = pg_sys::table_open(
            pg_sys::DatabaseRelationId,
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tup = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tup.is_null() {
                break;
            }
            // GETSTRUCT
            let form = ((*tup).t_data as *mut u8).add((*(*tup).t_data).t_hoff as usize)
                as *const pg_sys::FormData_pg_database;
            if (*form).datallowconn && !(*form).datistemplate {
                let name = std::ffi::CStr::from_ptr((*form).datname.data.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                v.push(((*form).oid, name));
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    }
    v.sort_by_key(|(o, _)| o.to_u32());
    v
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn llm_cost_retention_launcher(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    spi::pin_for_process();
    log!("llm_cost retention launcher started");
    let mut workers: HashMap<u32, DynamicBackgroundWorker> = HashMap::new();
    let mut next_round = Instant::now();
    // The first database the last round could not serve (no free worker slot).
    let mut first_skipped: Option<u32> = None;
    loop {
        reload_config_if_asked();
        if BackgroundWorker::sigterm_received() {
            break;
        }
        let nap = Duration::from_secs(NAPTIME.get().max(1) as u64);
        // The latch is also set when a worker starts or stops: only start a round on time.
        next_round = next_round.min(Instant::now() + nap);
        if Instant::now() < next_round {
            if !BackgroundWorker::wait_latch(Some(next_round - Instant::now())) {
                break;
            }
            continue;
        }
        next_round = Instant::now() + nap;
        {
            match in_transaction(database_list) {
                Ok(dbs) => {
                    // Forget workers that finished; start one for every database without one.
                    workers.retain(|_, w| {
                        matches!(w.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted))
                    });
                    let names: HashMap<u32, String> =
                        dbs.iter().map(|(o, n)| (o.to_u32(), n.clone())).collect();
                    let oids: Vec<u32> = dbs.iter().map(|(o, _)| o.to_u32()).collect();
                    let mut skipped = Vec::new();
                    for oid in round_order(&oids, first_skipped) {
                        if workers.contains_key(&oid) {
                            continue;
                        }
                        let name = &names[&oid];
                        if !skipped.is_empty() {
                            // Once one start failed, the others would too this round.
                            skipped.push(oid);
                            continue;
                        }
                        let started = BackgroundWorkerBuilder::new(&format!(
                            "llm_cost retention worker {name}"
                        ))
                        .set_type("llm_cost retention worker")
                        .set_function("llm_cost_retention_worker")
                        .set_library("llm_cost")
                        .enable_spi_access()
                        .set_argument(Some(pg_sys::Datum::from(pg_sys::Oid::from(oid))))
                        // SAFETY: reads this process's pid.
                        .set_notify_pid(unsafe { pg_sys::MyProcPid })
                        .set_restart_time(None)
                        .load_dynamic();
                        match started {
                            Ok(w) => {
                                workers.insert(oid, w);
                            }
                            Err(_) => skipped.push(oid),
                        }
                    }
                    first_skipped = skipped.first().copied();
                    if !skipped.is_empty() {
                        let list: Vec<&str> = skipped.iter().map(|o| names[o].as_str()).collect();
                        log!(
                            "llm_cost retention launcher: no free background worker slot (max_worker_processes) for database(s) {}; they go first next round",
                            list.join(", ")
                        );
                    }
                }
                Err(e) => log!("llm_cost retention launcher: {e}"),
            }
        }
    }
    // Terminated while the server keeps running (pg_terminate_backend): exit code 1 makes the
    // postmaster start the launcher again after its restart interval. At shutdown the
    // postmaster restarts nothing.
    log!("llm_cost retention launcher stopped");
    // SAFETY: the launcher's last act: exit code 1, which the postmaster does not restart.
    unsafe { pg_sys::proc_exit(1) };
}

struct Policy {
    oid: pg_sys::Oid,
    name: String,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn llm_cost_retention_worker(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let dboid = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(dboid), None);
    // Runs as the bootstrap superuser: nothing a database owner creates in public may resolve.
    spi::pin_for_process();

    // Installed, and at a version with retention (an older one has nothing to purge).
    let installed = in_transaction(|| {
        spi::get_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'llm_cost')
                AND pg_catalog.to_regclass('llm_cost.retention_policies') IS NOT NULL",
        )
        .ok()
        .flatten()
        .unwrap_or(false)
    });
    if installed != Ok(true) {
        return; // not installed here: nothing to do until the next round
    }
    // A schema older than this library (ALTER EXTENSION llm_cost UPDATE not run yet) would purge
    // with the worker's rights: wait for the update.
    let current = in_transaction(|| {
        spi::get_one::<bool>(
            "SELECT pg_catalog.to_regprocedure('llm_cost._retention_purge_batch(oid, text, timestamptz, integer)') IS NOT NULL",
        )
        .ok()
        .flatten()
        .unwrap_or(false)
    });
    if current != Ok(true) {
        log!("llm_cost retention: the llm_cost schema of this database is older than the library; nothing is purged until ALTER EXTENSION llm_cost UPDATE");
        return;
    }
    // Budget crossings no committing writer saw (writers of one group that committed together).
    let swept = in_transaction(|| {
        let here = spi::get_one::<bool>(
            "SELECT pg_catalog.to_regprocedure('llm_cost._budget_sweep()') IS NOT NULL",
        )
        .ok()
        .flatten()
        .unwrap_or(false);
        if here {
            spi::get_one::<i64>("SELECT llm_cost._budget_sweep()")
                .ok()
                .flatten()
                .unwrap_or(0)
        } else {
            0
        }
    });
    match swept {
        Ok(n) if n > 0 => log!("llm_cost: {n} budget alert(s) recorded by the background worker"),
        Ok(_) => {}
        Err(e) => log!("llm_cost: budget check failed: {e}"),
    }
    // Citus (0.12.0): a coordinator that got its first workers after CREATE EXTENSION gets its
    // price catalog onto them (reference tables) within a naptime.
    let setup = in_transaction(|| {
        let due = spi::get_one::<bool>(
            "SELECT pg_catalog.to_regprocedure('llm_cost.citus_setup()') IS NOT NULL
                AND pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL",
        )
        .ok()
        .flatten()
        .unwrap_or(false)
            && spi::get_one::<bool>(
                "SELECT llm_cost._citus_coordinator()
                    AND EXISTS (SELECT 1 FROM pg_catalog.unnest(ARRAY['llm_cost.providers', 'llm_cost.model_prices', 'llm_cost.model_aliases']) t
                                 WHERE (SELECT d.kind FROM llm_cost._citus_distribution(t::pg_catalog.regclass) d) IS DISTINCT FROM 'reference')",
            )
            .ok()
            .flatten()
            .unwrap_or(false);
        if due {
            spi::get_one::<String>("SELECT llm_cost.citus_setup()")
                .map_err(|e| e.to_string())
                .map(|m| m.unwrap_or_default())
                .map(Some)
        } else {
            Ok(None)
        }
    });
    match setup {
        Ok(Ok(Some(msg))) => log!("llm_cost: {msg}"),
        Ok(Err(e)) | Err(e) => {
            log!("llm_cost: could not put the price catalog on the Citus workers: {e}")
        }
        _ => {}
    }
    // Anomaly watches (0.12.0): each in its own transaction, so one that fails (its rollup
    // changed under it) does not hold up the others; the failure is logged.
    let watches = in_transaction(|| {
        spi::connect(|c| {
            let mut v = Vec::new();
            if c.select(
                "SELECT 1 WHERE pg_catalog.to_regprocedure('llm_cost._anomaly_sweep(bigint)') IS NOT NULL",
                None,
                &[],
            )?
            .is_empty()
            {
                return Ok(v);
            }
            for r in c.select(
                "SELECT w.id FROM llm_cost.anomaly_watches w ORDER BY w.id",
                None,
                &[],
            )? {
                v.extend(r.get::<i64>(1)?);
            }
            Ok::<_, pgrx::spi::Error>(v)
        })
    });
    for id in watches.ok().and_then(|w| w.ok()).unwrap_or_default() {
        match in_transaction(move || {
            spi::get_one_with_args::<i64>("SELECT llm_cost._anomaly_sweep($1)", &[id.into()])
        }) {
            Ok(Ok(Some(n))) if n > 0 => {
                log!("llm_cost: {n} anomaly alert(s) recorded for watch {id}")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log!("llm_cost: anomaly watch {id} failed: {e}"),
            Err(e) => log!("llm_cost: anomaly watch {id} failed: {e}"),
        }
    }
    if FOLD.get() {
        fold_rollups();
    }
    if !ENABLED.get() {
        return;
    }
    let policies = in_transaction(|| {
        spi::connect(|c| {
            let mut v = Vec::new();
            for r in c.select(
                "SELECT p.log_table::pg_catalog.oid, p.log_table::pg_catalog.text FROM llm_cost.retention_policies p
                   JOIN pg_catalog.pg_class c ON c.oid = p.log_table ORDER BY 2",
                None,
                &[],
            )? {
                v.push(Policy {
                    oid: r.get(1)?.unwrap_or(pg_sys::InvalidOid),
                    name: r.get(2)?.unwrap_or_default(),
                });
            }
            Ok::<_, pgrx::spi::Error>(v)
        })
    });
    let policies = match policies {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            log!("llm_cost retention: could not read policies: {e}");
            return;
        }
        Err(e) => {
            log!("llm_cost retention: could not read policies: {e}");
            return;
        }
    };
    // Policies whose table is gone (dropped while event triggers were off) are cleaned up.
    let _ = in_transaction(|| {
        spi::run(
            "DELETE FROM llm_cost.retention_policies p WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = p.log_table)",
        )
    });
    for p in policies {
        if BackgroundWorker::sigterm_received() {
            return;
        }
        purge_table(&p);
    }
}

/// The pause after a batch that took `took`: at least `delay_ms`, and long enough that deleting
/// takes at most `duty_cycle` percent of the time (`took` x (100 - duty) / duty).
fn pause_after(took: Duration, delay_ms: i32, duty_cycle: i32) -> Duration {
    let floor = Duration::from_millis(delay_ms.max(0) as u64);
    let duty = duty_cycle.clamp(1, 100) as u32;
    floor.max(took * (100 - duty) / duty)
}

/// The worker's own `wal_compression` (its session only), from
/// `llm_cost.retention_wal_compression`, where the server's is off: the purge's full-page images
/// are most of its WAL. A value this server cannot take is reported (WARNING) and left out.
fn compress_own_wal() {
    let wanted = WAL_COMPRESSION
        .get()
        .map(|v| v.to_string_lossy().trim().to_ascii_lowercase())
        .unwrap_or_default();
    if wanted.is_empty() || wanted == "off" {
        return;
    }
    // SAFETY: reads and sets a core GUC of this (superuser) worker's session inside a
    // transaction; NUL-terminated name and value; a bad value is a WARNING, not an error.
    unsafe {
        let now = pg_sys::GetConfigOption(c"wal_compression".as_ptr(), false, false);
        let now = if now.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(now).to_string_lossy().into_owned()
        };
        if now != "off" {
            return; // the server's (or an earlier round's) setting stands
        }
        let Ok(v) = std::ffi::CString::new(wanted) else {
            return;
        };
        pg_sys::set_config_option(
            c"wal_compression".as_ptr(),
            v.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SET,
            true,
            pg_sys::WARNING as i32,
            false,
        );
    }
}

fn purge_table(p: &Policy) {
    let _ = in_transaction(compress_own_wal);
    let started = in_transaction(|| {
        spi::get_one::<pgrx::datum::TimestampWithTimeZone>("SELECT clock_timestamp()")
            .ok()
            .flatten()
    })
    .ok()
    .flatten();
    let oid = p.oid;
    // Target and whole partitions first, in one short transaction.
    let target = in_transaction(move || {
        let (time_col, cutoff) =
            spi::get_two_with_args::<String, pgrx::datum::TimestampWithTimeZone>(
                "SELECT time_col, cutoff FROM llm_cost._retention_target($1)",
                &[oid.into()],
            )
            .unwrap_or((None, None));
        let (Some(time_col), Some(cutoff)) = (time_col, cutoff) else {
            return None;
        };
        let parts = spi::get_one_with_args::<Vec<i32>>(
            "SELECT llm_cost._retention_drop_partitions($1, $2, $3)",
            &[oid.into(), time_col.clone().into(), cutoff.into()],
        )
        .unwrap_or_else(|e| crate::pg::fail::internal(format!("{e}")))
        .unwrap_or_default();
        Some((
            time_col,
            cutoff,
            parts.first().copied().unwrap_or(0),
            parts.get(1).copied().unwrap_or(0),
        ))
    });
    let mut rows: i64 = 0;
    let mut error: Option<String> = None;
    let (mut cutoff, mut parts, mut skipped) = (None, 0, 0);
    match target {
        Ok(None) => return, // policy or tracking gone meanwhile
        Err(e) => error = Some(e),
        Ok(Some((time_col, c, n, k))) => {
            cutoff = Some(c);
            parts = n;
            skipped = k;
            loop {
                if BackgroundWorker::sigterm_received() {
                    error = Some("interrupted by shutdown; the next run continues".into());
                    break;
                }
                reload_config_if_asked();
                let batch = BATCH_SIZE.get().max(1);
                let tc = time_col.clone();
                let batch_started = Instant::now();
                let r = in_transaction(move || {
                    spi::get_one_with_args::<i64>(
                        "SELECT llm_cost._retention_purge_batch($1, $2, $3, $4)",
                        &[oid.into(), tc.into(), c.into(), batch.into()],
                    )
                    .unwrap_or_else(|e| crate::pg::fail::internal(format!("{e}")))
                    .unwrap_or(0)
                });
                match r {
                    Ok(n) => {
                        rows += n;
                        if n < batch as i64 {
                            break;
                        }
                        let delay = pause_after(
                            batch_started.elapsed(),
                            BATCH_DELAY.get(),
                            DUTY_CYCLE.get(),
                        );
                        if !delay.is_zero() && !BackgroundWorker::wait_latch(Some(delay)) {
                            error = Some("interrupted by shutdown; the next run continues".into());
                            break;
                        }
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
        }
    }
    if let Some(e) = &error {
        log!("llm_cost retention: purge of {} failed: {e}", p.name);
    }
    let name = p.name.clone();
    let _ = in_transaction(move || {
        spi::run_with_args(
            "SELECT llm_cost._record_run($1, $2, $3, $4, $5, $6, $7, 'worker', $8)",
            &[
                oid.into(),
                name.into(),
                started.into(),
                cutoff.into(),
                rows.into(),
                parts.into(),
                error.into(),
                skipped.into(),
            ],
        )
    });
}

/// Drops the partitions of `table` wholly past the cutoff, as the table's owner under a
/// security-restricted operation, waiting at most `llm_cost.retention_lock_timeout` for each
/// partition's lock (a partition it could not lock is left for the next round). Returns
/// {dropped, skipped}. The caller must have the owner's rights (the worker runs as superuser).
#[pg_extern(volatile, parallel_unsafe)]
fn _retention_drop_partitions(
    table: pg_sys::Oid,
    time_col: &str,
    cutoff: pgrx::datum::TimestampWithTimeZone,
) -> Vec<i32> {
    let time_col = time_col.to_string();
    crate::pg::privilege::as_table_owner(table, "purge it", move || {
        crate::pg::privilege::set_for_nest(
            c"lock_timeout",
            &format!("{}ms", LOCK_TIMEOUT.get().max(1)),
        );
        let (d, k) = spi::get_two_with_args::<i32, i32>(
            "SELECT dropped, skipped FROM llm_cost._drop_old_partitions($1, $2, $3)",
            &[table.into(), time_col.into(), cutoff.into()],
        )
        .unwrap_or_else(|e| crate::pg::fail::internal(format!("{e}")));
        vec![d.unwrap_or(0), k.unwrap_or(0)]
    })
}

/// Deletes at most `batch` rows older than the cutoff, as the table's owner under a
/// security-restricted operation (its triggers run with the owner's rights, never the
/// purger's). Returns how many.
#[pg_extern(volatile, parallel_unsafe)]
fn _retention_purge_batch(
    table: pg_sys::Oid,
    time_col: &str,
    cutoff: pgrx::datum::TimestampWithTimeZone,
    batch: i32,
) -> i64 {
    let time_col = time_col.to_string();
    crate::pg::privilege::as_table_owner(table, "purge it", move || {
        spi::get_one_with_args::<i64>(
            "SELECT llm_cost._purge_batch($1, $2, $3, $4)",
            &[table.into(), time_col.into(), cutoff.into(), batch.into()],
        )
        .unwrap_or_else(|e| crate::pg::fail::internal(format!("{e}")))
        .unwrap_or(0)
    })
}

/// Records one purge in llm_cost.retention_runs (and prunes old records). Its caller must have
/// the rights of the table's owner: nobody forges runs of somebody else's table.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
fn _record_run(
    table: pg_sys::Oid,
    name: &str,
    started: Option<pgrx::datum::TimestampWithTimeZone>,
    cutoff: Option<pgrx::datum::TimestampWithTimeZone>,
    rows: i64,
    parts: i32,
    error: Option<&str>,
    by: &str,
    skipped: default!(i32, 0),
) {
    if crate::pg::privilege::owner_of(table).is_none() {
        return; // dropped meanwhile: its policy went with it
    }
    crate::pg::privilege::require_owner_rights(table, "record its retention runs");
    let (name, error, by) = (name.to_string(), error.map(str::to_string), by.to_string());
    crate::pg::privilege::as_extension_owner(move || {
        spi::run_with_args(
            "SELECT llm_cost._record_run_as_owner($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                table.into(),
                name.into(),
                started.into(),
                cutoff.into(),
                rows.into(),
                parts.into(),
                error.into(),
                by.into(),
                skipped.into(),
            ],
        )
        .unwrap_or_else(|e| {
            crate::pg::fail::internal(format!("llm_cost: could not record the retention run: {e}"))
        })
    })
}

/// Whether this server loaded llm_cost from shared_preload_libraries (the worker runs). Readable
/// by every role, unlike the setting itself.
#[pg_extern(stable, parallel_safe)]
fn _preloaded() -> bool {
    PRELOADED.load(std::sync::atomic::Ordering::Relaxed)
}

pub static PRELOADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(test)]
mod unit_tests {
    use super::{pause_after, round_order};
    use std::time::Duration;

    #[test]
    fn the_pause_keeps_deleting_to_its_share_of_the_time() {
        let ms = Duration::from_millis;
        // 25%: three times the batch's time, never under the batch delay.
        assert_eq!(pause_after(ms(80), 100, 25), ms(240));
        assert_eq!(pause_after(ms(20), 100, 25), ms(100));
        // 100%: the batch delay only; 0 and 100: no pause at all.
        assert_eq!(pause_after(ms(80), 100, 100), ms(100));
        assert_eq!(pause_after(ms(80), 0, 100), ms(0));
        // 50%: as long as the batch; out-of-range settings are clamped.
        assert_eq!(pause_after(ms(80), 0, 50), ms(80));
        assert_eq!(pause_after(ms(10), -5, 0), ms(990));
    }

    #[test]
    fn every_database_gets_its_turn_however_few_slots() {
        // 16 databases, 6 free slots per round: the one skipped first leads the next round.
        let dbs: Vec<u32> = (1..=16).map(|i| 16384 + i).collect();
        let mut first = None;
        let mut served = std::collections::HashSet::new();
        for round in 0..3 {
            let order = round_order(&dbs, first);
            assert_eq!(order.len(), 16, "round {round}");
            served.extend(order[..6].iter().copied());
            first = Some(order[6]);
        }
        assert_eq!(served.len(), 16);
        // A skipped database that disappeared: the next one in OID order leads.
        assert_eq!(round_order(&[10, 20, 30], Some(25)), vec![30, 10, 20]);
        assert_eq!(round_order(&[10, 20, 30], Some(99)), vec![10, 20, 30]);
        assert_eq!(round_order(&[10, 20, 30], None), vec![10, 20, 30]);
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::test_support::{error_of, one};
    use pgrx::prelude::*;

    #[pg_test]
    fn run_retention_purges_old_rows_and_keeps_rollups() {
        Spi::run(
            "INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens, output_tokens)
             SELECT now() - g * interval '1 day', 't', 'gpt-4o', 1000, 100 FROM generate_series(0, 199) g",
        )
        .unwrap();
        let before =
            one("SELECT sum(cost_usd)::text || '/' || sum(requests) FROM llm_cost.usage_daily")
                .unwrap();
        Spi::run("SELECT llm_cost.set_retention('llm_cost.usage_events', '90 days')").unwrap();
        assert_eq!(
            one("SELECT format('%s %s %s', log_table, rows_deleted, coalesce(error, 'ok')) FROM llm_cost.run_retention()").as_deref(),
            Some("llm_cost.usage_events 109 ok")
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.usage_events").unwrap(),
            Some(91)
        );
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at < now() - interval '90 days'").unwrap(), Some(0));
        // Rollups are a ledger: unchanged.
        assert_eq!(
            one("SELECT sum(cost_usd)::text || '/' || sum(requests) FROM llm_cost.usage_daily")
                .unwrap(),
            before
        );
        assert_eq!(
            one("SELECT rows_deleted::text || ' ' || run_by FROM llm_cost.retention_last_runs")
                .as_deref(),
            Some("109 postgres")
        );
        // A second run finds nothing.
        assert_eq!(
            one("SELECT rows_deleted::text FROM llm_cost.run_retention()").as_deref(),
            Some("0")
        );
        assert!(
            Spi::get_one::<bool>("SELECT llm_cost.drop_retention('llm_cost.usage_events')")
                .unwrap()
                .unwrap()
        );
        assert!(
            !Spi::get_one::<bool>("SELECT llm_cost.drop_retention('llm_cost.usage_events')")
                .unwrap()
                .unwrap()
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.run_retention()").unwrap(),
            Some(0)
        );
    }

    #[pg_test]
    fn partitions_past_the_cutoff_are_dropped() {
        Spi::run(
            "CREATE TABLE public.plog (created_at timestamptz NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric)
               PARTITION BY RANGE (created_at);
             CREATE TABLE public.plog_old1 PARTITION OF public.plog FOR VALUES FROM ('2020-01-01') TO ('2020-02-01');
             CREATE TABLE public.plog_old2 PARTITION OF public.plog FOR VALUES FROM ('2020-02-01') TO ('2020-03-01');
             CREATE TABLE public.plog_now PARTITION OF public.plog FOR VALUES FROM ('2020-03-01') TO ('2100-01-01');
             CREATE INDEX ON public.plog (created_at);",
        )
        .unwrap();
        Spi::run("SELECT llm_cost.track('public.plog')").unwrap();
        Spi::run(
            "SELECT llm_cost.create_rollup('public.plog_monthly', 'public.plog', 'month', '{}')",
        )
        .unwrap();
        Spi::run(
            "INSERT INTO public.plog SELECT timestamptz '2020-01-01' + g * interval '1 hour', 'gpt-4o', 10, 10 FROM generate_series(0, 24 * 70) g;
             INSERT INTO public.plog SELECT now() - g * interval '1 hour', 'gpt-4o', 10, 10 FROM generate_series(0, 10) g;",
        )
        .unwrap();
        let before = one("SELECT sum(requests)::text FROM public.plog_monthly").unwrap();
        // Cutoff falls in the middle of the third partition: two dropped, the rest deleted by rows.
        Spi::run("SELECT llm_cost.set_retention('public.plog', now() - timestamptz '2020-03-05')")
            .unwrap();
        assert_eq!(
            one("SELECT format('%s %s', partitions_dropped, coalesce(error, 'ok')) FROM llm_cost.run_retention()").as_deref(),
            Some("2 ok")
        );
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT count(*) FROM pg_class WHERE relname IN ('plog_old1', 'plog_old2')"
            )
            .unwrap(),
            Some(0)
        );
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT count(*) FROM public.plog WHERE created_at < '2020-03-04 23:00+00'"
            )
            .unwrap(),
            Some(0)
        );
        assert_eq!(
            one("SELECT sum(requests)::text FROM public.plog_monthly").unwrap(),
            before
        );
    }

    #[pg_test]
    fn policy_errors_and_cleanup() {
        Spi::run("CREATE TABLE public.rlog (created_at timestamptz, model text, input_tokens int, output_tokens int, cost_usd numeric)").unwrap();
        assert_eq!(
            error_of("PERFORM llm_cost.set_retention('public.rlog', '1 day')"),
            "55000: table public.rlog is not tracked by llm_cost"
        );
        Spi::run("SELECT llm_cost.track('public.rlog')").unwrap();
        assert_eq!(
            error_of("PERFORM llm_cost.set_retention('public.rlog', '-1 day')"),
            "22023: keep must be a positive interval, not -1 days"
        );
        Spi::run("SELECT llm_cost.set_retention('public.rlog', '1 day')").unwrap();
        Spi::run("DROP TABLE public.rlog").unwrap();
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.retention_policies").unwrap(),
            Some(0)
        );
    }

    /// Hardening item 2: the purge runs as the table's owner under a security-restricted
    /// operation: a trigger of the owner's that would make itself superuser when run by one
    /// gains nothing, and sees the owner as current_user.
    #[pg_test]
    fn purge_runs_as_the_table_owner_not_as_the_purger() {
        Spi::run(
            "CREATE ROLE t_evil NOLOGIN; CREATE SCHEMA t_evil_s AUTHORIZATION t_evil;
             SET ROLE t_evil;
             CREATE TABLE t_evil_s.calls (created_at timestamptz NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric);
             CREATE TABLE t_evil_s.seen (who text, sec boolean);
             CREATE FUNCTION t_evil_s.grab() RETURNS trigger LANGUAGE plpgsql AS $f$
             BEGIN
                 INSERT INTO t_evil_s.seen VALUES (current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));
                 IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                     EXECUTE 'ALTER ROLE t_evil SUPERUSER';
                 END IF;
                 RETURN OLD;
             END $f$;
             CREATE TRIGGER grab BEFORE DELETE ON t_evil_s.calls FOR EACH ROW EXECUTE FUNCTION t_evil_s.grab();
             SELECT llm_cost.track('t_evil_s.calls');
             INSERT INTO t_evil_s.calls VALUES (now() - interval '10 days', 'gpt-4o', 1, 1), (now(), 'gpt-4o', 1, 1);
             RESET ROLE;
             SELECT llm_cost.set_retention('t_evil_s.calls', '1 day');",
        )
        .unwrap();
        // A superuser purges (as pg_cron or an admin would).
        assert_eq!(
            one("SELECT format('%s %s', rows_deleted, coalesce(error, 'ok')) FROM llm_cost.run_retention() WHERE log_table = 't_evil_s.calls'::regclass").as_deref(),
            Some("1 ok")
        );
        assert_eq!(
            one("SELECT rolsuper::text FROM pg_roles WHERE rolname = 't_evil'").as_deref(),
            Some("false")
        );
        assert_eq!(
            one("SELECT string_agg(who || ' ' || sec, ',') FROM t_evil_s.seen").as_deref(),
            Some("t_evil false")
        );
        // Back to the purger's identity afterwards.
        assert_eq!(
            one("SELECT current_user::text").as_deref(),
            Some("postgres")
        );
        // A trigger that tries to change the session (SET ROLE) fails the purge of that table only.
        Spi::run(
            "CREATE OR REPLACE FUNCTION t_evil_s.grab() RETURNS trigger LANGUAGE plpgsql AS $f$
             BEGIN EXECUTE 'SET ROLE postgres'; RETURN OLD; END $f$;
             INSERT INTO t_evil_s.calls VALUES (now() - interval '10 days', 'gpt-4o', 1, 1);",
        )
        .unwrap();
        let e = one("SELECT error FROM llm_cost.run_retention() WHERE log_table = 't_evil_s.calls'::regclass").unwrap_or_default();
        assert!(
            e.starts_with("cannot set parameter \"role\" within security-"),
            "{e}"
        );
        assert_eq!(
            one("SELECT current_user::text").as_deref(),
            Some("postgres")
        );
    }
}
