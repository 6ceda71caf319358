//! Money between Rust and PostgreSQL (plumbing): exact costs as `numeric` Datums and back. The arithmetic itself is `llm_cost_core::pricing`; the
//! binary numeric form is `llm_cost_core::numeric`.

use llm_cost_core::pricing::Cost;
use pgrx::prelude::*;
use pgrx::AnyNumeric;

/// A cost as a numeric Datum (palloc'd in the current memory context). Without a typmod it is
/// built directly in numeric's binary form (`numeric.rs`), exactly as `numeric_in` would build
/// it from the cost's plain text; with one (-1 for none), via `numeric_in`, which rounds it to
/// the column's declared scale.
pub fn cost_datum(c: Cost, typmod: i32) -> pg_sys::Datum {
    if typmod < 0 {
        let body = llm_cost_core::numeric::encode_units(c.0);
        let body = body.as_slice();
        // SAFETY: a palloc'd varlena of exactly header + body, its size set before it is used.
        unsafe {
            let len = pg_sys::VARHDRSZ + body.len();
            let p = pg_sys::palloc(len) as *mut u8;
            std::ptr::copy_nonoverlapping(body.as_ptr(), p.add(pg_sys::VARHDRSZ), body.len());
            pgrx::set_varsize_4b(p as *mut pg_sys::varlena, len as i32);
            return pg_sys::Datum::from(p);
        }
    }
    let mut buf = [0u8; 64];
    let len = c.write_plain(&mut buf[..63]);
    buf[len] = 0;
    // SAFETY: numeric_in(cstring, oid, typmod) with a NUL-terminated plain decimal.
    let d = unsafe {
        pgrx::direct_function_call_as_datum(
            pg_sys::numeric_in,
            &[
                Some(pg_sys::Datum::from(buf.as_ptr())),
                Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                Some(pg_sys::Datum::from(typmod)),
            ],
        )
    };
    d.unwrap_or_else(|| {
        crate::pg::fail::internal(format!("llm_cost: cannot represent cost {c} as numeric"))
    })
}

/// A numeric Datum (possibly packed or toasted) as a count of 10^-16 USD, when it has at most 16
/// decimals and fits; None otherwise (NaN, infinities, more decimals).
///
/// # Safety
/// `d` must be a numeric Datum.
pub unsafe fn numeric_units(d: pg_sys::Datum) -> Option<i128> {
    llm_cost_core::numeric::decode_units(numeric_body(d))
}

/// Whether a numeric Datum is NaN, Infinity or -Infinity.
///
/// # Safety
/// `d` must be a numeric Datum.
pub unsafe fn numeric_special(d: pg_sys::Datum) -> bool {
    llm_cost_core::numeric::is_special(numeric_body(d))
}

/// A numeric Datum's binary body (header and digits), valid for the current call.
unsafe fn numeric_body<'a>(d: pg_sys::Datum) -> &'a [u8] {
    let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
    std::slice::from_raw_parts(
        pgrx::varlena::vardata_any(v) as *const u8,
        pgrx::varlena::varsize_any_exhdr(v),
    )
}

/// A numeric Datum built by `cost_datum` (palloc'd in the call's memory context), returned to
/// Postgres as is: no round trip through `AnyNumeric`, which copies it twice.
pub struct NumericDatum(pub pg_sys::Datum);

pgrx::impl_sql_translatable!(NumericDatum, "numeric");

unsafe impl pgrx::callconv::BoxRet for NumericDatum {
    unsafe fn box_into<'fcx>(
        self,
        fcinfo: &mut pgrx::callconv::FcInfo<'fcx>,
    ) -> pgrx::datum::Datum<'fcx> {
        // SAFETY: the datum was built by cost_datum in the call's memory context.
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

/// A cost as a numeric Datum returned by a SQL function.
pub fn cost_to_numeric_datum(c: Cost) -> NumericDatum {
    NumericDatum(cost_datum(c, -1))
}

pub fn cost_to_numeric(c: Cost) -> AnyNumeric {
    // SAFETY: cost_datum builds a numeric datum.
    unsafe { AnyNumeric::from_datum(cost_datum(c, -1), false) }
        .unwrap_or_else(|| crate::pg::fail::internal("llm_cost: numeric conversion failed"))
}
