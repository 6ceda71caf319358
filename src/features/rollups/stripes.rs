//! Adds a statement's sums to a rollup's stripes table, straight through the heap and index
//! access methods: one probe of the table's unique index, then a heap update (HOT as a rule:
//! the table has fillfactor 30, only the sums change, and the row's page is pruned before it
//! fills: see `update_at`) or, for a new group, a heap and index
//! insert. This is what `INSERT … ON CONFLICT DO UPDATE` does, without parsing, planning and
//! executor start-up per statement, which cost more than the rest of the rollup work together.
//!
//! Where a group's row was last written is remembered per backend (TIDS), so the next statement
//! of the same group fetches that row directly and skips the index probe; the remembered row is
//! used only if it is still the live version of exactly that key, else the probe runs.
//!
//! Safe because of how stripes tables are used:
//! - a row of stripe N is only ever written by the backend in slot N (two live backends never
//!   share a slot), by `rebuild_rollup` (which locks the source against writers first), by
//!   `fold_rollup` (which deletes rows no other transaction holds, SKIP LOCKED, and inserts their
//!   sum in stripe 0, which no writer uses: a writer whose row it deleted finds the row gone, or
//!   held, and adds into a new row of its stripe, or of the next stride) and by DDL (TRUNCATE,
//!   DROP: they lock the stripes table itself);
//! - the probe uses a dirty snapshot, as ON CONFLICT does: it sees the newest version; a row a
//!   prepared transaction still holds (an earlier holder of the slot, or this backend's own
//!   previous transaction under two-phase commit) is never waited for: the group's sums go to
//!   the slot's next stride for that statement (`next_stride`), and a concurrent update is retried;
//! - no triggers, rules or constraints other than NOT NULL and the unique key live on a stripes
//!   table; other indexes on it are maintained too when they are plain column indexes, and an
//!   expression or partial index is refused with a clear error.
//!
//! A HOT update of a remembered row touches no index: the indexes are opened (and locked) only
//! when a probe or index entries need them (`LazyIndexes`), after the first write since the
//! definitions were read (they are read again on any change to the table) opened and checked
//! them all (`Layout::indexes_checked`), and the remembered row's block is
//! checked against the table's size this backend last learned, not by an `lseek` per statement
//! (`block_exists`).

use pgrx::pg_sys;
use pgrx::prelude::*;

/// Where the columns are in a stripes table (attribute numbers, from `llm_cost._rollup_defs`).
pub struct Layout {
    pub stripes: pg_sys::Oid,
    /// Group columns, in group_by order.
    pub groups: Vec<i16>,
    /// Attribute numbers of `COLUMNS`, in that order.
    pub fixed: [i16; COLUMNS.len()],
    /// The probe's unique index and its (heap attno, equality function, collation) per key
    /// column, looked up once: the definitions are dropped on any change to the stripes table
    /// (an index created, dropped or rebuilt included).
    pub probe_keys: std::cell::RefCell<Option<(pg_sys::Oid, std::rc::Rc<Vec<ProbeKey>>)>>,
    /// Whether a write has opened and checked every index of the stripes table since these
    /// definitions were read (an expression or partial index is refused then; later writes open
    /// the indexes only when they need them). Dropped with the definitions, on any change to
    /// the stripes table.
    pub indexes_checked: std::cell::Cell<bool>,
}

/// Heap attribute number, equality function and collation of one key column of the probe index.
pub type ProbeKey = (i16, pg_sys::RegProcedure, pg_sys::Oid);

/// How a column of a table of sums takes in a statement's sums for a row that exists.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Part of the row's key (never changes).
    Key,
    /// Added.
    Sum,
    /// The greater value (NULL: the other one).
    Max,
    /// The smaller value (NULL: the other one).
    Min,
    /// Histograms (`llm_cost_core::hist`, flat int8[]) added bucket by bucket.
    Hist,
}

/// A column of every table of sums besides the group columns.
pub struct Column {
    pub name: &'static str,
    pub sql_type: &'static str,
    pub not_null: bool,
    pub merge: Merge,
}

const fn col(name: &'static str, sql_type: &'static str, not_null: bool, merge: Merge) -> Column {
    Column {
        name,
        sql_type,
        not_null,
        merge,
    }
}

/// The columns of a table of sums besides the group columns: the one list of them. SQL reads it
/// through `llm_cost._sums_layout()` (`create_rollup`'s CREATE TABLE, `_rollup_upsert`'s merge,
/// `_rollup_defs`' attribute numbers); `Layout::fixed` holds their attribute numbers in this order.
/// The group columns go between period_start and stripe.
pub const COLUMNS: [Column; 22] = [
    col("period_start", "timestamptz", true, Merge::Key),
    col("stripe", "int", true, Merge::Key),
    col("requests", "bigint", true, Merge::Sum),
    col("input_tokens", "bigint", true, Merge::Sum),
    col("output_tokens", "bigint", true, Merge::Sum),
    col("cache_read_tokens", "bigint", true, Merge::Sum),
    col("cache_write_tokens", "bigint", true, Merge::Sum),
    col("cost_usd", "numeric", true, Merge::Sum),
    col("unpriced_requests", "bigint", true, Merge::Sum),
    col("error_requests", "bigint", true, Merge::Sum),
    col("latency_ms_sum", "bigint", true, Merge::Sum),
    col("latency_ms_max", "bigint", false, Merge::Max),
    col("first_seen", "timestamptz", false, Merge::Min),
    col("last_seen", "timestamptz", false, Merge::Max),
    col("cache_savings_usd", "numeric", true, Merge::Sum),
    col("cache_write_extra_usd", "numeric", true, Merge::Sum),
    col("error_cost_usd", "numeric", true, Merge::Sum),
    col("provided_requests", "bigint", true, Merge::Sum),
    col("provided_cost_usd", "numeric", true, Merge::Sum),
    col("provided_list_usd", "numeric", true, Merge::Sum),
    col("cost_hist", "bigint[]", true, Merge::Hist),
    col("max_request_cost_usd", "numeric", false, Merge::Max),
];

/// How many of `COLUMNS` a table of sums made before 0.11.0 has (the first ones): the library
/// writes such a table, without the later columns, until `ALTER EXTENSION llm_cost UPDATE` adds
/// them (`Layout::fixed` holds 0 for a column the table lacks).
pub const COLUMNS_0_10: usize = 14;

/// The position of a column in `COLUMNS` (a compile error if it is not there).
const fn at(name: &str) -> usize {
    let mut i = 0;
    while i < COLUMNS.len() {
        let a = COLUMNS[i].name.as_bytes();
        let b = name.as_bytes();
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a column of a table of sums")
}

const PERIOD: usize = at("period_start");
const STRIPE: usize = at("stripe");
const REQUESTS: usize = at("requests");
const TOKENS: [usize; 4] = [
    at("input_tokens"),
    at("output_tokens"),
    at("cache_read_tokens"),
    at("cache_write_tokens"),
];
const COST: usize = at("cost_usd");
const UNPRICED: usize = at("unpriced_requests");
const ERRORS: usize = at("error_requests");
const LAT_SUM: usize = at("latency_ms_sum");
const LAT_MAX: usize = at("latency_ms_max");
const FIRST: usize = at("first_seen");
const LAST: usize = at("last_seen");
const SAVINGS: usize = at("cache_savings_usd");
const WRITE_EXTRA: usize = at("cache_write_extra_usd");
const ERROR_COST: usize = at("error_cost_usd");
const PROVIDED: usize = at("provided_requests");
const PROVIDED_COST: usize = at("provided_cost_usd");
const PROVIDED_LIST: usize = at("provided_list_usd");
const HIST: usize = at("cost_hist");
const MAX_COST: usize = at("max_request_cost_usd");

type LayoutRow = (i32, String, String, bool, String);

fn layout_rows(columns: &'static [Column]) -> TableIterator<'static, LayoutRow> {
    TableIterator::new(columns.iter().enumerate().map(|(i, c)| {
        let merge = match c.merge {
            Merge::Key => "key",
            Merge::Sum => "sum",
            Merge::Max => "max",
            Merge::Min => "min",
            Merge::Hist => "hist",
        };
        (
            i as i32 + 1,
            c.name.to_string(),
            c.sql_type.to_string(),
            c.not_null,
            merge.to_string(),
        )
    }))
}

/// The columns of a table of sums besides the group columns, in `COLUMNS` order: name, SQL type,
/// NOT NULL, and how a statement's sums merge into an existing row (key, sum, max, min).
#[pg_extern(immutable, parallel_safe, name = "_sums_layout")]
pub fn sums_layout() -> TableIterator<
    'static,
    (
        name!(ord, i32),
        name!(name, String),
        name!(sql_type, String),
        name!(not_null, bool),
        name!(merge, String),
    ),
> {
    layout_rows(&COLUMNS)
}

/// The columns of a table of sums as 0.10.0 and earlier made them (`COLUMNS_0_10`): the SQL of a
/// database not yet updated to this library's version reads them through this symbol, and goes
/// on making and filling tables of that shape (this library writes those too).
#[pg_extern(immutable, parallel_safe, name = "_stripes_layout")]
pub fn stripes_layout() -> TableIterator<
    'static,
    (
        name!(ord, i32),
        name!(name, String),
        name!(sql_type, String),
        name!(not_null, bool),
        name!(merge, String),
    ),
> {
    layout_rows(&COLUMNS[..COLUMNS_0_10])
}

/// One (period, group)'s sums to add into this backend's stripe.
pub struct Sums<'a> {
    /// Identity of (rollup, period, group) in this backend: the key of the row-location cache.
    pub key: &'a [u8],
    pub period: i64,
    pub group: &'a [Option<pg_sys::Datum>],
    pub stripe: i32,
    pub requests: i64,
    pub tokens: [i64; 4],
    /// numeric
    pub cost: pg_sys::Datum,
    pub unpriced: i64,
    pub errors: i64,
    pub latency_sum: i64,
    pub latency_max: Option<i64>,
    pub first: i64,
    pub last: i64,
    /// numeric, as `cost`
    pub cache_savings: pg_sys::Datum,
    pub cache_write_extra: pg_sys::Datum,
    pub error_cost: pg_sys::Datum,
    pub provided: i64,
    pub provided_cost: pg_sys::Datum,
    pub provided_list: pg_sys::Datum,
    /// int8[]
    pub hist: pg_sys::Datum,
    /// numeric
    pub max_cost: Option<pg_sys::Datum>,
}

struct Index {
    rel: pg_sys::Relation,
    /// Built on first use (only inserts and non-HOT updates need it).
    info: std::cell::Cell<*mut pg_sys::IndexInfo>,
}

/// The indexes of a table of sums, opened (and locked) on first use: a HOT update of a row
/// reached by its remembered position needs none of them (PostgreSQL decides HOT from the
/// relcache's indexed columns, not from opened indexes, and nothing that changes an index can
/// run while the table is locked ROW EXCLUSIVE, except CREATE INDEX CONCURRENTLY, which waits
/// for this transaction); only a probe or an insert of index entries opens them.
struct LazyIndexes<'a> {
    layout: &'a Layout,
    rel: pg_sys::Relation,
    lock: pg_sys::LOCKMODE,
    opened: std::cell::OnceCell<(Vec<Index>, Probe)>,
}

impl<'a> LazyIndexes<'a> {
    fn new(layout: &'a Layout, rel: pg_sys::Relation, lock: pg_sys::LOCKMODE) -> Self {
        LazyIndexes {
            layout,
            rel,
            lock,
            opened: std::cell::OnceCell::new(),
        }
    }

    /// The indexes and the probe, opened now if not yet.
    unsafe fn get(&self) -> &(Vec<Index>, Probe) {
        self.opened
            .get_or_init(|| open_indexes(self.rel, self.layout, self.lock))
    }

    /// Closes what was opened, keeping the locks until the transaction ends.
    unsafe fn close(self) {
        if let Some((indexes, _)) = self.opened.into_inner() {
            for ix in &indexes {
                pg_sys::index_close(ix.rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            }
        }
    }
}

/// The unique index probed for the (period, group, stripe) key, with its equality functions.
struct Probe {
    rel: pg_sys::Relation,
    keys: std::rc::Rc<Vec<ProbeKey>>,
}

/// Remembered positions: stripes relfilenode -> group identity -> where that group's row of this
/// backend's stripe was last written. A hint only: checked before use.
type Tids = rustc_hash::FxHashMap<u32, rustc_hash::FxHashMap<Vec<u8>, pg_sys::ItemPointerData>>;

thread_local! {
    static TIDS: std::cell::RefCell<(Tids, usize)> = std::cell::RefCell::new(Default::default());
}

const TIDS_MAX: usize = 100_000;

#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
unsafe fn relfilenode(rel: pg_sys::Relation) -> u32 {
    (*rel).rd_node.relNode.to_u32()
}

#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
unsafe fn relfilenode(rel: pg_sys::Relation) -> u32 {
    (*rel).rd_locator.relNumber.to_u32()
}

/// Remembers where a group's row now is (in place when the group is known: no allocation).
fn remember(file: u32, key: &[u8], tid: pg_sys::ItemPointerData) {
    TIDS.with(|t| {
        let (map, count) = &mut *t.borrow_mut();
        if let Some(known) = map.get_mut(&file).and_then(|m| m.get_mut(key)) {
            *known = tid;
            return;
        }
        if *count >= TIDS_MAX {
            map.clear();
            *count = 0;
        }
        map.entry(file).or_default().insert(key.to_vec(), tid);
        *count += 1;
    });
}

fn remembered(file: u32, key: &[u8]) -> Option<pg_sys::ItemPointerData> {
    TIDS.with(|t| t.borrow().0.get(&file).and_then(|m| m.get(key)).copied())
}

fn block_of(tid: &pg_sys::ItemPointerData) -> u32 {
    ((tid.ip_blkid.bi_hi as u32) << 16) | tid.ip_blkid.bi_lo as u32
}

/// Whether block `block` of the table's main fork exists, so that a remembered position can be
/// fetched. First from the size the table's storage handle last learned (kept by PostgreSQL on
/// every size look-up and extension of this backend), which saves the `lseek` a look-up costs:
/// that size can be smaller than the file (another backend extended it: then the file is asked),
/// never larger, because a table only shrinks by a truncation, which sends every backend an
/// invalidation that drops the handle's size before this backend next locks the table (a
/// TRUNCATE, a rewrite or a drop gives it a new file, which no remembered position names).
unsafe fn block_exists(rel: pg_sys::Relation, block: u32) -> bool {
    let smgr = (*rel).rd_smgr;
    if !smgr.is_null() {
        let known = (*smgr).smgr_cached_nblocks[pg_sys::ForkNumber::MAIN_FORKNUM as usize];
        if known != pg_sys::InvalidBlockNumber && block < known {
            return true;
        }
    }
    block < pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM)
}

/// Binary equality of two non-null datums of one attribute (what the unique key compares for
/// the types llm_cost groups by; a value equal but spelled differently just misses the cache).
unsafe fn same_datum(
    a: pg_sys::Datum,
    b: pg_sys::Datum,
    att: &pg_sys::FormData_pg_attribute,
) -> bool {
    if att.attbyval {
        return a.value() == b.value();
    }
    let bytes = |d: pg_sys::Datum| -> (*const u8, usize) {
        if att.attlen == -1 {
            let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
            (
                pgrx::varlena::vardata_any(v) as *const u8,
                pgrx::varlena::varsize_any_exhdr(v),
            )
        } else if att.attlen > 0 {
            (d.cast_mut_ptr::<u8>() as *const u8, att.attlen as usize)
        } else {
            let c = std::ffi::CStr::from_ptr(d.cast_mut_ptr::<std::ffi::c_char>());
            (c.as_ptr() as *const u8, c.to_bytes().len())
        }
    };
    let (pa, la) = bytes(a);
    let (pb, lb) = bytes(b);
    la == lb && std::slice::from_raw_parts(pa, la) == std::slice::from_raw_parts(pb, lb)
}

fn refuse(msg: String) -> ! {
    crate::pg::fail::user(pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, msg).raise();
}

/// Stripe numbers past the backend slots: slot + k * STRIDE is where this backend adds a group
/// whose rows in stripes slot .. slot + (k - 1) * STRIDE are held by prepared transactions
/// (MaxBackends is below 2^18).
const STRIDE: i32 = 1 << 18;

/// The stripe after `stripe` (whose row of the group a prepared transaction holds) in this
/// backend's slot. Not kept: the next statement tries the slot's own row first again. Under
/// two-phase commit (Citus commits every multi-shard write so) the previous transaction of this
/// backend is usually committed by then, and its rows are updated instead of new rows being added
/// on every statement: the number of rows per group stays bounded by the backend slots in use
/// and the prepared transactions outstanding.
fn next_stride(stripe: i32) -> i32 {
    let k = stripe / STRIDE + 1;
    if k >= i32::MAX / STRIDE - 1 {
        refuse("llm_cost: no free rollup stripe left for this backend slot; commit or roll back the prepared transactions (pg_prepared_xacts)".into());
    }
    stripe % STRIDE + k * STRIDE
}

/// Adds every entry of `sums` to the stripes table of `layout`, in the running transaction.
pub fn add_all(layout: &Layout, sums: &[Sums]) {
    // SAFETY: the stripes table is opened and locked here and closed below; tuples are built with its own descriptor.
    unsafe {
        let lock = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(layout.stripes, lock);
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        let check = |attno: i16| {
            if attno <= 0 || attno as usize > natts {
                refuse(format!(
                    "llm_cost: the stripes table {} no longer has the columns llm_cost wrote there",
                    name_of(rel)
                ));
            }
        };
        layout.fixed[..COLUMNS_0_10]
            .iter()
            .chain(layout.groups.iter())
            .for_each(|a| check(*a));
        layout.fixed[COLUMNS_0_10..]
            .iter()
            .filter(|a| **a != 0)
            .for_each(|a| check(*a));
        let indexes = LazyIndexes::new(layout, rel, lock);
        if !layout.indexes_checked.get() {
            indexes.get();
            layout.indexes_checked.set(true);
        }
        let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsBufferHeapTuple);
        let mut values = vec![pg_sys::Datum::from(0); natts];
        let mut nulls = vec![true; natts];
        let mut old_values = vec![pg_sys::Datum::from(0); natts];
        let mut old_nulls = vec![true; natts];
        let file = relfilenode(rel);
        for s in sums {
            let mut stripe = s.stripe;
            loop {
                fill(layout, s, stripe, &mut values, &mut nulls);
                let hint = remembered(file, s.key).filter(|t| block_exists(rel, block_of(t)));
                match add_one(
                    layout,
                    rel,
                    &indexes,
                    slot,
                    hint,
                    &mut values,
                    &mut nulls,
                    &mut old_values,
                    &mut old_nulls,
                ) {
                    Some(tid) => {
                        remember(file, s.key, tid);
                        break;
                    }
                    // The row of this key is held by a prepared transaction (an earlier holder of
                    // this backend slot): never wait for it, add into another stripe instead.
                    None => stripe = next_stride(stripe),
                }
            }
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        // Keep the locks until the transaction ends (NoLock): its row versions are uncommitted,
        // and a rewrite or CREATE INDEX CONCURRENTLY must wait for them.
        indexes.close();
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
}

/// The cost of one (period, group) summed over every stripe, as `snapshot` sees it: a numeric
/// Datum in the current memory context, 0 when there is no row. Reads the unique index on
/// (period, groups, stripe) with the period and group as its key (budgets: a fresh snapshot at
/// commit, or the statement's for a pre-flight check).
pub fn group_cost(
    layout: &Layout,
    period: i64,
    group: &[Option<pg_sys::Datum>],
    snapshot: pg_sys::Snapshot,
) -> pg_sys::Datum {
    // SAFETY: the stripes table is opened and locked here and closed below; read with the caller's snapshot.
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(layout.stripes, lock);
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        if layout.fixed[..COLUMNS_0_10]
            .iter()
            .chain(layout.groups.iter())
            .any(|a| *a <= 0 || *a as usize > natts)
            || layout.fixed[COLUMNS_0_10..]
                .iter()
                .any(|a| *a < 0 || *a as usize > natts)
            || group.len() != layout.groups.len()
        {
            refuse(format!(
                "llm_cost: the stripes table {} no longer has the columns llm_cost reads there",
                name_of(rel)
            ));
        }
        let (indexes, probe) = open_indexes(rel, layout, lock);
        let mut scankeys: Vec<pg_sys::ScanKeyData> = Vec::with_capacity(probe.keys.len());
        for (i, (attno, proc_, coll)) in probe.keys.iter().enumerate() {
            let value = if *attno == layout.fixed[PERIOD] {
                Some(pg_sys::Datum::from(period))
            } else if let Some(j) = layout.groups.iter().position(|g| g == attno) {
                group[j]
            } else {
                continue; // the stripe: every stripe counts
            };
            let k = scan_key(i + 1, value, *proc_, *coll);
            scankeys.push(k);
        }
        let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsBufferHeapTuple);
        let scan = begin_scan(rel, probe.rel, snapshot, scankeys.len() as i32);
        pg_sys::index_rescan(
            scan,
            scankeys.as_mut_ptr(),
            scankeys.len() as i32,
            std::ptr::null_mut(),
            0,
        );
        let mut total: Option<pg_sys::Datum> = None;
        while pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
            let mut isnull = false;
            let c = pg_sys::slot_getattr(slot, layout.fixed[COST] as i32, &mut isnull);
            if !isnull {
                total = Some(match total {
                    None => pgrx::direct_function_call_as_datum(
                        pg_sys::numeric_add,
                        &[
                            Some(c),
                            Some(crate::pg::money::cost_datum(
                                llm_cost_core::pricing::Cost(0),
                                -1,
                            )),
                        ],
                    )
                    .unwrap_or(c),
                    Some(t) => pgrx::direct_function_call_as_datum(
                        pg_sys::numeric_add,
                        &[Some(t), Some(c)],
                    )
                    .unwrap_or(t),
                });
            }
        }
        pg_sys::index_endscan(scan);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        for ix in &indexes {
            pg_sys::index_close(ix.rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        total.unwrap_or_else(|| crate::pg::money::cost_datum(llm_cost_core::pricing::Cost(0), -1))
    }
}

unsafe fn name_of(rel: pg_sys::Relation) -> String {
    std::ffi::CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr())
        .to_string_lossy()
        .into_owned()
}

/// Opens every index of the stripes table; finds the unique one on (period, groups, stripe).
unsafe fn open_indexes(
    rel: pg_sys::Relation,
    layout: &Layout,
    lock: pg_sys::LOCKMODE,
) -> (Vec<Index>, Probe) {
    let mut key: Vec<i16> = vec![layout.fixed[PERIOD]];
    key.extend(&layout.groups);
    key.push(layout.fixed[STRIPE]);
    key.sort_unstable();
    let list = pg_sys::RelationGetIndexList(rel);
    let oids: Vec<pg_sys::Oid> = if list.is_null() {
        vec![]
    } else {
        (0..(*list).length)
            .map(|i| (*(*list).elements.add(i as usize)).oid_value)
            .collect()
    };
    let mut indexes = Vec::with_capacity(oids.len());
    let mut probe = None;
    for oid in oids {
        let irel = pg_sys::index_open(oid, lock);
        let form = &*(*irel).rd_index;
        if !form.indisready {
            pg_sys::index_close(irel, lock);
            continue;
        }
        let nkeys = form.indnkeyatts as usize;
        let nall = form.indnatts as usize;
        let attnos: Vec<i16> = (0..nall)
            .map(|i| *form.indkey.values.as_ptr().add(i))
            .collect();
        let has_pred = !pg_sys::heap_attisnull(
            (*irel).rd_indextuple,
            pg_sys::Anum_pg_index_indpred as i32,
            std::ptr::null_mut(),
        );
        if attnos.contains(&0) || has_pred {
            refuse(format!(
                "llm_cost: index {} on the rollup stripes table {} has expressions or a predicate; llm_cost writes stripes tables directly and maintains only plain column indexes there",
                name_of(irel), name_of(rel)
            ));
        }
        if probe.is_none() && form.indisunique && form.indisvalid && {
            let mut k = attnos[..nkeys].to_vec();
            k.sort_unstable();
            k == key
        } {
            let cached = layout
                .probe_keys
                .borrow()
                .as_ref()
                .filter(|(o, _)| *o == oid)
                .map(|(_, k)| k.clone());
            let keys = match cached {
                Some(k) => k,
                None => {
                    let mut keys = Vec::with_capacity(nkeys);
                    for i in 0..nkeys {
                        let family = *(*irel).rd_opfamily.add(i);
                        let typ = *(*irel).rd_opcintype.add(i);
                        let op = pg_sys::get_opfamily_member(
                            family,
                            typ,
                            typ,
                            pg_sys::BTEqualStrategyNumber as i16,
                        );
                        if op == pg_sys::InvalidOid {
                            refuse(format!(
                                "llm_cost: no equality operator for column {} of index {}",
                                i + 1,
                                name_of(irel)
                            ));
                        }
                        keys.push((
                            attnos[i],
                            pg_sys::get_opcode(op),
                            *(*irel).rd_indcollation.add(i),
                        ));
                    }
                    let keys = std::rc::Rc::new(keys);
                    *layout.probe_keys.borrow_mut() = Some((oid, keys.clone()));
                    keys
                }
            };
            probe = Some(Probe { rel: irel, keys });
        }
        indexes.push(Index {
            rel: irel,
            info: std::cell::Cell::new(std::ptr::null_mut()),
        });
    }
    match probe {
        Some(p) => (indexes, p),
        None => refuse(format!(
            "llm_cost: the rollup stripes table {} lost its unique key on (period_start, group columns, stripe)",
            name_of(rel)
        )),
    }
}

/// The new row for `s`, as if no row of its key existed yet.
unsafe fn fill(
    layout: &Layout,
    s: &Sums,
    stripe: i32,
    values: &mut [pg_sys::Datum],
    nulls: &mut [bool],
) {
    nulls.iter_mut().for_each(|n| *n = true);
    let mut set = |attno: i16, d: Option<pg_sys::Datum>| {
        if attno == 0 {
            return; // a column a table of sums made before 0.11.0 lacks
        }
        let i = attno as usize - 1;
        values[i] = d.unwrap_or(pg_sys::Datum::from(0));
        nulls[i] = d.is_none();
    };
    let f = &layout.fixed;
    set(f[PERIOD], Some(pg_sys::Datum::from(s.period)));
    for (a, d) in layout.groups.iter().zip(s.group) {
        set(*a, *d);
    }
    set(f[STRIPE], Some(pg_sys::Datum::from(stripe)));
    set(f[REQUESTS], Some(pg_sys::Datum::from(s.requests)));
    for k in 0..4 {
        set(f[TOKENS[k]], Some(pg_sys::Datum::from(s.tokens[k])));
    }
    set(f[COST], Some(s.cost));
    set(f[UNPRICED], Some(pg_sys::Datum::from(s.unpriced)));
    set(f[ERRORS], Some(pg_sys::Datum::from(s.errors)));
    set(f[LAT_SUM], Some(pg_sys::Datum::from(s.latency_sum)));
    set(f[LAT_MAX], s.latency_max.map(pg_sys::Datum::from));
    set(f[FIRST], Some(pg_sys::Datum::from(s.first)));
    set(f[LAST], Some(pg_sys::Datum::from(s.last)));
    set(f[SAVINGS], Some(s.cache_savings));
    set(f[WRITE_EXTRA], Some(s.cache_write_extra));
    set(f[ERROR_COST], Some(s.error_cost));
    set(f[PROVIDED], Some(pg_sys::Datum::from(s.provided)));
    set(f[PROVIDED_COST], Some(s.provided_cost));
    set(f[PROVIDED_LIST], Some(s.provided_list));
    set(f[HIST], Some(s.hist));
    set(f[MAX_COST], s.max_cost);
}

fn sum_i64(a: i64, b: i64) -> i64 {
    a.checked_add(b).unwrap_or_else(|| {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            "llm_cost: rollup sum out of range for bigint",
        )
        .raise();
    })
}

/// Whether a numeric Datum is 0 of scale 0, as `money::cost_datum` builds a zero sum (the body
/// `numeric_in('0')` gives: a short header, no digits).
unsafe fn is_zero_numeric(d: pg_sys::Datum) -> bool {
    let zero = llm_cost_core::numeric::encode_units(0);
    let v = d.cast_mut_ptr::<pg_sys::varlena>();
    if pgrx::varlena::varatt_is_1b_e(v) || pgrx::varlena::varatt_is_4b_c(v) {
        return false; // toasted or compressed: never one of ours
    }
    pgrx::varlena::varlena_to_byte_slice(v) == zero.as_slice()
}

/// Folds the existing row (old_*) into the new sums (values/nulls) for the columns that add up.
unsafe fn merge(
    layout: &Layout,
    values: &mut [pg_sys::Datum],
    nulls: &mut [bool],
    old: &[pg_sys::Datum],
    old_nulls: &[bool],
) {
    let f = &layout.fixed;
    let int = |d: pg_sys::Datum| d.value() as i64;
    for (k, c) in COLUMNS.iter().enumerate() {
        if f[k] == 0 {
            continue; // a column a table of sums made before 0.11.0 lacks
        }
        let i = f[k] as usize - 1;
        if old_nulls[i] {
            continue;
        }
        match c.merge {
            Merge::Key => {}
            // Most sums of most statements add 0 (no cache, no error, no provided cost): the old
            // value stands, as numeric_add would leave it (a 0 of scale 0 changes neither the
            // value nor the scale), without a call.
            Merge::Sum if c.sql_type == "numeric" && !nulls[i] && is_zero_numeric(values[i]) => {
                values[i] = old[i];
            }
            Merge::Sum if c.sql_type == "numeric" => {
                values[i] = pgrx::direct_function_call_as_datum(
                    pg_sys::numeric_add,
                    &[Some(old[i]), Some(values[i])],
                )
                .unwrap_or(values[i]);
            }
            Merge::Sum => values[i] = pg_sys::Datum::from(sum_i64(int(values[i]), int(old[i]))),
            Merge::Hist => {
                values[i] = super::hist::merge_datums(old[i], values[i]).unwrap_or_else(|| {
                    refuse(
                        "llm_cost: a table of sums holds a cost histogram that is not well formed"
                            .into(),
                    )
                });
            }
            // NULLs ignored: the other value stands.
            Merge::Max | Merge::Min => {
                let keep_max = c.merge == Merge::Max;
                // numeric values compare as numbers, the others as integers (timestamps too).
                let cmp = if nulls[i] {
                    std::cmp::Ordering::Equal
                } else if c.sql_type == "numeric" {
                    let r = pgrx::direct_function_call::<i32>(
                        pg_sys::numeric_cmp,
                        &[Some(old[i]), Some(values[i])],
                    )
                    .unwrap_or(0);
                    r.cmp(&0)
                } else {
                    int(old[i]).cmp(&int(values[i]))
                };
                if nulls[i]
                    || (keep_max && cmp == std::cmp::Ordering::Greater)
                    || (!keep_max && cmp == std::cmp::Ordering::Less)
                {
                    values[i] = old[i];
                    nulls[i] = false;
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// The scan key of index column `col` (1-based) equal to `value` (None: IS NULL).
unsafe fn scan_key(
    col: usize,
    value: Option<pg_sys::Datum>,
    proc_: pg_sys::RegProcedure,
    coll: pg_sys::Oid,
) -> pg_sys::ScanKeyData {
    let mut k = pg_sys::ScanKeyData::default();
    match value {
        None => pg_sys::ScanKeyEntryInitialize(
            &mut k,
            (pg_sys::SK_ISNULL | pg_sys::SK_SEARCHNULL) as i32,
            col as i16,
            0, /* InvalidStrategy */
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::Datum::from(0),
        ),
        Some(v) => pg_sys::ScanKeyEntryInitialize(
            &mut k,
            0,
            col as i16,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::InvalidOid,
            coll,
            proc_,
            v,
        ),
    }
    k
}

unsafe fn add_one(
    layout: &Layout,
    rel: pg_sys::Relation,
    lazy: &LazyIndexes,
    slot: *mut pg_sys::TupleTableSlot,
    hint: Option<pg_sys::ItemPointerData>,
    values: &mut [pg_sys::Datum],
    nulls: &mut [bool],
    old_values: &mut [pg_sys::Datum],
    old_nulls: &mut [bool],
) -> Option<pg_sys::ItemPointerData> {
    // Our earlier writes (this statement's other groups included) must be visible and updatable.
    pg_sys::CommandCounterIncrement();
    let cid = pg_sys::GetCurrentCommandId(true);
    let fresh: Vec<pg_sys::Datum> = values.to_vec();
    let fresh_nulls: Vec<bool> = nulls.to_vec();
    let layout_desc = (*rel).rd_att;
    if let Some(tid) = hint {
        if let Some(done) = update_at(
            layout, rel, lazy, tid, cid, values, nulls, old_values, old_nulls,
        ) {
            return Some(done);
        }
        values.copy_from_slice(&fresh);
        nulls.copy_from_slice(&fresh_nulls);
    }
    let (indexes, probe) = lazy.get();
    let mut scankeys: Vec<pg_sys::ScanKeyData> = probe
        .keys
        .iter()
        .enumerate()
        .map(|(i, (attno, proc_, coll))| {
            let a = *attno as usize - 1;
            scan_key(
                i + 1,
                if nulls[a] { None } else { Some(values[a]) },
                *proc_,
                *coll,
            )
        })
        .collect();
    loop {
        values.copy_from_slice(&fresh);
        nulls.copy_from_slice(&fresh_nulls);
        let mut dirty = pg_sys::SnapshotData {
            snapshot_type: pg_sys::SnapshotType::SNAPSHOT_DIRTY,
            ..Default::default()
        };
        let scan = begin_scan(rel, probe.rel, &mut dirty, scankeys.len() as i32);
        pg_sys::index_rescan(
            scan,
            scankeys.as_mut_ptr(),
            scankeys.len() as i32,
            std::ptr::null_mut(),
            0,
        );
        let found =
            pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
        if !found {
            pg_sys::index_endscan(scan);
            let tup = pg_sys::heap_form_tuple(layout_desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::heap_insert(rel, tup, cid, 0, std::ptr::null_mut());
            insert_index_entries(rel, indexes, tup, values, nulls, None);
            return Some((*tup).t_self);
        }
        let held_by = if dirty.xmin != pg_sys::TransactionId::INVALID {
            dirty.xmin
        } else {
            dirty.xmax
        };
        if held_by != pg_sys::TransactionId::INVALID {
            // Another transaction has this row: a prepared one of an earlier holder of this slot
            // (no live backend shares it), or a rebuild_rollup in progress. Waiting would hang
            // the writer for as long as that transaction stays prepared: the caller writes into
            // another stripe (the rollup sums all stripes).
            pg_sys::index_endscan(scan);
            clear(slot);
            return None;
        }
        let old = pg_sys::ExecFetchSlotHeapTuple(slot, false, std::ptr::null_mut());
        pg_sys::heap_deform_tuple(
            old,
            layout_desc,
            old_values.as_mut_ptr(),
            old_nulls.as_mut_ptr(),
        );
        merge(layout, values, nulls, old_values, old_nulls);
        let newtup = pg_sys::heap_form_tuple(layout_desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        let otid = (*slot).tts_tid;
        pg_sys::index_endscan(scan);
        clear(slot);
        if let Some(done) = replace_row(rel, lazy, otid, newtup, cid, values, nulls) {
            return Some(done);
        }
    }
}

/// Replaces the row at `otid` by `newtup` and adds its index entries if it is not a HOT update;
/// None when the row was updated or deleted meanwhile (the caller looks again).
unsafe fn replace_row(
    rel: pg_sys::Relation,
    lazy: &LazyIndexes,
    mut otid: pg_sys::ItemPointerData,
    newtup: pg_sys::HeapTuple,
    cid: pg_sys::CommandId,
    values: &mut [pg_sys::Datum],
    nulls: &mut [bool],
) -> Option<pg_sys::ItemPointerData> {
    match update(rel, &mut otid, newtup, cid) {
        Updated::Ok(which) => {
            if which != IndexUpdate::None {
                let (indexes, _) = lazy.get();
                insert_index_entries(rel, indexes, newtup, values, nulls, Some(which));
            }
            Some((*newtup).t_self)
        }
        Updated::Retry => None,
        Updated::Fail(code) => crate::pg::fail::internal(format!(
            "llm_cost: could not update a row of the rollup stripes table {} (result {code})",
            name_of(rel)
        )),
    }
}

/// Adds the sums to the row at `tid` if it is still the live row of exactly this key (the hint
/// from this backend's last write of the group); None sends the caller to the index probe.
#[allow(clippy::too_many_arguments)]
unsafe fn update_at(
    layout: &Layout,
    rel: pg_sys::Relation,
    lazy: &LazyIndexes,
    tid: pg_sys::ItemPointerData,
    cid: pg_sys::CommandId,
    values: &mut [pg_sys::Datum],
    nulls: &mut [bool],
    old_values: &mut [pg_sys::Datum],
    old_nulls: &mut [bool],
) -> Option<pg_sys::ItemPointerData> {
    let desc = (*rel).rd_att;
    let mut dirty = pg_sys::SnapshotData {
        snapshot_type: pg_sys::SnapshotType::SNAPSHOT_DIRTY,
        ..Default::default()
    };
    let mut tuple = pg_sys::HeapTupleData {
        t_self: tid,
        ..Default::default()
    };
    let mut buf: pg_sys::Buffer = 0;
    if !pg_sys::heap_fetch(rel, &mut dirty, &mut tuple, &mut buf, false) {
        return None;
    }
    // In progress elsewhere (a prepared transaction): let the probe path wait properly.
    let busy = dirty.xmin != pg_sys::TransactionId::INVALID
        || dirty.xmax != pg_sys::TransactionId::INVALID;
    pg_sys::heap_deform_tuple(
        &mut tuple,
        desc,
        old_values.as_mut_ptr(),
        old_nulls.as_mut_ptr(),
    );
    // The row's key: the probe index's columns, (period, group columns, stripe).
    let same_key = !busy
        && std::iter::once(&layout.fixed[PERIOD])
            .chain(layout.groups.iter())
            .chain(std::iter::once(&layout.fixed[STRIPE]))
            .all(|attno| {
                let i = *attno as usize - 1;
                match (old_nulls[i], nulls[i]) {
                    (true, true) => true,
                    (false, false) => {
                        same_datum(old_values[i], values[i], &*(*desc).attrs.as_ptr().add(i))
                    }
                    _ => false,
                }
            });
    if !same_key {
        pg_sys::ReleaseBuffer(buf);
        return None;
    }
    merge(layout, values, nulls, old_values, old_nulls);
    let newtup = pg_sys::heap_form_tuple(desc, values.as_mut_ptr(), nulls.as_mut_ptr());
    // The row's page is reached by its TID, never by a scan, so nothing else prunes it: without
    // this, the dead versions of this row (one per statement) fill the page, the next update
    // goes to another page (a new one at the end: the table grows) and inserts index entries.
    // When the page has room for less than two more versions, it is pruned as an index scan
    // would on reaching it (with our pin only; skipped while another backend holds one). After
    // the old row was read: pruning moves tuples within the page.
    let room = pg_sys::PageGetHeapFreeSpace(pg_sys::BufferGetPage(buf));
    if room < 2 * (*newtup).t_len as usize {
        pg_sys::heap_page_prune_opt(rel, buf);
    }
    pg_sys::ReleaseBuffer(buf);
    replace_row(rel, lazy, tid, newtup, cid, values, nulls)
}

unsafe fn clear(slot: *mut pg_sys::TupleTableSlot) {
    if let Some(f) = (*(*slot).tts_ops).clear {
        f(slot);
    }
}

#[cfg(not(feature = "pg18"))]
unsafe fn begin_scan(
    rel: pg_sys::Relation,
    index: pg_sys::Relation,
    snap: *mut pg_sys::SnapshotData,
    nkeys: i32,
) -> pg_sys::IndexScanDesc {
    pg_sys::index_beginscan(rel, index, snap, nkeys, 0)
}

#[cfg(feature = "pg18")]
unsafe fn begin_scan(
    rel: pg_sys::Relation,
    index: pg_sys::Relation,
    snap: *mut pg_sys::SnapshotData,
    nkeys: i32,
) -> pg_sys::IndexScanDesc {
    pg_sys::index_beginscan(rel, index, snap, std::ptr::null_mut(), nkeys, 0)
}

#[derive(PartialEq, Clone, Copy)]
enum IndexUpdate {
    None,
    All,
    Summarizing,
}

enum Updated {
    Ok(IndexUpdate),
    Retry,
    Fail(u32),
}

unsafe fn classify(r: pg_sys::TM_Result::Type, ok: IndexUpdate) -> Updated {
    match r {
        pg_sys::TM_Result::TM_Ok => Updated::Ok(ok),
        // Deleted or updated since the probe (another holder of the slot, or a rebuild): look again.
        pg_sys::TM_Result::TM_Updated | pg_sys::TM_Result::TM_Deleted => Updated::Retry,
        other => Updated::Fail(other),
    }
}

#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
unsafe fn update(
    rel: pg_sys::Relation,
    otid: &mut pg_sys::ItemPointerData,
    newtup: pg_sys::HeapTuple,
    cid: pg_sys::CommandId,
) -> Updated {
    let (mut tmfd, mut lockmode) = (pg_sys::TM_FailureData::default(), 0);
    let r = pg_sys::heap_update(
        rel,
        otid,
        newtup,
        cid,
        std::ptr::null_mut(),
        true,
        &mut tmfd,
        &mut lockmode,
    );
    let hot = pg_sys::HeapTupleHeaderIsHeapOnly((*newtup).t_data);
    classify(
        r,
        if hot {
            IndexUpdate::None
        } else {
            IndexUpdate::All
        },
    )
}

#[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
unsafe fn update(
    rel: pg_sys::Relation,
    otid: &mut pg_sys::ItemPointerData,
    newtup: pg_sys::HeapTuple,
    cid: pg_sys::CommandId,
) -> Updated {
    let (mut tmfd, mut lockmode) = (pg_sys::TM_FailureData::default(), 0);
    let mut which: pg_sys::TU_UpdateIndexes::Type = pg_sys::TU_UpdateIndexes::TU_None;
    let r = pg_sys::heap_update(
        rel,
        otid,
        newtup,
        cid,
        std::ptr::null_mut(),
        true,
        &mut tmfd,
        &mut lockmode,
        &mut which,
    );
    classify(
        r,
        match which {
            pg_sys::TU_UpdateIndexes::TU_None => IndexUpdate::None,
            pg_sys::TU_UpdateIndexes::TU_Summarizing => IndexUpdate::Summarizing,
            _ => IndexUpdate::All,
        },
    )
}

/// Index entries for a tuple just written at `tup.t_self` (all indexes, or only summarizing
/// ones after a HOT update on PG16+).
unsafe fn insert_index_entries(
    rel: pg_sys::Relation,
    indexes: &[Index],
    tup: pg_sys::HeapTuple,
    values: &mut [pg_sys::Datum],
    nulls: &mut [bool],
    which: Option<IndexUpdate>,
) {
    for ix in indexes {
        if which == Some(IndexUpdate::Summarizing) && !summarizing(ix.rel) {
            continue;
        }
        if ix.info.get().is_null() {
            ix.info.set(pg_sys::BuildIndexInfo(ix.rel));
        }
        let info = ix.info.get();
        let n = (*info).ii_NumIndexAttrs as usize;
        let mut iv = Vec::with_capacity(n);
        let mut inull = Vec::with_capacity(n);
        for i in 0..n {
            let a = (*info).ii_IndexAttrNumbers[i] as usize - 1;
            iv.push(values[a]);
            inull.push(nulls[a]);
        }
        let unique = if (*info).ii_Unique {
            pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
        } else {
            pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
        };
        index_insert(
            ix.rel,
            iv.as_mut_ptr(),
            inull.as_mut_ptr(),
            &mut (*tup).t_self,
            rel,
            unique,
            which.is_some(),
            info,
        );
    }
}

#[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
unsafe fn summarizing(index: pg_sys::Relation) -> bool {
    (*(*index).rd_indam).amsummarizing
}

#[cfg(not(any(feature = "pg16", feature = "pg17", feature = "pg18")))]
unsafe fn summarizing(_index: pg_sys::Relation) -> bool {
    false
}

#[cfg(feature = "pg13")]
#[allow(clippy::too_many_arguments)]
unsafe fn index_insert(
    index: pg_sys::Relation,
    values: *mut pg_sys::Datum,
    nulls: *mut bool,
    tid: pg_sys::ItemPointer,
    rel: pg_sys::Relation,
    unique: pg_sys::IndexUniqueCheck::Type,
    _unchanged: bool,
    info: *mut pg_sys::IndexInfo,
) {
    pg_sys::index_insert(index, values, nulls, tid, rel, unique, info);
}

#[cfg(not(feature = "pg13"))]
#[allow(clippy::too_many_arguments)]
unsafe fn index_insert(
    index: pg_sys::Relation,
    values: *mut pg_sys::Datum,
    nulls: *mut bool,
    tid: pg_sys::ItemPointer,
    rel: pg_sys::Relation,
    unique: pg_sys::IndexUniqueCheck::Type,
    unchanged: bool,
    info: *mut pg_sys::IndexInfo,
) {
    // indexUnchanged: an update that kept the key (a hint for bottom-up index deletion).
    pg_sys::index_insert(index, values, nulls, tid, rel, unique, unchanged, info);
}
