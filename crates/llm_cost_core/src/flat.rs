//! The price catalog's flat form: one position-independent byte image, built once and read in
//! place. The extension keeps it in dynamic shared memory, one copy per catalog version for the
//! whole server, and every backend reads the same pages (`docs/design.md`, "One catalog per
//! server"); without shared memory a backend keeps its own image, read by the same code.
//!
//! Layout: a [`Header`], then sections of fixed-size records (8-byte aligned, no padding bytes,
//! integers only: no pointers, no `Option`, so an image is plain bytes) and one blob of UTF-8
//! strings. Records refer to each other by index and to strings by (offset, length).
//! Look-ups are binary searches over sorted key records; match rules are a node array evaluated
//! where it lies (a regular expression is compiled on first use, per reader).

use std::mem::size_of;

/// "LLMCCAT1": what an image starts with.
pub const MAGIC: u64 = u64::from_le_bytes(*b"LLMCCAT1");
/// "None" for an index or a string.
pub const NONE: u32 = u32::MAX;
/// "None" for a price (prices are never negative) or a time-of-day bound.
pub const NO_PRICE: i64 = -1;
pub const NO_TIME: i64 = i64::MIN;

/// (offset, length): a string in the blob (bytes) or a run of records (count).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub off: u32,
    pub len: u32,
}

impl Span {
    pub const NONE: Span = Span { off: NONE, len: 0 };
    pub fn is_none(self) -> bool {
        self.off == NONE
    }
}

/// Sections of an image, in order.
pub const S_STRINGS: usize = 0;
pub const S_MODELS: usize = 1;
pub const S_ROWS: usize = 2;
pub const S_EXTRAS: usize = 3;
pub const S_PROVIDERS: usize = 4;
pub const S_U32: usize = 5;
pub const S_IDS: usize = 6;
pub const S_PROVIDER_KEYS: usize = 7;
pub const S_ALIASES: usize = 8;
pub const S_NODES: usize = 9;
pub const SECTIONS: usize = 10;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Header {
    pub magic: u64,
    /// [`layout`] of the code that wrote the image: a reader refuses another layout.
    pub layout: u64,
    /// Bytes in the image.
    pub len: u64,
    /// Byte offset and record count of each section (the blob: byte count).
    pub sections: [Span; SECTIONS],
    /// Providers to scan for a name without a host (indexes, in `S_U32`).
    pub scan: Span,
    /// Price rows read, for statistics.
    pub rows_read: u32,
    pub _pad: u32,
}

/// A catalog model: (provider, model) with its price rows and match rule.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModelRec {
    pub provider: u32,
    /// Root node of the parsed match rule; NONE: matched by its id.
    pub rule: u32,
    pub model: Span,
    /// The rule as stored (JSON), NONE without one.
    pub rule_text: Span,
    /// Its rows in `S_ROWS`.
    pub rows: Span,
}

/// A price row (prices in 10^-10 USD per 1M tokens, NO_PRICE for none).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RowRec {
    pub id: i64,
    pub min_input_tokens: i64,
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write_5m: i64,
    pub cache_write_1h: i64,
    pub valid_from: i64,
    pub valid_to: i64,
    pub window_from: i64,
    pub window_to: i64,
    /// Index in `S_EXTRAS`, NONE without modality prices or fees.
    pub extra: u32,
    pub rank: u32,
    pub tier: u32,
    pub _pad: u32,
}

/// Modality prices and fees of a row, NO_PRICE for none.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExtraRec(pub [i64; 8]);

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProviderRec {
    pub id: Span,
    /// Own models in match order (model indexes in `S_U32`).
    pub models: Span,
    /// lower(model id) -> model, sorted (`S_IDS`).
    pub ids: Span,
    /// Fallback providers (indexes in `S_U32`).
    pub fallback: Span,
    pub model_match: u32,
    pub provider_match: u32,
}

/// A sorted key and what it names.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KeyRec {
    pub key: Span,
    pub val: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AliasRec {
    pub key: Span,
    pub model: Span,
    pub provider: Span,
}

pub const N_EQUALS: u32 = 1;
pub const N_STARTS: u32 = 2;
pub const N_ENDS: u32 = 3;
pub const N_CONTAINS: u32 = 4;
pub const N_REGEX: u32 = 5;
pub const N_OR: u32 = 6;
pub const N_AND: u32 = 7;

/// A match rule node: a text clause (`s`, lower case), a regular expression (`s` the pattern,
/// `prefix` its literal start), or `or`/`and` over `kids` (node indexes in `S_U32`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NodeRec {
    pub kind: u32,
    pub _pad: u32,
    pub s: Span,
    pub prefix: Span,
    pub kids: Span,
}

/// The record sizes and format version: two builds agree on an image only when this does.
pub fn layout() -> u64 {
    let sizes = [
        size_of::<Header>(),
        size_of::<ModelRec>(),
        size_of::<RowRec>(),
        size_of::<ExtraRec>(),
        size_of::<ProviderRec>(),
        size_of::<KeyRec>(),
        size_of::<AliasRec>(),
        size_of::<NodeRec>(),
    ];
    sizes.iter().fold(1u64, |h, s| {
        h.wrapping_mul(1_000_003).wrapping_add(*s as u64)
    })
}

/// Record types of an image: plain integers, no padding.
///
/// # Safety
/// Implementors are `repr(C)`, made of integers only, with no padding bytes.
pub unsafe trait Record: Copy {}
unsafe impl Record for u32 {}
unsafe impl Record for u8 {}
unsafe impl Record for Header {}
unsafe impl Record for ModelRec {}
unsafe impl Record for RowRec {}
unsafe impl Record for ExtraRec {}
unsafe impl Record for ProviderRec {}
unsafe impl Record for KeyRec {}
unsafe impl Record for AliasRec {}
unsafe impl Record for NodeRec {}

/// Builds an image: strings interned into one blob, sections appended in order.
#[derive(Default)]
pub struct Writer {
    pub strings: Vec<u8>,
    interned: std::collections::HashMap<String, Span>,
    pub models: Vec<ModelRec>,
    pub rows: Vec<RowRec>,
    pub extras: Vec<ExtraRec>,
    pub providers: Vec<ProviderRec>,
    pub u32s: Vec<u32>,
    pub ids: Vec<KeyRec>,
    pub provider_keys: Vec<KeyRec>,
    pub aliases: Vec<AliasRec>,
    pub nodes: Vec<NodeRec>,
}

impl Writer {
    /// A string in the blob (the same text is stored once).
    pub fn str(&mut self, s: &str) -> Span {
        if let Some(sp) = self.interned.get(s) {
            return *sp;
        }
        let sp = Span {
            off: self.strings.len() as u32,
            len: s.len() as u32,
        };
        self.strings.extend_from_slice(s.as_bytes());
        self.interned.insert(s.to_string(), sp);
        sp
    }

    pub fn opt_str(&mut self, s: Option<&str>) -> Span {
        s.map_or(Span::NONE, |s| self.str(s))
    }

    /// A run of u32s.
    pub fn list(&mut self, v: impl IntoIterator<Item = u32>) -> Span {
        let off = self.u32s.len() as u32;
        self.u32s.extend(v);
        Span {
            off,
            len: self.u32s.len() as u32 - off,
        }
    }

    fn text(&self, s: Span) -> &[u8] {
        &self.strings[s.off as usize..(s.off + s.len) as usize]
    }

    /// Sorts a run of key records by their key bytes (what the readers' binary search expects).
    pub fn sort_keys(&self, keys: &mut [KeyRec]) {
        keys.sort_by(|a, b| self.text(a.key).cmp(self.text(b.key)));
    }

    /// The image, 8-byte aligned.
    pub fn finish(self, scan: Span, rows_read: u32) -> Vec<u64> {
        fn put<T: Record>(out: &mut Vec<u8>, v: &[T]) -> Span {
            while out.len() % 8 != 0 {
                out.push(0);
            }
            let off = out.len() as u32;
            // SAFETY: T is a Record: plain integers without padding, so its bytes are initialised.
            let bytes = unsafe {
                std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v))
            };
            out.extend_from_slice(bytes);
            Span {
                off,
                len: v.len() as u32,
            }
        }
        let mut out = vec![0u8; size_of::<Header>()];
        let mut h = Header {
            magic: MAGIC,
            layout: layout(),
            scan,
            rows_read,
            ..Default::default()
        };
        h.sections[S_MODELS] = put(&mut out, &self.models);
        h.sections[S_ROWS] = put(&mut out, &self.rows);
        h.sections[S_EXTRAS] = put(&mut out, &self.extras);
        h.sections[S_PROVIDERS] = put(&mut out, &self.providers);
        h.sections[S_U32] = put(&mut out, &self.u32s);
        h.sections[S_IDS] = put(&mut out, &self.ids);
        h.sections[S_PROVIDER_KEYS] = put(&mut out, &self.provider_keys);
        h.sections[S_ALIASES] = put(&mut out, &self.aliases);
        h.sections[S_NODES] = put(&mut out, &self.nodes);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        h.sections[S_STRINGS] = Span {
            off: out.len() as u32,
            len: self.strings.len() as u32,
        };
        out.extend_from_slice(&self.strings);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        h.len = out.len() as u64;
        // SAFETY: Header is a Record.
        let hb = unsafe {
            std::slice::from_raw_parts(&h as *const Header as *const u8, size_of::<Header>())
        };
        out[..size_of::<Header>()].copy_from_slice(hb);
        let mut words = vec![0u64; out.len() / 8];
        // SAFETY: both buffers hold out.len() bytes; u64 has no invalid bit patterns.
        unsafe {
            std::ptr::copy_nonoverlapping(out.as_ptr(), words.as_mut_ptr() as *mut u8, out.len())
        };
        words
    }
}

/// An image read in place.
#[derive(Clone, Copy)]
pub struct Image {
    base: *const u8,
    pub header: Header,
}

impl Image {
    /// Reads the image at `base` (8-byte aligned, `len` bytes), checking its header and that
    /// every section lies inside it.
    ///
    /// # Safety
    /// `base..base+len` must stay readable and unchanged while the image is used.
    pub unsafe fn open(base: *const u8, len: usize) -> Result<Image, String> {
        if (base as usize) % 8 != 0 || len < size_of::<Header>() {
            return Err("price catalog image: misaligned or too short".into());
        }
        // SAFETY: aligned and long enough (checked above); Header is plain integers.
        let header = unsafe { *(base as *const Header) };
        if header.magic != MAGIC || header.layout != layout() || header.len as usize != len {
            return Err("price catalog image: not one this build wrote".into());
        }
        let sizes = [
            1,
            size_of::<ModelRec>(),
            size_of::<RowRec>(),
            size_of::<ExtraRec>(),
            size_of::<ProviderRec>(),
            4,
            size_of::<KeyRec>(),
            size_of::<KeyRec>(),
            size_of::<AliasRec>(),
            size_of::<NodeRec>(),
        ];
        for (s, size) in header.sections.iter().zip(sizes) {
            let end = s.off as usize + s.len as usize * size;
            if s.off as usize % 8 != 0 || end > len {
                return Err("price catalog image: a section lies outside it".into());
            }
        }
        Ok(Image { base, header })
    }

    /// The records of section `sec`.
    #[inline]
    pub fn section<T: Record>(&self, sec: usize) -> &[T] {
        let s = self.header.sections[sec];
        // SAFETY: `open` checked the section lies inside the image and is aligned; T is a Record.
        unsafe {
            std::slice::from_raw_parts(self.base.add(s.off as usize) as *const T, s.len as usize)
        }
    }

    /// A run of u32s.
    #[inline]
    pub fn list(&self, sp: Span) -> &[u32] {
        if sp.is_none() {
            return &[];
        }
        let all = self.section::<u32>(S_U32);
        all.get(sp.off as usize..(sp.off + sp.len) as usize)
            .unwrap_or(&[])
    }

    /// A string of the blob ("" for NONE).
    #[inline]
    pub fn str(&self, sp: Span) -> &str {
        if sp.is_none() {
            return "";
        }
        let blob = self.section::<u8>(S_STRINGS);
        match blob.get(sp.off as usize..(sp.off as usize + sp.len as usize)) {
            // SAFETY: the writer stored whole `str`s; a span never cuts one.
            Some(b) => unsafe { std::str::from_utf8_unchecked(b) },
            None => "",
        }
    }

    pub fn opt_str(&self, sp: Span) -> Option<&str> {
        (!sp.is_none()).then(|| self.str(sp))
    }

    /// Binary search of sorted key records for `key`.
    #[inline]
    pub fn find(&self, keys: &[KeyRec], key: &str) -> Option<u32> {
        keys.binary_search_by(|k| self.str(k.key).as_bytes().cmp(key.as_bytes()))
            .ok()
            .map(|i| keys[i].val)
    }

    pub fn bytes(&self) -> usize {
        self.header.len as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_no_padding() {
        // Each record is the sum of its fields: nothing uninitialised is ever copied.
        assert_eq!(size_of::<Span>(), 8);
        assert_eq!(size_of::<ModelRec>(), 4 + 4 + 8 * 3);
        assert_eq!(size_of::<RowRec>(), 11 * 8 + 4 * 4);
        assert_eq!(size_of::<ProviderRec>(), 8 * 4 + 4 * 2);
        assert_eq!(size_of::<KeyRec>(), 16);
        assert_eq!(size_of::<AliasRec>(), 24);
        assert_eq!(size_of::<NodeRec>(), 8 + 8 * 3);
        assert_eq!(size_of::<Header>(), 24 + 8 * SECTIONS + 8 + 8);
    }

    #[test]
    fn an_image_round_trips_and_refuses_damage() {
        let mut w = Writer::default();
        let a = w.str("alpha");
        assert_eq!(w.str("alpha"), a);
        let b = w.str("beta");
        let mut keys = vec![
            KeyRec {
                key: b,
                val: 2,
                _pad: 0,
            },
            KeyRec {
                key: a,
                val: 1,
                _pad: 0,
            },
        ];
        w.sort_keys(&mut keys);
        w.ids = keys;
        let l = w.list([7, 8, 9]);
        let img = w.finish(l, 3);
        let len = img.len() * 8;
        // SAFETY: img lives to the end of the test.
        let r = unsafe { Image::open(img.as_ptr() as *const u8, len) }.unwrap();
        assert_eq!(r.find(r.section(S_IDS), "alpha"), Some(1));
        assert_eq!(r.find(r.section(S_IDS), "beta"), Some(2));
        assert_eq!(r.find(r.section(S_IDS), "gamma"), None);
        assert_eq!(r.list(r.header.scan), &[7, 8, 9]);
        assert_eq!(r.str(b), "beta");
        // SAFETY: as above.
        assert!(unsafe { Image::open(img.as_ptr() as *const u8, len - 8) }.is_err());
        let mut bad = img.clone();
        bad[1] ^= 1;
        // SAFETY: as above.
        assert!(unsafe { Image::open(bad.as_ptr() as *const u8, len) }.is_err());
    }
}
