//! Pure cost arithmetic: no Postgres in here, so everything is unit-tested without a server.
//!
//! Units:
//! - A price is USD per 1,000,000 tokens, held as [`Price`]: an integer count of
//!   10^-10 USD per 1M tokens (so at most 10 decimal places, below 1,000,000 USD per 1M tokens;
//!   the catalog's CHECK constraints enforce both).
//! - A cost is USD, held as [`Cost`]: an integer count of 10^-16 USD (10^-10 / 10^6).
//!
//! With those bounds every product `tokens * price` is below 2^63 * 10^16 < 2^117 and the sum of
//! the four token kinds stays below 2^120, so `i128` arithmetic is exact and cannot overflow for any
//! `bigint` token count. We still use checked operations so a broken invariant is an error, not a
//! panic.

use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// Decimal places of a stored price (USD per 1M tokens).
pub const PRICE_SCALE: u32 = 10;
/// Decimal places of a cost in USD (price scale + 6 for "per million").
pub const COST_SCALE: u32 = PRICE_SCALE + 6;
/// Exclusive upper bound of a price, in USD per 1M tokens.
pub const PRICE_MAX_USD: i128 = 1_000_000;

/// USD per 1M tokens, as an integer number of 10^-10 USD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Price(pub i128);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceError {
    NotANumber(String),
    Negative(String),
    TooManyDecimals(String),
    TooLarge(String),
}

impl fmt::Display for PriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceError::NotANumber(s) => write!(f, "price \"{s}\" is not a number"),
            PriceError::Negative(s) => write!(f, "price \"{s}\" is negative"),
            PriceError::TooManyDecimals(s) => {
                write!(
                    f,
                    "price \"{s}\" has more than {PRICE_SCALE} decimal places"
                )
            }
            PriceError::TooLarge(s) => {
                write!(
                    f,
                    "price \"{s}\" is not below {PRICE_MAX_USD} USD per 1M tokens"
                )
            }
        }
    }
}

impl Price {
    pub fn from_decimal(d: Decimal) -> Result<Price, PriceError> {
        let d = d.normalize();
        if d.is_sign_negative() && !d.is_zero() {
            return Err(PriceError::Negative(d.to_string()));
        }
        if d.scale() > PRICE_SCALE {
            return Err(PriceError::TooManyDecimals(d.to_string()));
        }
        let m = d.mantissa().abs() * 10i128.pow(PRICE_SCALE - d.scale());
        if m >= PRICE_MAX_USD * 10i128.pow(PRICE_SCALE) {
            return Err(PriceError::TooLarge(d.to_string()));
        }
        Ok(Price(m))
    }

    /// Parses Postgres `numeric` output text (`3`, `0.075`, `15.000`).
    pub fn parse(s: &str) -> Result<Price, PriceError> {
        let d = Decimal::from_str(s.trim()).map_err(|_| PriceError::NotANumber(s.to_string()))?;
        Price::from_decimal(d)
    }

    pub fn to_decimal(self) -> Decimal {
        // Always fits: below 10^16.
        Decimal::from_i128_with_scale(self.0, PRICE_SCALE).normalize()
    }

    /// Cost of `tokens` tokens at this price.
    pub fn times(self, tokens: i64) -> Cost {
        // |tokens| < 2^63, price < 10^16 < 2^54: product < 2^117, exact in i128.
        Cost((tokens as i128) * self.0)
    }
}

/// USD as an integer number of 10^-16 USD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cost(pub i128);

impl Cost {
    pub const ZERO: Cost = Cost(0);

    pub fn checked_add(self, other: Cost) -> Option<Cost> {
        self.0.checked_add(other.0).map(Cost)
    }

    /// Exact decimal text with trailing zeros removed: `18`, `0.000375`, `-2.5`.
    pub fn to_plain_string(self) -> String {
        fixed_point_to_string(self.0, COST_SCALE)
    }

    /// Writes the plain decimal text into `buf` without allocating; returns its length.
    /// `buf` must hold 44 bytes (sign, 39 digits, point).
    pub fn write_plain(self, buf: &mut [u8]) -> usize {
        let neg = self.0 < 0;
        let mag = self.0.unsigned_abs();
        let div = 10u128.pow(COST_SCALE);
        let mut int = mag / div;
        let mut frac = mag % div;
        let mut digits = [0u8; 40];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (int % 10) as u8;
            n += 1;
            int /= 10;
            if int == 0 {
                break;
            }
        }
        let mut len = 0;
        if neg && mag != 0 {
            buf[0] = b'-';
            len = 1;
        }
        for i in (0..n).rev() {
            buf[len] = digits[i];
            len += 1;
        }
        if frac != 0 {
            let mut places = COST_SCALE as usize;
            while frac % 10 == 0 {
                frac /= 10;
                places -= 1;
            }
            buf[len] = b'.';
            len += 1;
            for i in (0..places).rev() {
                buf[len + i] = b'0' + (frac % 10) as u8;
                frac /= 10;
            }
            len += places;
        }
        len
    }

    /// As a rust_decimal, when it fits its 96-bit mantissa (any cost below 7.9e12 USD).
    pub fn to_decimal(self) -> Option<Decimal> {
        Decimal::try_from_i128_with_scale(self.0, COST_SCALE)
            .ok()
            .map(|d| d.normalize())
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_plain_string())
    }
}

/// Renders `value * 10^-scale` exactly, without trailing zeros.
pub fn fixed_point_to_string(value: i128, scale: u32) -> String {
    let neg = value < 0;
    let mag = value.unsigned_abs();
    let div = 10u128.pow(scale);
    let int = mag / div;
    let mut frac = mag % div;
    let mut out = String::with_capacity(40);
    if neg && mag != 0 {
        out.push('-');
    }
    out.push_str(&int.to_string());
    if frac != 0 {
        let mut digits = scale;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        out.push('.');
        let f = frac.to_string();
        for _ in f.len()..digits as usize {
            out.push('0');
        }
        out.push_str(&f);
    }
    out
}

/// Token counts of one call. See docs/catalog.md: `input` excludes cache reads and cache writes.
///
/// The five counts `input`, `cache_read`, `cache_write`, `cache_write_1h` and `output` are
/// disjoint. The modality counts are parts of them (`input_audio` of `input`, `cache_read_audio`
/// of `cache_read`, `output_audio` of `output`, the same for images): a part is billed at its
/// modality's price when the catalog has one, at its count's price otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    /// Prompt tokens written to the cache with the default (5-minute) lifetime.
    pub cache_write: i64,
    /// Prompt tokens written to the 1-hour cache (Anthropic: about 2x input, 5m writes 1.25x).
    pub cache_write_1h: i64,
    /// Of `input`: audio tokens.
    pub input_audio: i64,
    /// Of `cache_read`: audio tokens read from the cache.
    pub cache_read_audio: i64,
    /// Of `output`: audio tokens.
    pub output_audio: i64,
    /// Of `input`: image tokens.
    pub input_image: i64,
    /// Of `cache_read`: image tokens read from the cache.
    pub cache_read_image: i64,
    /// Of `output`: image tokens.
    pub output_image: i64,
    /// Web searches the call made (a server-side tool billed per search).
    pub web_searches: i64,
}

/// A usage the arithmetic refuses: a negative count, or parts larger than their whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadUsage(pub String);

impl fmt::Display for BadUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Usage {
    /// No tokens (`Default::default()` in a `const`).
    pub const ZERO: Usage = Usage {
        input: 0,
        output: 0,
        cache_read: 0,
        cache_write: 0,
        cache_write_1h: 0,
        input_audio: 0,
        cache_read_audio: 0,
        output_audio: 0,
        input_image: 0,
        cache_read_image: 0,
        output_image: 0,
        web_searches: 0,
    };

    /// The counts by their SQL argument names, in argument order.
    pub fn named(&self) -> [(&'static str, i64); 12] {
        [
            ("input_tokens", self.input),
            ("output_tokens", self.output),
            ("cache_read_tokens", self.cache_read),
            ("cache_write_tokens", self.cache_write),
            ("cache_write_1h_tokens", self.cache_write_1h),
            ("input_audio_tokens", self.input_audio),
            ("cache_read_audio_tokens", self.cache_read_audio),
            ("output_audio_tokens", self.output_audio),
            ("input_image_tokens", self.input_image),
            ("cache_read_image_tokens", self.cache_read_image),
            ("output_image_tokens", self.output_image),
            ("web_searches", self.web_searches),
        ]
    }

    pub fn validate(&self) -> Result<(), BadUsage> {
        // The common case first: no count negative (the sign bit of their OR) and no parts.
        let any_negative = (self.input
            | self.output
            | self.cache_read
            | self.cache_write
            | self.cache_write_1h
            | self.input_audio
            | self.cache_read_audio
            | self.output_audio
            | self.input_image
            | self.cache_read_image
            | self.output_image
            | self.web_searches)
            < 0;
        if !any_negative && self.plain() {
            return Ok(());
        }
        for (name, v) in self.named() {
            if v < 0 {
                return Err(BadUsage(format!("{name} must not be negative")));
            }
        }
        for (whole, wv, a, av, b, bv) in [
            (
                "input_tokens",
                self.input,
                "input_audio_tokens",
                self.input_audio,
                "input_image_tokens",
                self.input_image,
            ),
            (
                "cache_read_tokens",
                self.cache_read,
                "cache_read_audio_tokens",
                self.cache_read_audio,
                "cache_read_image_tokens",
                self.cache_read_image,
            ),
            (
                "output_tokens",
                self.output,
                "output_audio_tokens",
                self.output_audio,
                "output_image_tokens",
                self.output_image,
            ),
        ] {
            // Parts are at most bigint each: their sum fits in i128.
            if (av as i128) + (bv as i128) > wv as i128 {
                return Err(BadUsage(format!(
                    "{a} ({av}) + {b} ({bv}) must not be more than {whole} ({wv}): they are parts of it"
                )));
            }
        }
        Ok(())
    }

    /// Whether the call has only the five plain counts (no modality parts, no searches).
    pub fn plain(&self) -> bool {
        self.input_audio == 0
            && self.cache_read_audio == 0
            && self.output_audio == 0
            && self.input_image == 0
            && self.cache_read_image == 0
            && self.output_image == 0
            && self.web_searches == 0
    }

    /// The size of the prompt that decides a long-context tier: every input token the model
    /// read, whether uncached, read from cache or written to cache. Saturates at i64::MAX.
    pub fn prompt_tokens(&self) -> i64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
            .saturating_add(self.cache_write_1h)
    }
}

/// A daily window of UTC time, `[from, to)` in microseconds since midnight; `to < from` wraps
/// past midnight (22:00-06:00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;

impl Window {
    /// Whether the instant `at` (microseconds since 2000-01-01 00:00 UTC) falls in the window.
    pub fn contains(&self, at: i64) -> bool {
        let t = at.rem_euclid(DAY_US);
        if self.from <= self.to {
            self.from <= t && t < self.to
        } else {
            t >= self.from || t < self.to
        }
    }

    /// `HH:MM` (or `HH:MM:SS`) of a bound, for messages and `explain_cost`.
    pub fn clock(us: i64) -> String {
        let s = us / 1_000_000;
        let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
        if sec == 0 {
            format!("{h:02}:{m:02}")
        } else {
            format!("{h:02}:{m:02}:{sec:02}")
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{}-{} UTC",
            Window::clock(self.from),
            Window::clock(self.to)
        )
    }
}

/// Prices beyond the five token prices: per modality (USD per 1M tokens) and per call or search
/// (USD per 1,000). None: not published; the token's plain price applies (no fee for fees).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtraPrices {
    pub input_audio: Option<Price>,
    pub cache_read_audio: Option<Price>,
    pub output_audio: Option<Price>,
    pub input_image: Option<Price>,
    pub cache_read_image: Option<Price>,
    pub output_image: Option<Price>,
    /// USD per 1,000 web searches.
    pub web_search_per_k: Option<Price>,
    /// USD per 1,000 requests: charged once per call.
    pub request_per_k: Option<Price>,
}

impl ExtraPrices {
    pub const NONE: ExtraPrices = ExtraPrices {
        input_audio: None,
        cache_read_audio: None,
        output_audio: None,
        input_image: None,
        cache_read_image: None,
        output_image: None,
        web_search_per_k: None,
        request_per_k: None,
    };

    pub fn is_empty(&self) -> bool {
        *self == ExtraPrices::NONE
    }
}

static NO_EXTRAS: ExtraPrices = ExtraPrices::NONE;

/// Sentinels for an open validity bound, as Postgres stores `-infinity` / `infinity`.
pub const TS_NEG_INFINITY: i64 = i64::MIN;
pub const TS_INFINITY: i64 = i64::MAX;

/// One row of `llm_cost.model_prices`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceRow {
    pub id: i64,
    pub provider: String,
    pub model: String,
    pub min_input_tokens: i64,
    pub input: Price,
    pub output: Price,
    /// `None`: the provider publishes no separate price, the input price applies.
    pub cache_read: Option<Price>,
    pub cache_write_5m: Option<Price>,
    pub cache_write_1h: Option<Price>,
    /// Microseconds since 2000-01-01 UTC (Postgres `timestamptz`), inclusive.
    pub valid_from: i64,
    /// Exclusive.
    pub valid_to: i64,
    /// Origin rank: 2 a DBA's own row (`origin = 'user'`), 1 imported (`import_prices`), 0
    /// shipped. Among the rows of a model valid at the event time only those of the highest rank
    /// price it: negotiated prices override imported ones, which override shipped list prices.
    pub rank: u8,
    /// The service tier this row prices (standard, batch, flex, ...).
    pub service_tier: ServiceTier,
    /// Modality prices and fees; None for a row with token prices only (most rows: boxed, so a
    /// model's rows stay small to scan).
    pub extra: Option<Box<ExtraPrices>>,
    /// The daily UTC window this row prices (time-of-day prices); None: all day. Within its
    /// window a row beats the all-day rows of the same origin.
    pub window: Option<Window>,
}

/// A service tier: `standard` unless the call says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ServiceTier {
    #[default]
    Standard,
    Batch,
    Flex,
    Priority,
    Fast,
}

impl ServiceTier {
    /// A tier as applications and providers write it. `default` and `auto` (OpenAI's values for
    /// the normal tier) and the empty string are `standard`. None: not a tier we know.
    pub fn parse(s: &str) -> Option<ServiceTier> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "standard" | "default" | "auto" | "on_demand" | "on-demand" => {
                Some(ServiceTier::Standard)
            }
            "batch" => Some(ServiceTier::Batch),
            "flex" => Some(ServiceTier::Flex),
            "priority" => Some(ServiceTier::Priority),
            "fast" => Some(ServiceTier::Fast),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceTier::Standard => "standard",
            ServiceTier::Batch => "batch",
            ServiceTier::Flex => "flex",
            ServiceTier::Priority => "priority",
            ServiceTier::Fast => "fast",
        }
    }
}

/// The parts of one cost, for `explain_cost`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breakdown {
    /// Text (non-modality) input tokens at the input price.
    pub input: Cost,
    pub output: Cost,
    pub cache_read: Cost,
    pub cache_write: Cost,
    pub cache_write_1h: Cost,
    pub input_audio: Cost,
    pub cache_read_audio: Cost,
    pub output_audio: Cost,
    pub input_image: Cost,
    pub cache_read_image: Cost,
    pub output_image: Cost,
    pub web_searches: Cost,
    /// The per-request fee (once per call).
    pub request: Cost,
    pub cache_read_price: Price,
    pub cache_write_price: Price,
    pub cache_write_1h_price: Price,
    pub total: Cost,
}

/// A price per 1,000 times `n`, as a cost: (10^-10 USD / 1000) * n = 10^-16 USD * 1000 * n.
fn per_k(p: Price, n: i64) -> Cost {
    Cost(p.0 * 1000 * n as i128)
}

impl PriceRow {
    /// The row's modality prices and fees (all None when it has none).
    pub fn extras(&self) -> &ExtraPrices {
        self.extra.as_deref().unwrap_or(&NO_EXTRAS)
    }

    /// The row's modality prices and fees, to set (tests, loaders).
    pub fn extras_mut(&mut self) -> &mut ExtraPrices {
        self.extra
            .get_or_insert_with(|| Box::new(ExtraPrices::NONE))
    }

    pub fn valid_at(&self, at: i64) -> bool {
        self.valid_from <= at && at < self.valid_to
    }

    /// Effective cache-read price: the input price when none is published.
    pub fn cache_read_price(&self) -> Price {
        self.cache_read.unwrap_or(self.input)
    }

    /// Effective cache-write price (5-minute TTL writes): the input price when none is published.
    pub fn cache_write_price(&self) -> Price {
        self.cache_write_5m.unwrap_or(self.input)
    }

    /// Effective 1-hour cache-write price: the catalog's, else the 5-minute one, else input.
    pub fn cache_write_1h_price(&self) -> Price {
        self.cache_write_1h
            .or(self.cache_write_5m)
            .unwrap_or(self.input)
    }

    pub fn breakdown(&self, u: &Usage) -> Breakdown {
        let x = self.extras();
        let crp = self.cache_read_price();
        let cwp = self.cache_write_price();
        let cw1p = self.cache_write_1h_price();
        // A modality part with a price of its own is taken out of its count; without one it stays
        // in its count at the count's price. (validate() keeps parts within their counts; the
        // saturating subtraction only guards a caller that did not validate.)
        let part = |p: Option<Price>, n: i64| p.map(|p| (p.times(n), n)).unwrap_or((Cost::ZERO, 0));
        let (input_audio, ia) = part(x.input_audio, u.input_audio);
        let (input_image, ii) = part(x.input_image, u.input_image);
        // Cached audio without a cached-audio price: at the cache-read price (it is a cache read).
        let (cache_read_audio, ca) = part(x.cache_read_audio, u.cache_read_audio);
        let (cache_read_image, ci) = part(x.cache_read_image, u.cache_read_image);
        let (output_audio, oa) = part(x.output_audio, u.output_audio);
        let (output_image, oi) = part(x.output_image, u.output_image);
        let input = self
            .input
            .times(u.input.saturating_sub(ia).saturating_sub(ii).max(0));
        let cache_read = crp.times(u.cache_read.saturating_sub(ca).saturating_sub(ci).max(0));
        let output = self
            .output
            .times(u.output.saturating_sub(oa).saturating_sub(oi).max(0));
        let cache_write = cwp.times(u.cache_write);
        let cache_write_1h = cw1p.times(u.cache_write_1h);
        let web_searches = x
            .web_search_per_k
            .map(|p| per_k(p, u.web_searches))
            .unwrap_or(Cost::ZERO);
        let request = x.request_per_k.map(|p| per_k(p, 1)).unwrap_or(Cost::ZERO);
        // Cannot overflow (see module docs); saturate rather than panic if it ever did.
        let total = [
            output,
            cache_read,
            cache_write,
            cache_write_1h,
            input_audio,
            cache_read_audio,
            output_audio,
            input_image,
            cache_read_image,
            output_image,
            web_searches,
            request,
        ]
        .iter()
        .try_fold(input, |acc, c| acc.checked_add(*c))
        .unwrap_or(Cost(i128::MAX));
        Breakdown {
            input,
            output,
            cache_read,
            cache_write,
            cache_write_1h,
            input_audio,
            cache_read_audio,
            output_audio,
            input_image,
            cache_read_image,
            output_image,
            web_searches,
            request,
            cache_read_price: crp,
            cache_write_price: cwp,
            cache_write_1h_price: cw1p,
            total,
        }
    }

    pub fn cost(&self, u: &Usage) -> Cost {
        if u.plain() {
            // The token-only path (most calls): five products, and a request fee if the row has one.
            return plain_cost(
                [
                    self.input,
                    self.output,
                    self.cache_read_price(),
                    self.cache_write_price(),
                    self.cache_write_1h_price(),
                ],
                self.extra.as_ref().and_then(|x| x.request_per_k),
                u,
            );
        }
        self.breakdown(u).total
    }
}

/// The cost of a token-only call (`Usage::plain`) at the effective prices `[input, output,
/// cache read, cache write, 1-hour cache write]` plus a per-request fee: what `PriceRow::cost`
/// computes for such a call, also read straight from a catalog image's record.
#[inline]
pub fn plain_cost(p: [Price; 5], request_per_k: Option<Price>, u: &Usage) -> Cost {
    let sum = [
        p[1].times(u.output),
        p[2].times(u.cache_read),
        p[3].times(u.cache_write),
        p[4].times(u.cache_write_1h),
    ]
    .iter()
    .try_fold(p[0].times(u.input), |acc, c| acc.checked_add(*c));
    let fee = request_per_k.map(|p| per_k(p, 1)).unwrap_or(Cost::ZERO);
    sum.and_then(|c| c.checked_add(fee))
        .unwrap_or(Cost(i128::MAX))
}

/// What choosing among a model's price rows looks at: a stored row, or a catalog image's record.
pub trait Candidate {
    fn tier(&self) -> ServiceTier;
    fn valid_at(&self, at: i64) -> bool;
    fn window(&self) -> Option<Window>;
    fn rank(&self) -> u8;
    fn min_input_tokens(&self) -> i64;
}

impl Candidate for PriceRow {
    fn tier(&self) -> ServiceTier {
        self.service_tier
    }
    fn valid_at(&self, at: i64) -> bool {
        PriceRow::valid_at(self, at)
    }
    fn window(&self) -> Option<Window> {
        self.window
    }
    fn rank(&self) -> u8 {
        self.rank
    }
    fn min_input_tokens(&self) -> i64 {
        self.min_input_tokens
    }
}

/// Picks the row that prices a call at `at` with this usage, among the rows of one model:
/// the valid row with the highest `min_input_tokens` not above the prompt size.
pub fn select_row<'a, R, I>(rows: I, at: i64, u: &Usage, tier: ServiceTier) -> Option<&'a R>
where
    R: Candidate + 'a,
    I: IntoIterator<Item = &'a R>,
{
    let prompt = u.prompt_tokens();
    let mut best: Option<&R> = None;
    for r in rows {
        if r.tier() != tier || !r.valid_at(at) {
            continue;
        }
        let window = r.window();
        if let Some(w) = window {
            if !w.contains(at) {
                continue;
            }
        }
        let better = match best {
            None => true,
            // A user row beats imported and shipped rows, whatever their prompt-size tier.
            Some(b) if r.rank() != b.rank() => r.rank() > b.rank(),
            // In its window, a time-of-day row beats the all-day rows.
            Some(b) if window.is_some() != b.window().is_some() => window.is_some(),
            Some(b) => {
                // Same origin: the highest tier the prompt reaches.
                let fits = r.min_input_tokens() <= prompt;
                let b_fits = b.min_input_tokens() <= prompt;
                match (fits, b_fits) {
                    (true, false) => true,
                    (false, true) => false,
                    (true, true) => r.min_input_tokens() > b.min_input_tokens(),
                    (false, false) => r.min_input_tokens() < b.min_input_tokens(),
                }
            }
        };
        if better {
            best = Some(r);
        }
    }
    best.filter(|b| b.min_input_tokens() <= prompt)
}

/// `llm_cost.format_cost`: `$0.00` for zero, two significant digits below a cent (`$0.0012`),
/// cents with thousands separators above (`$0.45`, `$1,234.57`). Rounds half away from zero.
pub fn format_cost(d: Decimal) -> String {
    let neg = d.is_sign_negative() && !d.is_zero();
    let a = d.abs();
    if a.is_zero() {
        return "$0.00".to_string();
    }
    let cent = Decimal::new(1, 2);
    let body = if a < cent {
        // Two significant digits: find the exponent of the first significant digit.
        let mut e: u32 = 2; // a < 0.01 => first significant digit at >= 3rd decimal
        let mut probe = a * Decimal::from(100u32);
        while probe < Decimal::ONE && e < 28 {
            probe *= Decimal::TEN;
            e += 1;
        }
        // a has its first significant digit at decimal place e; keep e+1 places.
        let r =
            a.round_dp_with_strategy(e + 1, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        if r >= cent {
            "0.01".to_string()
        } else {
            // Keep both significant digits, even a trailing zero: 0.007 -> 0.0070.
            format!("{:.*}", (e + 1) as usize, r)
        }
    } else {
        let r = a.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        let s = format!("{:.2}", r);
        let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
        let mut grouped = String::new();
        let n = int.len();
        for (i, ch) in int.chars().enumerate() {
            if i > 0 && (n - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        format!("{grouped}.{frac}")
    };
    if neg {
        format!("-${body}")
    } else {
        format!("${body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Price {
        Price::parse(s).unwrap()
    }

    fn row(input: &str, output: &str) -> PriceRow {
        PriceRow {
            id: 1,
            provider: "anthropic".into(),
            model: "claude-sonnet-4-5".into(),
            min_input_tokens: 0,
            input: p(input),
            output: p(output),
            cache_read: None,
            cache_write_5m: None,
            cache_write_1h: None,
            valid_from: TS_NEG_INFINITY,
            valid_to: TS_INFINITY,
            rank: 0,
            service_tier: ServiceTier::Standard,
            extra: None,
            window: None,
        }
    }

    #[test]
    fn price_parsing_and_bounds() {
        assert_eq!(p("3").0, 30_000_000_000);
        assert_eq!(p("0.075").0, 750_000_000);
        assert_eq!(p("15.000").0, p("15").0);
        assert_eq!(p("0.0000000001").0, 1);
        assert!(matches!(
            Price::parse("0.00000000001"),
            Err(PriceError::TooManyDecimals(_))
        ));
        assert!(matches!(Price::parse("-1"), Err(PriceError::Negative(_))));
        assert!(matches!(
            Price::parse("1000000"),
            Err(PriceError::TooLarge(_))
        ));
        assert!(matches!(
            Price::parse("abc"),
            Err(PriceError::NotANumber(_))
        ));
        assert_eq!(
            p("999999.9999999999").to_decimal().to_string(),
            "999999.9999999999"
        );
    }

    #[test]
    fn sonnet_million_in_million_out_is_18() {
        let r = row("3", "15");
        let u = Usage {
            input: 1_000_000,
            output: 1_000_000,
            ..Default::default()
        };
        assert_eq!(r.cost(&u).to_plain_string(), "18");
    }

    #[test]
    fn small_costs_are_exact() {
        let r = row("3", "15");
        let u = Usage {
            input: 1,
            output: 0,
            ..Default::default()
        };
        assert_eq!(r.cost(&u).to_plain_string(), "0.000003");
        let r = row("0.075", "0.3");
        let u = Usage {
            input: 1,
            output: 1,
            ..Default::default()
        };
        assert_eq!(r.cost(&u).to_plain_string(), "0.000000375");
        let r = row("0.0000000001", "0");
        assert_eq!(
            r.cost(&Usage {
                input: 1,
                ..Default::default()
            })
            .to_plain_string(),
            "0.0000000000000001"
        );
    }

    #[test]
    fn missing_cache_prices_fall_back_to_input() {
        let mut r = row("2", "8");
        let u = Usage {
            input: 0,
            output: 0,
            cache_read: 1_000_000,
            cache_write: 1_000_000,
            cache_write_1h: 0,
            ..Default::default()
        };
        assert_eq!(r.cost(&u).to_plain_string(), "4");
        r.cache_read = Some(p("0.5"));
        r.cache_write_5m = Some(p("0"));
        assert_eq!(r.cost(&u).to_plain_string(), "0.5");
    }

    #[test]
    fn anthropic_cache_prices() {
        let mut r = row("3", "15");
        r.cache_read = Some(p("0.3"));
        r.cache_write_5m = Some(p("3.75"));
        let u = Usage {
            input: 1000,
            output: 500,
            cache_read: 20_000,
            cache_write: 4_000,
            cache_write_1h: 0,
            ..Default::default()
        };
        // 0.003 + 0.0075 + 0.006 + 0.015
        assert_eq!(r.cost(&u).to_plain_string(), "0.0315");
        let b = r.breakdown(&u);
        assert_eq!(b.cache_write.to_plain_string(), "0.015");
    }

    #[test]
    fn bigint_max_tokens_do_not_overflow() {
        let r = row("999999.9999999999", "999999.9999999999");
        let m = i64::MAX;
        let u = Usage {
            input: m,
            output: m,
            cache_read: m,
            cache_write: m,
            cache_write_1h: 0,
            ..Default::default()
        };
        let c = r.cost(&u);
        // 4 * (2^63-1) * 999999.9999999999 / 1e6
        let expected = 4i128 * (m as i128) * 9_999_999_999_999_999i128;
        assert_eq!(c.0, expected);
        assert_eq!(c.to_plain_string(), "36893488147419099538.6511852580896772");
        assert!(c.to_decimal().is_none());
    }

    #[test]
    fn negative_tokens_named() {
        let u = Usage {
            input: 1,
            output: 1,
            cache_read: -1,
            cache_write: 0,
            cache_write_1h: 0,
            ..Default::default()
        };
        assert_eq!(
            u.validate().unwrap_err().to_string(),
            "cache_read_tokens must not be negative"
        );
        let u = Usage {
            input: -5,
            ..Default::default()
        };
        assert_eq!(
            u.validate().unwrap_err().to_string(),
            "input_tokens must not be negative"
        );
    }

    #[test]
    fn tiers_and_history() {
        let mut base = row("2.5", "15");
        base.id = 1;
        let mut long = row("5", "22.5");
        long.id = 2;
        long.min_input_tokens = 272_000;
        let mut old = row("10", "30");
        old.id = 3;
        old.valid_to = 1000;
        base.valid_from = 1000;
        long.valid_from = 1000;
        let rows = vec![base.clone(), long.clone(), old.clone()];
        let small = Usage {
            input: 100,
            ..Default::default()
        };
        assert_eq!(
            select_row(&rows, 2000, &small, ServiceTier::Standard)
                .unwrap()
                .id,
            1
        );
        // The tier counts cached prompt tokens too.
        let big = Usage {
            input: 100_000,
            cache_read: 172_000,
            ..Default::default()
        };
        assert_eq!(
            select_row(&rows, 2000, &big, ServiceTier::Standard)
                .unwrap()
                .id,
            2
        );
        let just_below = Usage {
            input: 271_999,
            ..Default::default()
        };
        assert_eq!(
            select_row(&rows, 2000, &just_below, ServiceTier::Standard)
                .unwrap()
                .id,
            1
        );
        // Before the change, the old price; valid_to is exclusive.
        assert_eq!(
            select_row(&rows, 999, &big, ServiceTier::Standard)
                .unwrap()
                .id,
            3
        );
        assert_eq!(
            select_row(&rows, 1000, &small, ServiceTier::Standard)
                .unwrap()
                .id,
            1
        );
        // Nothing valid: no price.
        let only_old = vec![old];
        assert!(select_row(&only_old, 5000, &small, ServiceTier::Standard).is_none());
    }

    #[test]
    fn user_rows_override_shipped_rows() {
        let shipped = row("3", "15");
        let mut long = row("6", "22.5");
        long.min_input_tokens = 200_000;
        let mut negotiated = row("2", "10");
        negotiated.id = 9;
        negotiated.rank = 2;
        negotiated.valid_from = 5000;
        let rows = vec![shipped, long, negotiated];
        let big = Usage {
            input: 300_000,
            ..Default::default()
        };
        assert_eq!(
            select_row(&rows, 6000, &big, ServiceTier::Standard)
                .unwrap()
                .id,
            9
        );
        // Before the negotiated price starts, the list price and its tiers apply.
        assert_eq!(
            select_row(&rows, 4000, &big, ServiceTier::Standard)
                .unwrap()
                .min_input_tokens,
            200_000
        );
    }

    #[test]
    fn write_plain_matches_to_plain_string() {
        for v in [
            0i128,
            1,
            -1,
            180_000_000_000_000_000,
            12_345_678_901_234_567,
            -25,
            i128::MAX / 2,
            10_000_000_000_000_000,
        ] {
            let mut buf = [0u8; 64];
            let n = Cost(v).write_plain(&mut buf);
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                Cost(v).to_plain_string(),
                "{v}"
            );
        }
    }

    #[test]
    fn fixed_point_rendering() {
        assert_eq!(fixed_point_to_string(0, 16), "0");
        assert_eq!(fixed_point_to_string(-25, 1), "-2.5");
        assert_eq!(fixed_point_to_string(1, 16), "0.0000000000000001");
        assert_eq!(fixed_point_to_string(180_000_000_000_000_000, 16), "18");
    }

    #[test]
    fn format_cost_rules() {
        let f = |s: &str| format_cost(Decimal::from_str(s).unwrap());
        assert_eq!(f("0"), "$0.00");
        assert_eq!(f("0.000"), "$0.00");
        assert_eq!(f("0.0012"), "$0.0012");
        assert_eq!(f("0.00123456"), "$0.0012");
        assert_eq!(f("0.00125"), "$0.0013");
        assert_eq!(f("0.000000375"), "$0.00000038");
        assert_eq!(f("0.0099999"), "$0.01");
        assert_eq!(f("0.45"), "$0.45");
        assert_eq!(f("0.454"), "$0.45");
        assert_eq!(f("0.455"), "$0.46");
        assert_eq!(f("1234.5678"), "$1,234.57");
        assert_eq!(f("1234567.891"), "$1,234,567.89");
        assert_eq!(f("18"), "$18.00");
        assert_eq!(f("-2.5"), "-$2.50");
        assert_eq!(f("0.01"), "$0.01");
        assert_eq!(f("0.007"), "$0.0070");
        assert_eq!(f("0.00999"), "$0.01");
    }

    #[test]
    fn modality_parts_at_their_prices() {
        // gpt-realtime-mini: text 0.6 / 2.4 (cached 0.06), audio 10 / 20 (cached 0.3).
        let mut r = row("0.6", "2.4");
        r.cache_read = Some(p("0.06"));
        r.extras_mut().input_audio = Some(p("10"));
        r.extras_mut().cache_read_audio = Some(p("0.3"));
        r.extras_mut().output_audio = Some(p("20"));
        let u = Usage {
            input: 1000,
            input_audio: 400,
            cache_read: 500,
            cache_read_audio: 100,
            output: 300,
            output_audio: 200,
            ..Default::default()
        };
        u.validate().unwrap();
        // text in 600*0.6 + audio in 400*10 + text cached 400*0.06 + audio cached 100*0.3
        // + text out 100*2.4 + audio out 200*20, per 1M
        let want = (600.0f64 * 0.6
            + 400.0 * 10.0
            + 400.0 * 0.06
            + 100.0 * 0.3
            + 100.0 * 2.4
            + 200.0 * 20.0)
            / 1e6;
        assert_eq!(r.cost(&u).to_plain_string(), "0.008654");
        assert!((want - 0.008654).abs() < 1e-12);
        let b = r.breakdown(&u);
        assert_eq!(b.input_audio.to_plain_string(), "0.004");
        assert_eq!(b.input.to_plain_string(), "0.00036");
        // Without modality prices the parts stay in their counts: the plain token cost.
        let plain = row("0.6", "2.4");
        assert_eq!(
            plain.cost(&u),
            plain.cost(&Usage {
                input: 1000,
                cache_read: 500,
                output: 300,
                ..Default::default()
            })
        );
        // Cached audio without its own price is a cache read.
        r.extras_mut().cache_read_audio = None;
        assert_eq!(r.breakdown(&u).cache_read.to_plain_string(), "0.00003");
    }

    #[test]
    fn parts_larger_than_their_count_are_refused() {
        let u = Usage {
            input: 10,
            input_audio: 8,
            input_image: 3,
            ..Default::default()
        };
        assert_eq!(
            u.validate().unwrap_err().to_string(),
            "input_audio_tokens (8) + input_image_tokens (3) must not be more than input_tokens (10): they are parts of it"
        );
        let u = Usage {
            output: 1,
            output_audio: 2,
            ..Default::default()
        };
        assert!(u.validate().is_err());
        let u = Usage {
            web_searches: -1,
            ..Default::default()
        };
        assert_eq!(
            u.validate().unwrap_err().to_string(),
            "web_searches must not be negative"
        );
    }

    #[test]
    fn searches_and_request_fees() {
        // Anthropic web search: $10 per 1,000; Perplexity: a request fee of $5 per 1,000.
        let mut r = row("3", "15");
        r.extras_mut().web_search_per_k = Some(p("10"));
        let u = Usage {
            input: 1000,
            output: 100,
            web_searches: 3,
            ..Default::default()
        };
        assert_eq!(r.cost(&u).to_plain_string(), "0.0345");
        assert_eq!(r.breakdown(&u).web_searches.to_plain_string(), "0.03");
        let mut s = row("1", "1");
        s.extras_mut().request_per_k = Some(p("5"));
        assert_eq!(s.cost(&Usage::default()).to_plain_string(), "0.005");
        // No search price: searches cost nothing extra (the catalog publishes none).
        assert_eq!(row("3", "15").cost(&u).to_plain_string(), "0.0045");
    }

    #[test]
    fn time_of_day_windows() {
        let h = |x: i64| x * 3_600_000_000;
        // DeepSeek: off-peak all day, the standard price 00:30-16:30 UTC.
        let mut offpeak = row("0.135", "0.55");
        offpeak.id = 1;
        let mut peak = row("0.27", "1.1");
        peak.id = 2;
        peak.window = Some(Window {
            from: h(0) + 1_800_000_000,
            to: h(16) + 1_800_000_000,
        });
        let rows = vec![offpeak.clone(), peak.clone()];
        let day = 9_000 * DAY_US; // some day after 2000-01-01
        let u = Usage {
            input: 1,
            ..Default::default()
        };
        let at = |t: i64| {
            select_row(&rows, day + t, &u, ServiceTier::Standard)
                .unwrap()
                .id
        };
        assert_eq!(at(h(0)), 1);
        assert_eq!(at(h(0) + 1_800_000_000), 2, "inclusive start");
        assert_eq!(at(h(12)), 2);
        assert_eq!(at(h(16) + 1_800_000_000), 1, "exclusive end");
        assert_eq!(at(h(23)), 1);
        // Before 2000 (negative instants) the time of day is still the UTC clock.
        assert_eq!(
            select_row(&rows, -DAY_US + h(12), &u, ServiceTier::Standard)
                .unwrap()
                .id,
            2
        );
        // A window across midnight.
        let w = Window {
            from: h(22),
            to: h(6),
        };
        assert!(w.contains(day + h(23)) && w.contains(day + h(1)) && !w.contains(day + h(12)));
        assert_eq!(w.describe(), "22:00-06:00 UTC");
        // A user row beats a shipped time-of-day row.
        let mut mine = row("0.1", "0.1");
        mine.id = 3;
        mine.rank = 2;
        let rows = vec![offpeak, peak, mine];
        assert_eq!(
            select_row(&rows, day + h(12), &u, ServiceTier::Standard)
                .unwrap()
                .id,
            3
        );
    }

    /// The token-only fast path of `cost` gives the same total as the full breakdown.
    #[test]
    fn cost_fast_path_equals_breakdown() {
        let mut rows = vec![row("3", "15"), row("0.6", "2.4")];
        rows[1].cache_read = Some(p("0.06"));
        rows[1].extras_mut().input_audio = Some(p("10"));
        rows[1].extras_mut().request_per_k = Some(p("5"));
        let mut fee_only = row("1", "2");
        fee_only.extras_mut().request_per_k = Some(p("14"));
        rows.push(fee_only);
        for r in &rows {
            for (i, o, cr, cw) in [(0, 0, 0, 0), (1000, 500, 20, 7), (123_456, 1, 99, 0)] {
                let u = Usage {
                    input: i,
                    output: o,
                    cache_read: cr,
                    cache_write: cw,
                    ..Default::default()
                };
                assert_eq!(r.cost(&u), r.breakdown(&u).total);
            }
        }
    }

    /// bigint's maximum in every count, the largest price in every column, searches and a request
    /// fee: exact, no overflow (a search costs at most 10^19 units of 10^-16 USD).
    #[test]
    fn bigint_max_with_modalities_and_fees_is_exact() {
        let max_p = p("999999.9999999999");
        let mut r = row("999999.9999999999", "999999.9999999999");
        r.cache_read = Some(max_p);
        let x = r.extras_mut();
        x.input_audio = Some(max_p);
        x.output_image = Some(max_p);
        x.web_search_per_k = Some(max_p);
        x.request_per_k = Some(max_p);
        let m = i64::MAX;
        let u = Usage {
            input: m,
            output: m,
            cache_read: m,
            input_audio: m,
            output_image: m,
            web_searches: m,
            ..Default::default()
        };
        u.validate().unwrap();
        let unit = max_p.0;
        // input is all audio, output all image: three token products, one search line, one fee.
        let want = 3 * (m as i128) * unit + unit * 1000 * (m as i128) + unit * 1000;
        assert_eq!(r.cost(&u).0, want);
        assert_eq!(r.breakdown(&u).input.0, 0);
    }
}

/// The unit of an integer cost column (`track(..., cost_unit => ...)`): how many decimal places
/// of a US dollar one unit is. `usd` 0, `cents` 2, `usd_micros` 6 (millionths of a dollar),
/// `microcents` 8 (millionths of a cent: `$/MTok / 10` microcents per token).
pub fn cost_unit_scale(name: &str) -> Option<u32> {
    match name.trim().to_ascii_lowercase().as_str() {
        "usd" | "dollars" => Some(0),
        "cents" | "cent" => Some(2),
        "usd_micros" | "micro_usd" | "microdollars" => Some(6),
        "microcents" | "microcent" => Some(8),
        _ => None,
    }
}

impl Cost {
    /// The cost in units of 10^-`scale` USD (`scale` <= 16), rounded half up (away from zero:
    /// costs are never negative) to a whole unit: the one rounding rule of integer cost columns.
    pub fn in_unit(self, scale: u32) -> i128 {
        let d = 10i128.pow(16 - scale.min(16));
        let q = self.0 / d;
        let r = self.0 % d;
        if r.abs() * 2 >= d {
            q + self.0.signum()
        } else {
            q
        }
    }

    /// A whole number of units of 10^-`scale` USD as a cost.
    pub fn from_unit(v: i128, scale: u32) -> Option<Cost> {
        v.checked_mul(10i128.pow(16 - scale.min(16))).map(Cost)
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn integer_units_round_half_up() {
        assert_eq!(cost_unit_scale("microcents"), Some(8));
        assert_eq!(cost_unit_scale("Cents"), Some(2));
        assert_eq!(cost_unit_scale("usd_micros"), Some(6));
        assert_eq!(cost_unit_scale("yen"), None);
        // $3/MTok: 1 token = 0.000003 USD = 300 microcents.
        assert_eq!(Cost(30_000_000_000).in_unit(8), 300);
        // 0.000000005 USD = 0.5 microcents: up; 0.0000000049...: down.
        assert_eq!(Cost(50_000_000).in_unit(8), 1);
        assert_eq!(Cost(49_999_999).in_unit(8), 0);
        assert_eq!(Cost(0).in_unit(2), 0);
        assert_eq!(Cost(15_300_000_000_000_000).in_unit(2), 153);
        assert_eq!(Cost(1_234_500_000_000_000).in_unit(2), 12); // 0.12345 USD -> 12 cents
        assert_eq!(Cost(1_250_000_000_000_000).in_unit(2), 13); // 0.125 -> 13 (half up)
        assert_eq!(Cost::from_unit(300, 8), Some(Cost(30_000_000_000)));
        assert_eq!(Cost(7).in_unit(16), 7);
    }
}
