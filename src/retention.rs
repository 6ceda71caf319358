//! Retention: the background launcher and the per-database purge workers (Postgres shell; the
//! purge itself is SQL in `sql/retention.sql`).
//!
//! With `llm_cost` in `shared_preload_libraries`, a launcher (connected to the `postgres`
//! database) wakes every `llm_cost.retention_naptime` seconds and starts one short-lived worker
//! per database that allows connections. The worker exits at once where the extension is not
//! installed; elsewhere it purges each table with a policy in batches of
//! `llm_cost.retention_batch_size` rows, one transaction each, records the run, and exits. Short
//! runs keep databases free for DROP DATABASE between runs; a database that creates the
//! extension is served by the next round, one that drops it is left alone.

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PgTryBuilder};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub static NAPTIME: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static HISTORY_DAYS: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static BATCH_DELAY: GucSetting<i32> = GucSetting::<i32>::new(100);

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
        c"Off: no worker is started (llm_cost.run_retention() still works).",
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
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    }
}

/// Runs `f` in its own transaction. An ERROR aborts that transaction and comes back as Err with
/// its message: the worker logs it, records it and goes on.
fn in_transaction<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
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
                | pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => r.message().to_string(),
            };
            Err(msg)
        })
        .execute();
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

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn llm_cost_retention_launcher(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(Some("postgres"), None);
    log!("llm_cost retention launcher started");
    let mut workers: HashMap<u32, DynamicBackgroundWorker> = HashMap::new();
    let mut next_round = Instant::now();
    loop {
        reload_config_if_asked();
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
        if ENABLED.get() {
            let dbs = in_transaction(|| {
                Spi::connect(|c| {
                    let mut v = Vec::new();
                    for r in c.select(
                        "SELECT oid, datname::text FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY oid",
                        None,
                        &[],
                    )? {
                        v.push((r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid), r.get::<String>(2)?.unwrap_or_default()));
                    }
                    Ok::<_, pgrx::spi::Error>(v)
                })
            });
            match dbs {
                Ok(Ok(dbs)) => {
                    // Forget workers that finished; start one for every database without one.
                    workers.retain(|_, w| matches!(w.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted)));
                    for (oid, name) in dbs {
                        if workers.contains_key(&oid.to_u32()) {
                            continue;
                        }
                        let started = BackgroundWorkerBuilder::new(&format!("llm_cost retention worker {name}"))
                            .set_type("llm_cost retention worker")
                            .set_function("llm_cost_retention_worker")
                            .set_library("llm_cost")
                            .enable_spi_access()
                            .set_argument(Some(pg_sys::Datum::from(oid)))
                            .set_notify_pid(unsafe { pg_sys::MyProcPid })
                            .set_restart_time(None)
                            .load_dynamic();
                        match started {
                            Ok(w) => {
                                workers.insert(oid.to_u32(), w);
                            }
                            Err(_) => {
                                // No free worker slot (max_worker_processes): next round.
                                debug1!("llm_cost: could not start a retention worker for database {name}");
                            }
                        }
                    }
                }
                Ok(Err(e)) => log!("llm_cost retention launcher: {e}"),
                Err(e) => log!("llm_cost retention launcher: {e}"),
            }
        }
        if BackgroundWorker::sigterm_received() {
            break;
        }
    }
    log!("llm_cost retention launcher stopped");
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

    // Installed, and at a version with retention (an older one has nothing to purge).
    let installed = in_transaction(|| {
        Spi::get_one::<bool>(
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
    let policies = in_transaction(|| {
        Spi::connect(|c| {
            let mut v = Vec::new();
            for r in c.select(
                "SELECT p.log_table::oid, p.log_table::text FROM llm_cost.retention_policies p
                   JOIN pg_catalog.pg_class c ON c.oid = p.log_table ORDER BY 2",
                None,
                &[],
            )? {
                v.push(Policy { oid: r.get(1)?.unwrap_or(pg_sys::InvalidOid), name: r.get(2)?.unwrap_or_default() });
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
        Spi::run(
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

fn purge_table(p: &Policy) {
    let started = in_transaction(|| Spi::get_one::<pgrx::datum::TimestampWithTimeZone>("SELECT clock_timestamp()").ok().flatten())
        .ok()
        .flatten();
    let oid = p.oid;
    // Target and whole partitions first, in one short transaction.
    let target = in_transaction(move || {
        let (time_col, cutoff) = Spi::get_two_with_args::<String, pgrx::datum::TimestampWithTimeZone>(
            "SELECT time_col, cutoff FROM llm_cost._retention_target($1)",
            &[oid.into()],
        )
        .unwrap_or((None, None));
        let (Some(time_col), Some(cutoff)) = (time_col, cutoff) else { return None };
        let parts = Spi::get_one_with_args::<i32>(
            "SELECT llm_cost._drop_old_partitions($1, $2, $3)",
            &[oid.into(), time_col.clone().into(), cutoff.into()],
        )
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or(0);
        Some((time_col, cutoff, parts))
    });
    let mut rows: i64 = 0;
    let mut error: Option<String> = None;
    let (mut cutoff, mut parts) = (None, 0);
    match target {
        Ok(None) => return, // policy or tracking gone meanwhile
        Err(e) => error = Some(e),
        Ok(Some((time_col, c, n))) => {
            cutoff = Some(c);
            parts = n;
            loop {
                if BackgroundWorker::sigterm_received() {
                    error = Some("interrupted by shutdown; the next run continues".into());
                    break;
                }
                reload_config_if_asked();
                let batch = BATCH_SIZE.get().max(1);
                let tc = time_col.clone();
                let r = in_transaction(move || {
                    Spi::get_one_with_args::<i64>(
                        "SELECT llm_cost._purge_batch($1, $2, $3, $4)",
                        &[oid.into(), tc.into(), c.into(), batch.into()],
                    )
                    .unwrap_or_else(|e| error!("{e}"))
                    .unwrap_or(0)
                });
                match r {
                    Ok(n) => {
                        rows += n;
                        if n < batch as i64 {
                            break;
                        }
                        let delay = BATCH_DELAY.get();
                        if delay > 0 && !BackgroundWorker::wait_latch(Some(Duration::from_millis(delay as u64))) {
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
        Spi::run_with_args(
            "SELECT llm_cost._record_run($1, $2, $3, $4, $5, $6, $7, 'worker')",
            &[oid.into(), name.into(), started.into(), cutoff.into(), rows.into(), parts.into(), error.into()],
        )
    });
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
        let before = one("SELECT sum(cost_usd)::text || '/' || sum(requests) FROM llm_cost.usage_daily").unwrap();
        Spi::run("SELECT llm_cost.set_retention('llm_cost.usage_events', '90 days')").unwrap();
        assert_eq!(
            one("SELECT format('%s %s %s', log_table, rows_deleted, coalesce(error, 'ok')) FROM llm_cost.run_retention()").as_deref(),
            Some("llm_cost.usage_events 109 ok")
        );
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.usage_events").unwrap(), Some(91));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at < now() - interval '90 days'").unwrap(), Some(0));
        // Rollups are a ledger: unchanged.
        assert_eq!(one("SELECT sum(cost_usd)::text || '/' || sum(requests) FROM llm_cost.usage_daily").unwrap(), before);
        assert_eq!(one("SELECT rows_deleted::text || ' ' || run_by FROM llm_cost.retention_last_runs").as_deref(), Some("109 postgres"));
        // A second run finds nothing.
        assert_eq!(one("SELECT rows_deleted::text FROM llm_cost.run_retention()").as_deref(), Some("0"));
        assert!(Spi::get_one::<bool>("SELECT llm_cost.drop_retention('llm_cost.usage_events')").unwrap().unwrap());
        assert!(!Spi::get_one::<bool>("SELECT llm_cost.drop_retention('llm_cost.usage_events')").unwrap().unwrap());
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.run_retention()").unwrap(), Some(0));
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
        Spi::run("SELECT llm_cost.create_rollup('public.plog_monthly', 'public.plog', 'month', '{}')").unwrap();
        Spi::run(
            "INSERT INTO public.plog SELECT timestamptz '2020-01-01' + g * interval '1 hour', 'gpt-4o', 10, 10 FROM generate_series(0, 24 * 70) g;
             INSERT INTO public.plog SELECT now() - g * interval '1 hour', 'gpt-4o', 10, 10 FROM generate_series(0, 10) g;",
        )
        .unwrap();
        let before = one("SELECT sum(requests)::text FROM public.plog_monthly").unwrap();
        // Cutoff falls in the middle of the third partition: two dropped, the rest deleted by rows.
        Spi::run("SELECT llm_cost.set_retention('public.plog', now() - timestamptz '2020-03-05')").unwrap();
        assert_eq!(
            one("SELECT format('%s %s', partitions_dropped, coalesce(error, 'ok')) FROM llm_cost.run_retention()").as_deref(),
            Some("2 ok")
        );
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM pg_class WHERE relname IN ('plog_old1', 'plog_old2')").unwrap(), Some(0));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM public.plog WHERE created_at < '2020-03-04 23:00+00'").unwrap(), Some(0));
        assert_eq!(one("SELECT sum(requests)::text FROM public.plog_monthly").unwrap(), before);
    }


    #[pg_test]
    fn policy_errors_and_cleanup() {
        Spi::run("CREATE TABLE public.rlog (created_at timestamptz, model text, input_tokens int, output_tokens int, cost_usd numeric)").unwrap();
        assert_eq!(error_of("PERFORM llm_cost.set_retention('public.rlog', '1 day')"), "55000: table public.rlog is not tracked by llm_cost");
        Spi::run("SELECT llm_cost.track('public.rlog')").unwrap();
        assert_eq!(error_of("PERFORM llm_cost.set_retention('public.rlog', '-1 day')"), "22023: keep must be a positive interval, not -1 days");
        Spi::run("SELECT llm_cost.set_retention('public.rlog', '1 day')").unwrap();
        Spi::run("DROP TABLE public.rlog").unwrap();
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM llm_cost.retention_policies").unwrap(), Some(0));
    }
}
