//! The transaction's lifecycle (plumbing): PostgreSQL's transaction and subtransaction
//! callbacks, registered once per backend, handed to the features that keep state pending until
//! the transaction ends (`pg::pending` keeps it per subtransaction). A participant writes what is
//! pending just before commit or PREPARE, drops it when the transaction ends, and follows
//! subtransactions: an aborted one drops its own entries, a committed one hands them to its
//! parent. `_PG_init` (lib.rs) lists the participants, in the order they run.

use pgrx::prelude::*;
use std::cell::Cell;

/// One feature's part in the transaction's lifecycle.
pub struct Participant {
    /// PRE_COMMIT and PRE_PREPARE: write what is pending, still inside the transaction.
    pub pre_commit: fn(),
    /// The transaction committed, aborted (`false`) or was prepared (`true`).
    pub end: fn(bool),
    /// Subtransaction `my` aborted.
    pub sub_abort: fn(pg_sys::SubTransactionId),
    /// Subtransaction `my` committed into `parent`.
    pub sub_commit: fn(pg_sys::SubTransactionId, pg_sys::SubTransactionId),
}

static PARTICIPANTS: std::sync::Mutex<Vec<&'static Participant>> =
    std::sync::Mutex::new(Vec::new());

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    static PREPARING: Cell<bool> = const { Cell::new(false) };
    static IN_PRE_COMMIT: Cell<bool> = const { Cell::new(false) };
}

/// Whether the participants' pre-commit work is running now (in a backend whose callbacks are
/// registered): statements run then are llm_cost's own, not the application's.
pub fn in_pre_commit() -> bool {
    IN_PRE_COMMIT.with(|p| p.get())
}

/// Whether the pre-commit work running now is that of PREPARE TRANSACTION (which may not NOTIFY).
pub fn preparing() -> bool {
    PREPARING.with(|p| p.get())
}

/// Adds a participant (from `_PG_init`); they run in the order they joined.
pub fn join(p: &'static Participant) {
    if let Ok(mut l) = PARTICIPANTS.lock() {
        l.push(p);
    }
}

fn participants() -> Vec<&'static Participant> {
    PARTICIPANTS.lock().map(|l| l.clone()).unwrap_or_default()
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            PREPARING.with(|p| p.set(event == XACT_EVENT_PRE_PREPARE));
            IN_PRE_COMMIT.with(|p| p.set(true));
            participants().iter().for_each(|p| (p.pre_commit)());
            IN_PRE_COMMIT.with(|p| p.set(false));
            PREPARING.with(|p| p.set(false));
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_COMMIT => {
            PREPARING.with(|p| p.set(false));
            IN_PRE_COMMIT.with(|p| p.set(false));
            participants().iter().for_each(|p| (p.end)(false))
        }
        XACT_EVENT_PREPARE => participants().iter().for_each(|p| (p.end)(true)),
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        participants().iter().for_each(|p| (p.sub_abort)(my));
    } else if event == pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB {
        participants()
            .iter()
            .for_each(|p| (p.sub_commit)(my, parent));
    }
}

/// Runs `f` with an active snapshot: before commit no statement is running, and SQL needs one.
pub fn with_snapshot<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: pushes the transaction snapshot when none is active, popped below.
    unsafe {
        if pg_sys::ActiveSnapshotSet() {
            return f();
        }
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let r = f();
        pg_sys::PopActiveSnapshot();
        r
    }
}

/// The running subtransaction's id (the top transaction's when there is none).
pub fn current_subtransaction() -> pg_sys::SubTransactionId {
    // SAFETY: reads the backend's transaction state; called inside a transaction.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

/// When the running transaction started (the event time of rows that name none).
pub fn transaction_start() -> i64 {
    // SAFETY: reads the backend's transaction state; called inside a transaction.
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

/// Registers the callbacks in this backend (once): called by every trigger and hook that may
/// leave something pending, before it does.
pub fn ensure_registered() {
    if !REGISTERED.with(|c| c.get()) {
        crate::pg::relcache::register_callback();
        // SAFETY: registered once per backend; the callbacks are pg_guard'ed extern fns.
        unsafe {
            pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
        }
        REGISTERED.with(|c| c.set(true));
    }
}
