//! The distribution of per-request costs in a rollup (`llm_cost_core::hist`): SQL's side of the
//! `cost_hist` column of a table of sums. A histogram is stored flat, as an int8[] of
//! `[bucket, count, ...]` pairs sorted by bucket.

use llm_cost_core::hist;
use pgrx::prelude::*;

/// A flat histogram argument, or 22023 naming what is wrong with it.
fn histogram_arg(v: &[i64]) -> Vec<(u16, i64)> {
    hist::from_flat(v).unwrap_or_else(|| {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "llm_cost: not a cost histogram (an int8[] of [bucket, count, ...] pairs)",
        )
        .raise()
    })
}

/// The sum of two histograms (the merge of a table of sums and the aggregate's step). NULL reads
/// as empty.
#[pg_extern(immutable, parallel_safe, name = "_hist_add")]
pub fn hist_add(a: Option<Vec<i64>>, b: Option<Vec<i64>>) -> Vec<i64> {
    let mut h = histogram_arg(&a.unwrap_or_default());
    let o = histogram_arg(&b.unwrap_or_default());
    hist::merge(&mut h, &o).unwrap_or_else(|| super::accumulate::out_of_range());
    hist::to_flat(&h)
}

/// The histogram of one cost counted `sign` times: empty for NULL, a negative cost or one with
/// more than 16 decimals (the row path counts none of them either).
#[pg_extern(immutable, parallel_safe, name = "_hist_of")]
pub fn hist_of(cost: Option<pgrx::AnyNumeric>, sign: i64) -> Vec<i64> {
    let Some(units) = cost.and_then(|c| {
        // SAFETY: a numeric Datum, read for this call.
        unsafe { crate::pg::money::numeric_units(pgrx::IntoDatum::into_datum(c)?) }
    }) else {
        return vec![];
    };
    match units_bucket(units) {
        Some(b) if sign != 0 => vec![b as i64, sign],
        _ => vec![],
    }
}

// A table of sums rewrites its row's histogram on every write: the two functions below read and
// make the int8[] in place (pgrx's Vec<i64> conversions cost ~6% of a one-row INSERT with the two
// default rollups, measured with perf).

/// The elements of a one-dimensional int8[] without NULLs (or of an empty one), read in place
/// (detoasted first, into the current memory context, when stored compressed or out of line);
/// None when the datum is another kind of array.
///
/// # Safety
/// `d` is a non-NULL array datum, valid while the slice is used.
pub(super) unsafe fn int8_elements<'a>(d: pg_sys::Datum) -> Option<&'a [i64]> {
    // SAFETY: an array datum (the caller's contract) is a varlena.
    let a = unsafe { pg_sys::pg_detoast_datum(d.cast_mut_ptr()) } as *const pg_sys::ArrayType;
    // SAFETY: a detoasted array has the ArrayType header.
    let (ndim, dataoffset, elemtype) = unsafe { ((*a).ndim, (*a).dataoffset, (*a).elemtype) };
    if ndim == 0 {
        return Some(&[]);
    }
    if ndim != 1 || dataoffset != 0 || elemtype != pg_sys::INT8OID {
        return None;
    }
    let header = std::mem::size_of::<pg_sys::ArrayType>();
    // SAFETY: a one-dimensional array: its length follows the header, its data (no NULL
    // bitmap: dataoffset 0) starts at MAXALIGN(header + dims + lower bounds).
    unsafe {
        let n = *((a as *const u8).add(header) as *const i32);
        let data_at = maxalign(header + 2 * std::mem::size_of::<i32>());
        // The elements must lie within the value (VARSIZE of its 4-byte header, detoasted).
        let size = (*(a as *const u32) >> 2) as usize;
        if n < 0 || data_at + n as usize * std::mem::size_of::<i64>() > size {
            return None;
        }
        let data = (a as *const u8).add(data_at);
        Some(std::slice::from_raw_parts(
            data as *const i64,
            n.max(0) as usize,
        ))
    }
}

const fn maxalign(n: usize) -> usize {
    let a = pg_sys::MAXIMUM_ALIGNOF as usize;
    (n + a - 1) & !(a - 1)
}

/// A one-dimensional int8[] of `v` (lower bound 1; `{}` when empty), in the current memory
/// context: what `construct_array` makes, without a Datum per element.
pub(super) fn int8_array(v: &[i64]) -> pg_sys::Datum {
    let header = std::mem::size_of::<pg_sys::ArrayType>();
    let (ndim, data_at) = if v.is_empty() {
        (0, maxalign(header))
    } else {
        (1, maxalign(header + 2 * std::mem::size_of::<i32>()))
    };
    let size = data_at + std::mem::size_of_val(v);
    if size > 0x3fff_ffff {
        // (MaxAllocSize)
        super::accumulate::out_of_range();
    }
    // SAFETY: palloc0 of `size` bytes in the current context; every field written below lies
    // within it (the header, one dimension and lower bound, then the elements).
    unsafe {
        let p = pg_sys::palloc0(size) as *mut u8;
        // SET_VARSIZE: a 4-byte varlena header (little endian, lengths shifted by 2).
        *(p as *mut u32) = (size as u32) << 2;
        let a = p as *mut pg_sys::ArrayType;
        (*a).ndim = ndim;
        (*a).dataoffset = 0;
        (*a).elemtype = pg_sys::INT8OID;
        if ndim == 1 {
            *(p.add(header) as *mut i32) = v.len() as i32;
            *(p.add(header + 4) as *mut i32) = 1;
            std::ptr::copy_nonoverlapping(v.as_ptr(), p.add(data_at) as *mut i64, v.len());
        }
        pg_sys::Datum::from(p)
    }
}

/// The sum of two stored histograms (flat int8[]), for a table of sums' merge; None when either
/// is not one (the caller refuses the write).
///
/// # Safety
/// Both are non-NULL int8[] datums.
pub(super) unsafe fn merge_datums(a: pg_sys::Datum, b: pg_sys::Datum) -> Option<pg_sys::Datum> {
    // SAFETY: the caller's contract.
    let (x, y) = unsafe { (int8_elements(a)?, int8_elements(b)?) };
    let mut out = Vec::new();
    match hist::merge_flat(x, y, &mut out) {
        Ok(()) => Some(int8_array(&out)),
        Err(hist::FlatMergeError::Overflow) => super::accumulate::out_of_range(),
        Err(hist::FlatMergeError::NotAHistogram) => None,
        // (never written so by llm_cost: summed the slow way, any order)
        Err(hist::FlatMergeError::Unsorted) => {
            let mut h = hist::from_flat(x)?;
            hist::merge(&mut h, &hist::from_flat(y)?)
                .unwrap_or_else(|| super::accumulate::out_of_range());
            Some(int8_array(&hist::to_flat(&h)))
        }
    }
}

/// The bucket of a cost in 10^-16 USD (None: negative).
pub(super) fn units_bucket(units: i128) -> Option<u16> {
    u128::try_from(units).ok().map(hist::bucket)
}

/// The cost the `rank`-th smallest request of a histogram stands for (1-based): the midpoint of
/// its bucket, within 1/32 (3.125%) of the exact cost of that rank; NULL when it holds fewer.
#[pg_extern(immutable, parallel_safe, strict, name = "histogram_cost_at_rank")]
fn histogram_cost_at_rank(
    histogram: Vec<i64>,
    rank: i64,
) -> Option<crate::pg::money::NumericDatum> {
    let h = histogram_arg(&histogram);
    let b = hist::bucket_at_rank(&h, rank)?;
    let m = i128::try_from(hist::midpoint(b)).ok()?;
    Some(crate::pg::money::cost_to_numeric_datum(
        llm_cost_core::pricing::Cost(m),
    ))
}

/// How many requests a histogram counts.
#[pg_extern(immutable, parallel_safe, strict, name = "histogram_requests")]
fn histogram_requests(histogram: Vec<i64>) -> i64 {
    histogram_arg(&histogram)
        .iter()
        .try_fold(0i64, |t, (_, n)| t.checked_add(*n))
        .unwrap_or_else(|| super::accumulate::out_of_range())
}

// The aggregate `llm_cost.cost_histogram_sum(bigint[])` (sql/rollups.sql) over an internal state:
// a dense `hist::Dense` in the aggregate's memory context (dropped with it), so a row adds its
// few buckets instead of decoding and re-encoding the whole sum (the bigint[] state of 0.11.0
// made a month of a 5,000-group rollup take 0.5-0.9 s). Version-1 C functions written by hand:
// pgrx's argument wrappers do not reach the aggregate's context.

/// The aggregate's memory context; 0A000 when not called as an aggregate.
///
/// # Safety
/// `fcinfo` is the call's.
unsafe fn agg_context(fcinfo: pg_sys::FunctionCallInfo, what: &str) -> pg_sys::MemoryContext {
    let mut cx: pg_sys::MemoryContext = std::ptr::null_mut();
    // SAFETY: fcinfo is the call's (the caller's contract).
    if unsafe { pg_sys::AggCheckCallContext(fcinfo, &mut cx) } == 0 || cx.is_null() {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("llm_cost.{what} is a step of the aggregate llm_cost.cost_histogram_sum"),
        )
        .raise();
    }
    cx
}

/// Argument `i` of the call, None when NULL.
///
/// # Safety
/// `fcinfo` is the call's and has more than `i` arguments.
unsafe fn arg(fcinfo: pg_sys::FunctionCallInfo, i: usize) -> Option<pg_sys::Datum> {
    // SAFETY: the caller's contract; the SQL declarations give each function its arguments.
    let a = unsafe { (*fcinfo).args.as_slice((*fcinfo).nargs as usize) };
    a.get(i).filter(|a| !a.isnull).map(|a| a.value)
}

/// The state of argument `i`, made in the aggregate's context when there is none yet.
///
/// # Safety
/// `fcinfo` is the call's; argument `i` is NULL or a state these functions made.
unsafe fn state(fcinfo: pg_sys::FunctionCallInfo, i: usize, what: &str) -> *mut hist::Dense {
    // SAFETY: the caller's contract.
    let cx = unsafe { agg_context(fcinfo, what) };
    // SAFETY: the caller's contract: a non-NULL internal argument is a *mut Dense made below.
    match unsafe { arg(fcinfo, i) } {
        Some(d) => d.cast_mut_ptr::<hist::Dense>(),
        None => pgrx::PgMemoryContexts::For(cx).leak_and_drop_on_delete(hist::Dense::default()),
    }
}

fn not_a_histogram() -> ! {
    crate::pg::fail::user(
        pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        "llm_cost: not a cost histogram (an int8[] of [bucket, count, ...] pairs)",
    )
    .raise()
}

/// Step: adds a histogram (NULL adds nothing) to the state.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn llm_cost_hist_acc(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is the call's: (internal, bigint[]) by the declaration in sql/rollups.sql.
    let s = unsafe { state(fcinfo, 0, "_hist_acc") };
    // SAFETY: as above; argument 1 is a bigint[] datum valid for the call.
    if let Some(d) = unsafe { arg(fcinfo, 1) } {
        // SAFETY: a non-NULL int8[] datum (the declaration's type).
        let a =
            unsafe { pgrx::Array::<i64>::from_polymorphic_datum(d, false, pg_sys::INT8ARRAYOID) };
        let Some(a) = a else { not_a_histogram() };
        if a.len() % 2 != 0 {
            not_a_histogram();
        }
        let mut it = a.iter();
        // SAFETY: s is this group's state, alive in the aggregate's context.
        let dense = unsafe { &mut *s };
        while let (Some(b), Some(n)) = (it.next(), it.next()) {
            let (Some(b), Some(n)) = (b, n) else {
                not_a_histogram()
            };
            let Ok(b) = u16::try_from(b) else {
                not_a_histogram()
            };
            if b > hist::MAX_BUCKET {
                not_a_histogram();
            }
            dense
                .add(b, n)
                .unwrap_or_else(|| super::accumulate::out_of_range());
        }
    }
    pg_sys::Datum::from(s)
}

/// Combine (parallel aggregation): adds the second state into the first.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn llm_cost_hist_combine(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is the call's: (internal, internal), states made by these functions.
    let s = unsafe { state(fcinfo, 0, "_hist_combine") };
    // SAFETY: as above.
    if let Some(o) = unsafe { arg(fcinfo, 1) } {
        // SAFETY: a live state of this aggregate, distinct from the first (Postgres passes two).
        let other = unsafe { &*o.cast_mut_ptr::<hist::Dense>() };
        // SAFETY: the first state, live in the aggregate's context.
        let this = unsafe { &mut *s };
        this.merge(other)
            .unwrap_or_else(|| super::accumulate::out_of_range());
    }
    pg_sys::Datum::from(s)
}

/// The flat histogram of a state (NULL: empty).
fn flat_of(state: Option<pg_sys::Datum>) -> Vec<i64> {
    match state {
        Some(d) => {
            // SAFETY: callers pass a state these functions made (a *mut Dense alive in the
            // aggregate's context) or None.
            let dense = unsafe { &*d.cast_mut_ptr::<hist::Dense>() };
            hist::to_flat(&dense.to_sparse())
        }
        None => vec![],
    }
}

/// Final: the flat histogram (`{}` for no rows).
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn llm_cost_hist_final(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is the call's: (internal), a state of this aggregate or NULL.
    let flat = flat_of(unsafe { arg(fcinfo, 0) });
    use pgrx::IntoDatum;
    flat.into_datum().unwrap_or(pg_sys::Datum::from(0usize))
}

/// Serialize (to send a state between parallel workers): the flat histogram as bytea.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn llm_cost_hist_serial(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is the call's: (internal), a state of this aggregate (strict: not NULL).
    let flat = flat_of(unsafe { arg(fcinfo, 0) });
    let bytes: Vec<u8> = flat.iter().flat_map(|v| v.to_le_bytes()).collect();
    use pgrx::IntoDatum;
    bytes.into_datum().unwrap_or(pg_sys::Datum::from(0usize))
}

/// Deserialize: a state from what `llm_cost_hist_serial` wrote.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn llm_cost_hist_deserial(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is the call's: (bytea, internal); the new state goes in the aggregate's context.
    let s = unsafe {
        let cx = agg_context(fcinfo, "_hist_deserial");
        pgrx::PgMemoryContexts::For(cx).leak_and_drop_on_delete(hist::Dense::default())
    };
    // SAFETY: fcinfo is the call's; argument 0 is a bytea (strict: not NULL).
    let arg0 = unsafe { arg(fcinfo, 0) };
    let bytes = arg0
        .and_then(|d| {
            // SAFETY: a bytea datum valid for the call.
            unsafe { <&[u8] as FromDatum>::from_polymorphic_datum(d, false, pg_sys::BYTEAOID) }
        })
        .unwrap_or_default();
    if bytes.len() % 16 != 0 {
        not_a_histogram();
    }
    let flat: Vec<i64> = bytes
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    // SAFETY: the state just made, alive in the aggregate's context.
    unsafe { &mut *s }
        .add_flat(&flat)
        .unwrap_or_else(|| not_a_histogram());
    pg_sys::Datum::from(s)
}

const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

/// `pg_finfo_` record of `llm_cost_hist_acc`: a version-1 function.
#[no_mangle]
pub extern "C" fn pg_finfo_llm_cost_hist_acc() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// `pg_finfo_` record of `llm_cost_hist_combine`: a version-1 function.
#[no_mangle]
pub extern "C" fn pg_finfo_llm_cost_hist_combine() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// `pg_finfo_` record of `llm_cost_hist_final`: a version-1 function.
#[no_mangle]
pub extern "C" fn pg_finfo_llm_cost_hist_final() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// `pg_finfo_` record of `llm_cost_hist_serial`: a version-1 function.
#[no_mangle]
pub extern "C" fn pg_finfo_llm_cost_hist_serial() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// `pg_finfo_` record of `llm_cost_hist_deserial`: a version-1 function.
#[no_mangle]
pub extern "C" fn pg_finfo_llm_cost_hist_deserial() -> &'static pg_sys::Pg_finfo_record {
    &V1
}
