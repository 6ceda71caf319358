//! Images shared by every backend of the server (plumbing): immutable byte images in dynamic
//! shared memory, one per (database, relation, key), published once and read in place by any
//! backend. The price catalog keeps one image per catalog version here (`pricing::catalog`).
//! Available only when llm_cost is in `shared_preload_libraries` (the table below lives in the
//! main shared memory segment); without it every caller keeps its own copy.
//!
//! # Locking protocol (as pg_stat_statements writes its own down)
//!
//! - `STORE` is one LWLock over a fixed table of [`SLOTS`] entries: shared to look up and
//!   attach, exclusive to publish or evict. Nothing else is done under it but table edits and
//!   `dsm_attach`/`dsm_pin_segment`/`dsm_unpin_segment` (no SQL, no allocation that may wait).
//! - An image is written completely into a new segment *before* its entry is inserted under the
//!   exclusive lock, and never written again: a reader that finds an entry (under the shared
//!   lock, which orders memory with the writer's release) sees the whole image. A backend that
//!   dies while writing one leaves only its unpublished segment, freed with it; a crash makes the
//!   postmaster reinitialise all shared memory, this table included: nobody reads a torn image.
//! - A published segment is pinned (it outlives the backend that wrote it) while its entry is in
//!   the table. Eviction unpins it under the exclusive lock; the backends still attached keep
//!   reading it and PostgreSQL frees it when the last one detaches.
//! - Readers attach under the shared lock, so an entry they see cannot be unpinned and freed
//!   before their attach holds a reference. Each backend detaches when it drops its [`Attached`]
//!   (and not at all once it is exiting: PostgreSQL detaches everything itself).
//! - A writer counts itself `in_flight` before its commit (pre-commit) and, once the commit is
//!   visible (or it aborted), leaves and bumps `generation`, both under the exclusive lock. A
//!   reader that read (generation, 0 in flight) at its last check and reads the same now knows
//!   that no writer's commit became visible in between.
//! - At most [`PER_KEY_SPACE`] images per (database, relation): the latest ones; then the oldest
//!   of all goes.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use std::cell::Cell;

/// Entries in the table: images kept at once, all databases together.
pub const SLOTS: usize = 64;
/// Images kept per (database, relation): the current version and the one before it (a reader
/// whose snapshot is older, a publisher that rolled back after publishing).
pub const PER_KEY_SPACE: usize = 2;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Entry {
    db: u32,
    relid: u32,
    key: i64,
    /// 0: a free entry.
    handle: u32,
    _pad: u32,
    len: u64,
    /// When it was published (the table's clock): the oldest goes first.
    stamp: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Table {
    entries: [Entry; SLOTS],
    clock: u64,
    /// Images published and attached since the server started (statistics).
    published: u64,
    attached: u64,
    /// Writers of what the images hold between their pre-commit and the end of their commit
    /// (`writer_starts`), and how many such ends there were (`writer_ends`): a reader that finds
    /// no writer in flight and the same count as when it last checked knows no such commit
    /// became visible since.
    generation: u64,
    in_flight: u64,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            entries: [Entry::default(); SLOTS],
            clock: 0,
            published: 0,
            attached: 0,
            generation: 0,
            in_flight: 0,
        }
    }
}

// SAFETY: plain integers, no pointers: valid in any process's mapping.
unsafe impl PGRXSharedMemory for Table {}

// SAFETY: a name of llm_cost's own; no other tranche uses it.
static STORE: PgLwLock<Table> = unsafe { PgLwLock::new(c"llm_cost_shared_images") };

static INITIALIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

thread_local! {
    static EXITING: Cell<bool> = const { Cell::new(false) };
    static EXIT_HOOKED: Cell<bool> = const { Cell::new(false) };
}

/// Requests the table (from `_PG_init` while shared_preload_libraries is processed).
pub fn init() {
    pg_shmem_init!(STORE);
    INITIALIZED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether images can be shared (llm_cost was preloaded; the setting is on).
pub fn available() -> bool {
    INITIALIZED.load(std::sync::atomic::Ordering::Relaxed)
}

/// A mapping of a published (or just written) image, kept until dropped.
pub struct Attached {
    seg: *mut pg_sys::dsm_segment,
    pub base: *const u8,
    pub len: usize,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if EXITING.with(|e| e.get()) {
            return;
        }
        // SAFETY: our own mapping, pinned for the session and not detached before.
        unsafe { pg_sys::dsm_detach(self.seg) }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_exit(_code: i32, _arg: pg_sys::Datum) {
    EXITING.with(|e| e.set(true));
}

fn hook_exit() {
    if !EXIT_HOOKED.with(|h| h.get()) {
        // SAFETY: registered once per backend; runs before PostgreSQL detaches all segments.
        unsafe { pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(0)) };
        EXIT_HOOKED.with(|h| h.set(true));
    }
}

fn db() -> u32 {
    // SAFETY: a backend global, set once connected.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// The image published for (this database, `relid`, `key`), attached; None when there is none.
pub fn find(relid: pg_sys::Oid, key: i64) -> Option<Attached> {
    if !available() {
        return None;
    }
    hook_exit();
    let (db, relid) = (db(), relid.to_u32());
    let t = STORE.share();
    let e = t
        .entries
        .iter()
        .find(|e| e.handle != 0 && e.db == db && e.relid == relid && e.key == key)?;
    // SAFETY: the entry's segment is pinned while in the table and we hold the shared lock, so
    // it exists; a segment this backend already maps cannot be attached twice: then none.
    unsafe {
        if !pg_sys::dsm_find_mapping(e.handle).is_null() {
            return None;
        }
        let seg = pg_sys::dsm_attach(e.handle);
        if seg.is_null() {
            return None;
        }
        pg_sys::dsm_pin_mapping(seg);
        let base = pg_sys::dsm_segment_address(seg) as *const u8;
        let len = e.len as usize;
        drop(t);
        STORE.exclusive().attached += 1;
        Some(Attached { seg, base, len })
    }
}

/// Copies `image` into a new segment and publishes it as (this database, `relid`, `key`),
/// returning this backend's mapping of it. None when no segment could be made (too many, or no
/// space: then a WARNING says so and the caller keeps its own copy). An image already published
/// under the key is left as it is (the new one is then this backend's alone).
pub fn publish(relid: pg_sys::Oid, key: i64, image: &[u64]) -> Option<Attached> {
    if !available() {
        return None;
    }
    hook_exit();
    let bytes = std::mem::size_of_val(image);
    let seg = pgrx::PgTryBuilder::new(|| {
        // SAFETY: a new segment of `bytes`; NULL instead of an error when none is left.
        unsafe { pg_sys::dsm_create(bytes, pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32) }
    })
    .catch_others(|_| std::ptr::null_mut())
    .execute();
    if seg.is_null() {
        warning!("llm_cost: no shared memory for a price catalog of {bytes} bytes: this backend keeps its own copy");
        return None;
    }
    // SAFETY: the segment is ours, `bytes` long, and nobody else knows its handle yet.
    let attached = unsafe {
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        std::ptr::copy_nonoverlapping(image.as_ptr() as *const u8, base, bytes);
        pg_sys::dsm_pin_mapping(seg);
        Attached {
            seg,
            base,
            len: bytes,
        }
    };
    let (db, rel) = (db(), relid.to_u32());
    let mut t = STORE.exclusive();
    if t.entries
        .iter()
        .any(|e| e.handle != 0 && e.db == db && e.relid == rel && e.key == key)
    {
        return Some(attached);
    }
    // Where it goes: a third image of this (database, relation) replaces its oldest; else a free
    // entry; else the oldest of all.
    let same: Vec<usize> = (0..SLOTS)
        .filter(|i| {
            let e = &t.entries[*i];
            e.handle != 0 && e.db == db && e.relid == rel
        })
        .collect();
    let oldest =
        |idx: &mut dyn Iterator<Item = usize>, t: &Table| idx.min_by_key(|i| t.entries[*i].stamp);
    let slot = if same.len() >= PER_KEY_SPACE {
        oldest(&mut same.into_iter(), &t)
    } else {
        (0..SLOTS)
            .find(|i| t.entries[*i].handle == 0)
            .or_else(|| oldest(&mut (0..SLOTS), &t))
    }
    .unwrap_or(0);
    let old = t.entries[slot].handle;
    // SAFETY: `old` was pinned when published and is unpinned once, here; our new segment is
    // pinned once, here, and unpinned when evicted.
    unsafe {
        if old != 0 {
            pg_sys::dsm_unpin_segment(old);
        }
        pg_sys::dsm_pin_segment(attached.seg);
    }
    t.clock += 1;
    let stamp = t.clock;
    t.entries[slot] = Entry {
        db,
        relid: rel,
        key,
        // SAFETY: our segment.
        handle: unsafe { pg_sys::dsm_segment_handle(attached.seg) },
        _pad: 0,
        len: bytes as u64,
        stamp,
    };
    t.published += 1;
    Some(attached)
}

/// (writers' ends, writers in flight); None without shared memory. Read under the shared lock,
/// which orders it with the writers' updates around their commit.
pub fn generation() -> Option<(u64, u64)> {
    available().then(|| {
        let t = STORE.share();
        (t.generation, t.in_flight)
    })
}

/// A writer is about to commit (or prepare): from now until `writer_ends`, readers check.
pub fn writer_starts() {
    if available() {
        STORE.exclusive().in_flight += 1;
    }
}

/// The writer's transaction ended (after its commit became visible, or it aborted).
pub fn writer_ends() {
    if available() {
        let mut t = STORE.exclusive();
        t.in_flight = t.in_flight.saturating_sub(1);
        t.generation += 1;
    }
}

/// What the table holds: (images, bytes, published since start, attached since start).
pub fn stats() -> Option<(usize, u64, u64, u64)> {
    if !available() {
        return None;
    }
    let t = STORE.share();
    let live = t.entries.iter().filter(|e| e.handle != 0);
    let (n, bytes) = live.fold((0, 0), |(n, b), e| (n + 1, b + e.len));
    Some((n, bytes, t.published, t.attached))
}
