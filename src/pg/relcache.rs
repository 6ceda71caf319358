//! Relation-change notifications (plumbing): one relation cache callback per backend, handing
//! every invalidation to the functions features register (`on_relation_change`, set up by
//! `_PG_init`). Plumbing calls no feature by name.

use pgrx::prelude::*;
use std::cell::Cell;

thread_local! {
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Called on every relation cache invalidation (InvalidOid: all relations), set up by
/// `_PG_init`: the features that keep per-relation state forget it (plumbing calls no feature).
static RELATION_LISTENERS: std::sync::Mutex<Vec<fn(pg_sys::Oid)>> =
    std::sync::Mutex::new(Vec::new());

/// Adds a function called with the relation of every relation cache invalidation.
pub fn on_relation_change(f: fn(pg_sys::Oid)) {
    if let Ok(mut l) = RELATION_LISTENERS.lock() {
        l.push(f);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let listeners: Vec<fn(pg_sys::Oid)> = RELATION_LISTENERS
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    for f in listeners {
        f(relid);
    }
}

/// Registers the relation cache callback in this backend (once).
pub fn register_callback() {
    if !CALLBACK_REGISTERED.with(|c| c.get()) {
        // SAFETY: registered once per backend; the callback is a pg_guard'ed extern fn.
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0))
        };
        CALLBACK_REGISTERED.with(|c| c.set(true));
    }
}
