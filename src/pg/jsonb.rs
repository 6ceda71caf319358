//! A jsonb value read in place, as a `llm_cost_core::usage_json::Doc`: keys are looked up in the binary
//! container (`getKeyJsonValueFromContainer`, a binary search) and numbers decoded from numeric's
//! binary form. No text, no serde: this is the cost trigger's path for a usage column.

use llm_cost_core::usage_json::{Doc, Field};
use pgrx::prelude::*;

/// A detoasted jsonb (valid for the current call).
pub struct JsonbDoc {
    root: *mut pg_sys::JsonbContainer,
}

impl JsonbDoc {
    /// # Safety
    /// `d` must be a jsonb Datum.
    pub unsafe fn from_datum(d: pg_sys::Datum) -> JsonbDoc {
        let j = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::Jsonb;
        JsonbDoc {
            root: std::ptr::addr_of_mut!((*j).root),
        }
    }

    fn is_obj(c: *mut pg_sys::JsonbContainer) -> bool {
        // SAFETY: c points into the jsonb document being read (JsonbDoc holds it).
        unsafe { (*c).header & pg_sys::JB_FOBJECT != 0 }
    }

    /// The value at `path`, if every step is an object holding the key.
    fn lookup(&self, path: &[&str]) -> Option<pg_sys::JsonbValue> {
        let mut c = self.root;
        let mut out: Option<pg_sys::JsonbValue> = None;
        for (i, k) in path.iter().enumerate() {
            if !Self::is_obj(c) {
                return None;
            }
            let mut v = pg_sys::JsonbValue {
                type_: 0,
                val: pg_sys::JsonbValue__bindgen_ty_1 { boolean: false },
            };
            // SAFETY: c is a container of the document, the key a byte slice that outlives the call.
            let found = unsafe {
                pg_sys::getKeyJsonValueFromContainer(
                    c,
                    k.as_ptr() as *const std::ffi::c_char,
                    k.len() as i32,
                    &mut v,
                )
            };
            if found.is_null() {
                return None;
            }
            if i + 1 < path.len() {
                if v.type_ != pg_sys::jbvType::jbvBinary {
                    return None;
                }
                // SAFETY: a jbvBinary value (checked above) holds a container.
                c = unsafe { v.val.binary.data };
            }
            out = Some(v);
        }
        out
    }

    fn numeric_body<'a>(n: pg_sys::Numeric) -> &'a [u8] {
        // SAFETY: a jbvNumeric value's numeric varlena, inside the document.
        unsafe {
            let v = n as *mut pg_sys::varlena;
            std::slice::from_raw_parts(
                pgrx::varlena::vardata_any(v) as *const u8,
                pgrx::varlena::varsize_any_exhdr(v),
            )
        }
    }

    fn numeric_text(n: pg_sys::Numeric) -> String {
        // SAFETY: a numeric datum inside the document.
        unsafe { pgrx::AnyNumeric::from_datum(pg_sys::Datum::from(n), false) }
            .map(|x| x.to_string())
            .unwrap_or_else(|| "a number".into())
    }

    fn describe(v: &pg_sys::JsonbValue) -> String {
        match v.type_ {
            // SAFETY: a jbvString value: pointer and length into the document.
            pg_sys::jbvType::jbvString => unsafe {
                let s = std::slice::from_raw_parts(
                    v.val.string.val as *const u8,
                    v.val.string.len as usize,
                );
                format!("\"{}\"", String::from_utf8_lossy(s))
            },
            // SAFETY: a jbvBool value.
            pg_sys::jbvType::jbvBool => unsafe { v.val.boolean.to_string() },
            pg_sys::jbvType::jbvBinary => {
                // SAFETY: a jbvBinary value holds a container.
                if Self::is_obj(unsafe { v.val.binary.data }) {
                    "an object".into()
                } else {
                    "an array".into()
                }
            }
            _ => "a value that is not a number".into(),
        }
    }
}

const UNIT: i128 = 10_000_000_000_000_000; // 10^16: units of a cost per integer

impl Doc for JsonbDoc {
    fn field(&self, path: &[&str]) -> Field {
        if path.is_empty() {
            // The document itself: JSON null is what `usage_json::kind` asks about.
            if Self::is_obj(self.root) {
                return Field::Bad("an object".into());
            }
            let mut v = pg_sys::JsonbValue {
                type_: 0,
                val: pg_sys::JsonbValue__bindgen_ty_1 { boolean: false },
            };
            // SAFETY: the document's root container; a scalar is read into `v`.
            let scalar = unsafe { pg_sys::JsonbExtractScalar(self.root, &mut v) };
            return if scalar && v.type_ == pg_sys::jbvType::jbvNull {
                Field::Null
            } else {
                Field::Bad("not an object".into())
            };
        }
        let Some(v) = self.lookup(path) else {
            return Field::Missing;
        };
        match v.type_ {
            pg_sys::jbvType::jbvNull => Field::Null,
            pg_sys::jbvType::jbvNumeric => {
                // SAFETY: a jbvNumeric value.
                let n = unsafe { v.val.numeric };
                match llm_cost_core::numeric::decode_units(Self::numeric_body(n)) {
                    Some(u) if u >= 0 && u % UNIT == 0 && u / UNIT <= i64::MAX as i128 => {
                        Field::Count((u / UNIT) as i64)
                    }
                    _ => Field::Bad(Self::numeric_text(n)),
                }
            }
            _ => Field::Bad(Self::describe(&v)),
        }
    }

    fn money(&self, path: &[&str]) -> Result<Option<i128>, String> {
        let Some(v) = self.lookup(path) else {
            return Ok(None);
        };
        match v.type_ {
            pg_sys::jbvType::jbvNull => Ok(None),
            pg_sys::jbvType::jbvNumeric => {
                // SAFETY: a jbvNumeric value.
                let n = unsafe { v.val.numeric };
                match llm_cost_core::numeric::decode_units(Self::numeric_body(n)) {
                    Some(u) if u >= 0 => Ok(Some(u)),
                    _ => Err(Self::numeric_text(n)),
                }
            }
            _ => Err(Self::describe(&v)),
        }
    }

    fn text(&self, path: &[&str]) -> Option<String> {
        let v = self.lookup(path)?;
        if v.type_ != pg_sys::jbvType::jbvString {
            return None;
        }
        // SAFETY: a jbvString value: pointer and length into the document.
        let b = unsafe {
            std::slice::from_raw_parts(v.val.string.val as *const u8, v.val.string.len as usize)
        };
        Some(String::from_utf8_lossy(b).into_owned())
    }

    fn array_sum(&self, path: &[&str], match_key: &str, value: &str, count_key: &str) -> Field {
        let Some(v) = self.lookup(path) else {
            return Field::Missing;
        };
        if v.type_ != pg_sys::jbvType::jbvBinary {
            return Field::Missing;
        }
        // SAFETY: a jbvBinary value holds a container.
        let arr = unsafe { v.val.binary.data };
        // SAFETY: arr is a container of the document; the header says whether it is an array.
        let (is_array, n) = unsafe {
            (
                (*arr).header & pg_sys::JB_FARRAY != 0,
                (*arr).header & pg_sys::JB_CMASK,
            )
        };
        if !is_array {
            return Field::Missing;
        }
        let mut total: Option<i64> = None;
        for i in 0..n {
            // SAFETY: i is below the array's element count; the value is palloc'd in this call's context.
            let e = unsafe { pg_sys::getIthJsonbValueFromContainer(arr, i) };
            if e.is_null() {
                continue;
            }
            // SAFETY: a value getIthJsonbValueFromContainer returned.
            let e = unsafe { &*e };
            if e.type_ != pg_sys::jbvType::jbvBinary {
                continue;
            }
            // SAFETY: a jbvBinary element holds a container.
            let root = unsafe { e.val.binary.data };
            let elem = JsonbDoc { root };
            let m = elem.lookup(&[match_key]);
            let matches = match m {
                Some(mv) if mv.type_ == pg_sys::jbvType::jbvString => {
                    // SAFETY: a jbvString value: pointer and length into the document.
                    let s = unsafe {
                        std::slice::from_raw_parts(
                            mv.val.string.val as *const u8,
                            mv.val.string.len as usize,
                        )
                    };
                    s == value.as_bytes()
                }
                _ => false,
            };
            if !matches {
                continue;
            }
            if count_key.is_empty() {
                total = Some(total.unwrap_or(0).saturating_add(1));
                continue;
            }
            match elem.field(&[count_key]) {
                Field::Count(c) => total = Some(total.unwrap_or(0).saturating_add(c)),
                Field::Missing | Field::Null => total = Some(total.unwrap_or(0)),
                bad => return bad,
            }
        }
        total.map(Field::Count).unwrap_or(Field::Missing)
    }

    fn is_object(&self, path: &[&str]) -> bool {
        if path.is_empty() {
            return Self::is_obj(self.root);
        }
        match self.lookup(path) {
            Some(v) if v.type_ == pg_sys::jbvType::jbvBinary => {
                // SAFETY: a jbvBinary value holds a container.
                Self::is_obj(unsafe { v.val.binary.data })
            }
            _ => false,
        }
    }
}
