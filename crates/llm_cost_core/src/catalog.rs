//! The price catalog as plain Rust: which catalog model an application's model name means, and
//! the price row of a call. Built from `llm_cost.model_prices`, `llm_cost.providers` and
//! `llm_cost.model_aliases` (read by the extension's `pricing::catalog`) into a flat image
//! (`flat.rs`) that is read in place: one image per catalog version serves every backend of a
//! server. No Postgres here.
//!
//! Resolution never guesses a price: a name reaches a model only through that model's id, its
//! match rule (the dataset's, or yours), or your alias. What a name says about the host is used to
//! pick the provider: LiteLLM-style routes (`bedrock/…`, `groq/…`, `openrouter/…`), OpenRouter's
//! `vendor/model` ids, Bedrock's `region.vendor.model-v1:0` ids, or an explicit provider value.

use crate::flat::{
    AliasRec, ExtraRec, Image, KeyRec, ModelRec, NodeRec, ProviderRec, RowRec, Span, Writer, NONE,
    NO_PRICE, NO_TIME, N_AND, N_CONTAINS, N_ENDS, N_EQUALS, N_OR, N_REGEX, N_STARTS, S_ALIASES,
    S_EXTRAS, S_IDS, S_MODELS, S_NODES, S_PROVIDERS, S_PROVIDER_KEYS, S_ROWS,
};
use crate::matching::{dashed_date, Rule};
use crate::pricing::{
    plain_cost, select_row, Candidate, Cost, ExtraPrices, Price, PriceRow, ServiceTier, Usage,
    Window,
};
use std::cell::RefCell;
use std::collections::HashMap;

/// A catalog model as callers see it: who sells it and its id.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    /// The match rule as stored (JSON); None: the model id itself (any letter case).
    pub rule_text: Option<&'a str>,
    /// Whether the rule is used (None: none, or one that cannot be used).
    has_rule: bool,
}

impl Model<'_> {
    /// Whether the model has a match rule that is used.
    pub fn has_rule(&self) -> bool {
        self.has_rule
    }

    /// The problem with the model's match rule, if it has one that cannot be used.
    pub fn rule_problem(&self) -> Option<String> {
        let t = self.rule_text?;
        Rule::parse_text(t)
            .err()
            .map(|e| format!("model {} {}: match rule {e}", self.provider, self.model))
    }
}

/// A DBA-defined alias: `alias` (any case) means `model`, optionally of `provider`.
#[derive(Debug, Clone)]
pub struct Alias {
    pub alias: String,
    pub model: String,
    pub provider: Option<String>,
}

/// A row of `llm_cost.providers`, rules as JSON text.
#[derive(Debug, Clone, Default)]
pub struct ProviderDef {
    pub id: String,
    pub model_match: Option<String>,
    pub provider_match: Option<String>,
    pub fallback: Vec<String>,
}

/// How a name reached its model (for `explain_cost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// One of your aliases.
    Alias,
    /// The model id itself.
    Id,
    /// The model's match rule.
    Rule,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Alias => "alias",
            How::Id => "model id",
            How::Rule => "match rule",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub model: usize,
    pub how: How,
}

/// Where an image lies: this catalog's own words, or memory someone else keeps (shared memory).
enum Store {
    Owned(#[allow(dead_code)] Box<[u64]>),
    Borrowed,
}

/// The catalog: an image read in place, plus what one reader compiles for itself (regular
/// expressions, on first use).
pub struct Catalog {
    img: Image,
    _store: Store,
    regex: RefCell<HashMap<u32, Option<fancy_regex::Regex>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Catalog({} models, {} bytes)",
            self.model_count(),
            self.img.bytes()
        )
    }
}

/// Route words (LiteLLM prefixes, provider values applications send) and the catalog provider
/// they stand for. Checked after the provider ids and before the providers' own match rules.
const ROUTE_WORDS: &[(&str, &str)] = &[
    ("openrouter", "openrouter"),
    ("claude", "anthropic"),
    ("bedrock", "aws"),
    ("bedrock_converse", "aws"),
    ("aws", "aws"),
    ("amazon-bedrock", "aws"),
    ("vertex_ai", "google"),
    ("vertex_ai_beta", "google"),
    ("vertex", "google"),
    ("vertexai", "google"),
    ("google-vertex", "google"),
    ("google_vertex", "google"),
    ("gemini", "google"),
    ("google_ai_studio", "google"),
    ("google-ai-studio", "google"),
    ("azure", "azure"),
    ("azure_ai", "azure"),
    ("azure-openai", "azure"),
    ("together_ai", "together"),
    ("togetherai", "together"),
    ("together", "together"),
    ("fireworks_ai", "fireworks"),
    ("fireworks-ai", "fireworks"),
    ("fireworks", "fireworks"),
    ("xai", "x-ai"),
    ("x-ai", "x-ai"),
    ("mistralai", "mistral"),
    ("mistral", "mistral"),
    ("deepseek-ai", "deepseek"),
    ("moonshot", "moonshotai"),
    ("moonshotai", "moonshotai"),
    ("z-ai", "zai"),
    ("zai", "zai"),
    ("cohere_chat", "cohere"),
    ("voyage", "voyageai"),
    ("text-completion-openai", "openai"),
    ("perplexityai", "perplexity"),
];

/// Route words that only ever name a host, never a model maker's namespace in OpenRouter ids:
/// `groq/llama-3.3-70b-versatile` is Groq's price, while `anthropic/claude-3.5-sonnet` is first
/// looked up as an OpenRouter id.
const HOST_ONLY: &[&str] = &[
    "openrouter",
    "bedrock",
    "bedrock_converse",
    "aws",
    "amazon-bedrock",
    "vertex_ai",
    "vertex_ai_beta",
    "vertex",
    "vertexai",
    "google-vertex",
    "google_vertex",
    "gemini",
    "google_ai_studio",
    "google-ai-studio",
    "azure",
    "azure_ai",
    "azure-openai",
    "groq",
    "together_ai",
    "togetherai",
    "together",
    "fireworks_ai",
    "fireworks-ai",
    "fireworks",
    "cerebras",
    "databricks",
    "cloudflare",
    "novita",
    "ovhcloud",
    "baseten",
    "avian",
    "modal",
    "github-copilot",
    "text-completion-openai",
    "cohere_chat",
    "doubleword",
    "quicksilverpro",
];

/// Vendors in Bedrock model ids: `[region.]vendor.model[-vN[:M]]`.
const BEDROCK_VENDORS: &[&str] = &[
    "anthropic",
    "meta",
    "amazon",
    "mistral",
    "cohere",
    "deepseek",
    "openai",
    "ai21",
    "writer",
    "qwen",
    "twelvelabs",
    "stability",
    "luma",
    "minimax",
    "moonshot",
    "moonshotai",
    "google",
    "nvidia",
    "zai",
];

/// True for a Bedrock model id such as `us.anthropic.claude-sonnet-4-5-20250929-v1:0`.
fn is_bedrock_id(s: &str) -> bool {
    let mut parts = s.splitn(3, '.');
    let (a, b) = (parts.next().unwrap_or(""), parts.next());
    match b {
        None => false,
        Some(b) => {
            if BEDROCK_VENDORS.contains(&a) {
                return !b.is_empty() && !a.contains('/');
            }
            let region = !a.is_empty()
                && a.len() <= 7
                && a.bytes().all(|c| c.is_ascii_lowercase() || c == b'-');
            region && BEDROCK_VENDORS.contains(&b) && parts.next().is_some_and(|r| !r.is_empty())
        }
    }
}

/// The provider of a model id nobody has catalogued, guessed from its host route or family name
/// (for the provider column of an unpriced row; never used to price).
pub fn guess_provider(raw: &str) -> Option<&'static str> {
    let s = raw.trim().to_ascii_lowercase();
    if let Some((first, _)) = s.split_once('/') {
        // A host route: the host (`fireworks_ai/…` is fireworks, `bedrock/…` aws).
        if let Some((_, id)) = ROUTE_WORDS.iter().find(|(w, _)| *w == first) {
            return Some(id);
        }
        if let Some(h) = HOST_ONLY.iter().find(|h| **h == first) {
            return Some(h);
        }
    }
    let core = s.rsplit('/').next().unwrap_or(&s);
    if is_bedrock_id(core) {
        return Some("aws");
    }
    let vendor = |w: &str| -> Option<&'static str> {
        match w {
            "anthropic" | "claude" => Some("anthropic"),
            "openai" => Some("openai"),
            "google" => Some("google"),
            "mistral" | "mistralai" => Some("mistral"),
            "deepseek" | "deepseek-ai" => Some("deepseek"),
            "cohere" => Some("cohere"),
            "meta" | "meta-llama" => Some("meta"),
            "xai" | "x-ai" => Some("x-ai"),
            _ => None,
        }
    };
    if let Some(p) = s.split_once('/').and_then(|(first, _)| vendor(first)) {
        return Some(p);
    }
    let starts = |p: &str| core.starts_with(p);
    if starts("claude") {
        Some("anthropic")
    } else if starts("gpt-")
        || starts("o1")
        || starts("o3")
        || starts("o4")
        || starts("text-embedding")
        || starts("chatgpt")
        || starts("davinci")
        || starts("babbage")
        || starts("whisper")
        || starts("dall-e")
        || starts("tts-")
    {
        Some("openai")
    } else if starts("gemini") || starts("gemma") || starts("text-bison") || starts("chat-bison") {
        Some("google")
    } else if starts("mistral")
        || starts("codestral")
        || starts("ministral")
        || starts("magistral")
        || starts("pixtral")
        || starts("devstral")
        || starts("open-mistral")
        || starts("open-mixtral")
    {
        Some("mistral")
    } else if starts("deepseek") {
        Some("deepseek")
    } else if starts("command") || starts("embed-") || starts("rerank") {
        Some("cohere")
    } else if starts("llama") {
        Some("meta")
    } else if starts("grok") {
        Some("x-ai")
    } else {
        None
    }
}

/// A model while the catalog is built.
struct BModel {
    provider: usize,
    model: String,
    rows: Vec<PriceRow>,
    rule_text: Option<String>,
}

/// A provider while the catalog is built.
struct BProvider {
    id: String,
    model_match: Option<Rule>,
    provider_match: Option<Rule>,
    fallback: Vec<String>,
    models: Vec<usize>,
    by_id: Vec<(String, usize)>,
}

fn price_word(p: Option<Price>) -> i64 {
    match p {
        Some(p) => i64::try_from(p.0).unwrap_or(i64::MAX),
        None => NO_PRICE,
    }
}

fn word_price(w: i64) -> Option<Price> {
    (w != NO_PRICE).then_some(Price(w as i128))
}

fn tier_word(t: ServiceTier) -> u32 {
    match t {
        ServiceTier::Standard => 0,
        ServiceTier::Batch => 1,
        ServiceTier::Flex => 2,
        ServiceTier::Priority => 3,
        ServiceTier::Fast => 4,
    }
}

fn word_tier(w: u32) -> ServiceTier {
    match w {
        1 => ServiceTier::Batch,
        2 => ServiceTier::Flex,
        3 => ServiceTier::Priority,
        4 => ServiceTier::Fast,
        _ => ServiceTier::Standard,
    }
}

impl Candidate for RowRec {
    fn tier(&self) -> ServiceTier {
        word_tier(self.tier)
    }
    fn valid_at(&self, at: i64) -> bool {
        self.valid_from <= at && at < self.valid_to
    }
    fn window(&self) -> Option<Window> {
        (self.window_from != NO_TIME).then_some(Window {
            from: self.window_from,
            to: self.window_to,
        })
    }
    fn rank(&self) -> u8 {
        self.rank as u8
    }
    fn min_input_tokens(&self) -> i64 {
        self.min_input_tokens
    }
}

/// A parsed rule as nodes of the image; returns the root.
fn put_rule(w: &mut Writer, r: &Rule) -> u32 {
    let (kind, s, prefix, kids) = match r {
        Rule::Equals(s) => (N_EQUALS, w.str(s), Span::NONE, Span::NONE),
        Rule::StartsWith(s) => (N_STARTS, w.str(s), Span::NONE, Span::NONE),
        Rule::EndsWith(s) => (N_ENDS, w.str(s), Span::NONE, Span::NONE),
        Rule::Contains(s) => (N_CONTAINS, w.str(s), Span::NONE, Span::NONE),
        Rule::Regex(re) => (N_REGEX, w.str(re.pattern()), w.str(re.prefix()), Span::NONE),
        Rule::Or(v) | Rule::And(v) => {
            let ids: Vec<u32> = v.iter().map(|k| put_rule(w, k)).collect();
            let kind = if matches!(r, Rule::Or(_)) {
                N_OR
            } else {
                N_AND
            };
            (kind, Span::NONE, Span::NONE, w.list(ids))
        }
    };
    w.nodes.push(NodeRec {
        kind,
        _pad: 0,
        s,
        prefix,
        kids,
    });
    (w.nodes.len() - 1) as u32
}

impl Catalog {
    /// Builds the catalog. `rules[i]` is the match rule (JSON text) stored with `rows[i]`.
    /// Returns the catalog and the problems found in the providers' rules (`Model::rule_problem`
    /// says what is wrong with a model's rule; such a model is matched by its id).
    pub fn new(
        rows: Vec<PriceRow>,
        rules: Vec<Option<String>>,
        providers: Vec<ProviderDef>,
        aliases: Vec<Alias>,
    ) -> (Catalog, Vec<String>) {
        let (words, problems) = Catalog::image(rows, rules, providers, aliases);
        (Catalog::from_words(words), problems)
    }

    /// A catalog over an image built by [`Catalog::image`], kept by the catalog.
    pub fn from_words(words: Vec<u64>) -> Catalog {
        let words = words.into_boxed_slice();
        // SAFETY: the boxed words live as long as the catalog (moved into it below, never
        // reallocated).
        let img = unsafe { Image::open(words.as_ptr() as *const u8, words.len() * 8) }
            .expect("an image this build wrote");
        Catalog {
            img,
            _store: Store::Owned(words),
            regex: RefCell::new(HashMap::new()),
        }
    }

    /// A catalog over an image someone else keeps (shared memory).
    ///
    /// # Safety
    /// `base..base+len` must hold an image [`Catalog::image`] wrote, and stay mapped and
    /// unchanged for the catalog's whole life.
    pub unsafe fn borrowed(base: *const u8, len: usize) -> Result<Catalog, String> {
        // SAFETY: the caller's promise.
        let img = unsafe { Image::open(base, len) }?;
        Ok(Catalog {
            img,
            _store: Store::Borrowed,
            regex: RefCell::new(HashMap::new()),
        })
    }

    /// The image of a catalog: what [`Catalog::from_words`] reads, or what is copied into
    /// shared memory once for every reader. Returns the problems found in the providers' rules.
    pub fn image(
        rows: Vec<PriceRow>,
        rules: Vec<Option<String>>,
        providers: Vec<ProviderDef>,
        aliases: Vec<Alias>,
    ) -> (Vec<u64>, Vec<String>) {
        let n_read = rows.len() as u32;
        let mut problems = Vec::new();
        let parse = |what: &str, t: &Option<String>, problems: &mut Vec<String>| -> Option<Rule> {
            let t = t.as_ref()?;
            match Rule::parse_text(t) {
                Ok(r) => Some(r),
                Err(e) => {
                    problems.push(format!("{what}: match rule {e}"));
                    None
                }
            }
        };
        let mut provs: Vec<BProvider> = Vec::new();
        let mut provider_index: HashMap<String, usize> = HashMap::new();
        for p in &providers {
            let id = p.id.to_ascii_lowercase();
            if provider_index.contains_key(&id) {
                continue;
            }
            let info = BProvider {
                id: id.clone(),
                model_match: parse(
                    &format!("provider {id} model_match"),
                    &p.model_match,
                    &mut problems,
                ),
                provider_match: parse(
                    &format!("provider {id} provider_match"),
                    &p.provider_match,
                    &mut problems,
                ),
                fallback: p.fallback.iter().map(|f| f.to_ascii_lowercase()).collect(),
                models: vec![],
                by_id: vec![],
            };
            provider_index.insert(id, provs.len());
            provs.push(info);
        }
        // Rows grouped by (provider, model), in the order of their first row (the dataset's order).
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|i| rows[*i].id);
        let mut rows: Vec<Option<PriceRow>> = rows.into_iter().map(Some).collect();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut models: Vec<BModel> = Vec::new();
        // Best rule text per model: from the highest-ranked row that has one.
        let mut best_rule: Vec<i16> = Vec::new();
        for i in order {
            let r = rows[i].take().expect("each row once");
            let key = (
                r.provider.to_ascii_lowercase(),
                r.model.to_ascii_lowercase(),
            );
            let m = match index.get(&key) {
                Some(m) => *m,
                None => {
                    let pi = match provider_index.get(&key.0) {
                        Some(pi) => *pi,
                        None => {
                            // A provider only your rows name: a provider with no rules of its own.
                            provider_index.insert(key.0.clone(), provs.len());
                            provs.push(BProvider {
                                id: key.0.clone(),
                                model_match: None,
                                provider_match: None,
                                fallback: vec![],
                                models: vec![],
                                by_id: vec![],
                            });
                            provs.len() - 1
                        }
                    };
                    models.push(BModel {
                        provider: pi,
                        model: r.model.clone(),
                        rows: vec![],
                        rule_text: None,
                    });
                    best_rule.push(-1);
                    let m = models.len() - 1;
                    provs[pi].models.push(m);
                    provs[pi].by_id.push((key.1.clone(), m));
                    index.insert(key, m);
                    m
                }
            };
            if let Some(t) = &rules[i] {
                if (r.rank as i16) > best_rule[m] {
                    best_rule[m] = r.rank as i16;
                    models[m].rule_text = Some(t.clone());
                }
            }
            models[m].rows.push(r);
        }
        drop(index);
        // Your own and imported models are tried before the shipped ones of the same provider.
        let top_rank: Vec<u8> = models
            .iter()
            .map(|m| m.rows.iter().map(|r| r.rank).max().unwrap_or(0))
            .collect();
        for p in &mut provs {
            p.models.sort_by_key(|m| std::cmp::Reverse(top_rank[*m]));
        }
        let last = |id: &str| id == "openrouter" || id.starts_with("huggingface");
        let mut scan: Vec<u32> = (0..provs.len())
            .filter(|i| provs[*i].model_match.is_some())
            .map(|i| i as u32)
            .collect();
        scan.extend(
            (0..provs.len())
                .filter(|i| provs[*i].model_match.is_none() && !last(&provs[*i].id))
                .map(|i| i as u32),
        );
        scan.extend(
            (0..provs.len())
                .filter(|i| provs[*i].model_match.is_none() && last(&provs[*i].id))
                .map(|i| i as u32),
        );

        // The image.
        let mut w = Writer::default();
        for m in &models {
            let rows_off = w.rows.len() as u32;
            for r in &m.rows {
                let extra = match &r.extra {
                    Some(x) if !x.is_empty() => {
                        w.extras.push(ExtraRec([
                            price_word(x.input_audio),
                            price_word(x.cache_read_audio),
                            price_word(x.output_audio),
                            price_word(x.input_image),
                            price_word(x.cache_read_image),
                            price_word(x.output_image),
                            price_word(x.web_search_per_k),
                            price_word(x.request_per_k),
                        ]));
                        (w.extras.len() - 1) as u32
                    }
                    _ => NONE,
                };
                w.rows.push(RowRec {
                    id: r.id,
                    min_input_tokens: r.min_input_tokens,
                    input: price_word(Some(r.input)),
                    output: price_word(Some(r.output)),
                    cache_read: price_word(r.cache_read),
                    cache_write_5m: price_word(r.cache_write_5m),
                    cache_write_1h: price_word(r.cache_write_1h),
                    valid_from: r.valid_from,
                    valid_to: r.valid_to,
                    window_from: r.window.map_or(NO_TIME, |x| x.from),
                    window_to: r.window.map_or(NO_TIME, |x| x.to),
                    extra,
                    rank: r.rank as u32,
                    tier: tier_word(r.service_tier),
                    _pad: 0,
                });
            }
            let rule = m
                .rule_text
                .as_deref()
                .and_then(|t| Rule::parse_text(t).ok())
                .map_or(NONE, |r| put_rule(&mut w, &r));
            let model = w.str(&m.model);
            let rule_text = w.opt_str(m.rule_text.as_deref());
            w.models.push(ModelRec {
                provider: m.provider as u32,
                rule,
                model,
                rule_text,
                rows: Span {
                    off: rows_off,
                    len: m.rows.len() as u32,
                },
            });
        }
        drop(models);
        let mut provider_keys = Vec::with_capacity(provs.len());
        for (pi, p) in provs.iter().enumerate() {
            let id = w.str(&p.id);
            let own = w.list(p.models.iter().map(|m| *m as u32));
            let fallback: Vec<u32> = p
                .fallback
                .iter()
                .filter_map(|f| provider_index.get(f).map(|i| *i as u32))
                .collect();
            let fallback = w.list(fallback);
            let mut keys: Vec<KeyRec> = p
                .by_id
                .iter()
                .map(|(k, m)| KeyRec {
                    key: w.str(k),
                    val: *m as u32,
                    _pad: 0,
                })
                .collect();
            w.sort_keys(&mut keys);
            let ids = Span {
                off: w.ids.len() as u32,
                len: keys.len() as u32,
            };
            w.ids.extend(keys);
            let model_match = p.model_match.as_ref().map_or(NONE, |r| put_rule(&mut w, r));
            let provider_match = p
                .provider_match
                .as_ref()
                .map_or(NONE, |r| put_rule(&mut w, r));
            w.providers.push(ProviderRec {
                id,
                models: own,
                ids,
                fallback,
                model_match,
                provider_match,
            });
            provider_keys.push(KeyRec {
                key: id,
                val: pi as u32,
                _pad: 0,
            });
        }
        w.sort_keys(&mut provider_keys);
        w.provider_keys = provider_keys;
        // Aliases: the last row of a key wins, as a map insert did.
        let mut by_key: HashMap<String, Alias> = HashMap::new();
        for a in aliases {
            by_key.insert(a.alias.trim().to_ascii_lowercase(), a);
        }
        let mut keyed: Vec<(String, Alias)> = by_key.into_iter().collect();
        keyed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (k, a) in keyed {
            let rec = AliasRec {
                key: w.str(&k),
                model: w.str(&a.model),
                provider: w.opt_str(a.provider.as_deref()),
            };
            w.aliases.push(rec);
        }
        let scan = w.list(scan);
        (w.finish(scan, n_read), problems)
    }

    /// Bytes of the image.
    pub fn bytes(&self) -> usize {
        self.img.bytes()
    }

    /// Price rows the image was built from.
    pub fn rows_read(&self) -> usize {
        self.img.header.rows_read as usize
    }

    fn models_(&self) -> &[ModelRec] {
        self.img.section(S_MODELS)
    }

    fn providers_(&self) -> &[ProviderRec] {
        self.img.section(S_PROVIDERS)
    }

    pub fn model_count(&self) -> usize {
        self.models_().len()
    }

    pub fn model(&self, i: usize) -> Model<'_> {
        let m = &self.models_()[i];
        Model {
            provider: self.img.str(self.providers_()[m.provider as usize].id),
            model: self.img.str(m.model),
            rule_text: self.img.opt_str(m.rule_text),
            has_rule: m.rule != NONE,
        }
    }

    /// The index of the model `provider`/`model` (any letter case), if the catalog lists it.
    pub fn find_model(&self, provider: &str, model: &str) -> Option<usize> {
        let p = self.provider_index(&provider.to_ascii_lowercase())?;
        self.by_id(p, &model.to_ascii_lowercase())
    }

    fn provider_index(&self, id: &str) -> Option<usize> {
        self.img
            .find(self.img.section::<KeyRec>(S_PROVIDER_KEYS), id)
            .map(|i| i as usize)
    }

    fn by_id(&self, p: usize, name: &str) -> Option<usize> {
        let sp = self.providers_()[p].ids;
        let all = self.img.section::<KeyRec>(S_IDS);
        let keys = all.get(sp.off as usize..(sp.off + sp.len) as usize)?;
        self.img.find(keys, name).map(|m| m as usize)
    }

    /// Whether rule node `n` covers `name` (lower case).
    fn rule_matches(&self, n: u32, name: &str) -> bool {
        let Some(node) = self.img.section::<NodeRec>(S_NODES).get(n as usize) else {
            return false;
        };
        let s = || self.img.str(node.s);
        match node.kind {
            N_EQUALS => name == s(),
            N_STARTS => name.starts_with(s()),
            N_ENDS => name.ends_with(s()),
            N_CONTAINS => name.contains(s()),
            N_REGEX => {
                if !name.starts_with(self.img.str(node.prefix)) {
                    return false;
                }
                let mut cache = self.regex.borrow_mut();
                let re = cache
                    .entry(n)
                    .or_insert_with(|| fancy_regex::Regex::new(s()).ok());
                // A regex that fails at run time (backtracking limit) matches nothing.
                re.as_ref()
                    .is_some_and(|r| r.is_match(name).unwrap_or(false))
            }
            N_OR => self
                .img
                .list(node.kids)
                .iter()
                .any(|k| self.rule_matches(*k, name)),
            N_AND => self
                .img
                .list(node.kids)
                .iter()
                .all(|k| self.rule_matches(*k, name)),
            _ => false,
        }
    }

    /// The model a call priced as model `i` is reported under: a router's `vendor/model` id
    /// (OpenRouter's `openai/gpt-4o-mini`) is the vendor's own model when the vendor lists one of
    /// that name (`gpt-4o-mini`), so that the spellings of one model count together in reports;
    /// any other model is itself.
    pub fn reported_model(&self, i: usize) -> usize {
        let m = self.model(i);
        let Some((vendor, rest)) = m.model.split_once('/') else {
            return i;
        };
        let Some(p) = self.provider_named(vendor) else {
            return i;
        };
        let vendor_id = self.provider_id(p);
        if vendor_id == m.provider {
            return i;
        }
        match self.find_in(p, &rest.trim().to_ascii_lowercase()) {
            Some(r) if self.model(r.model).provider == vendor_id => r.model,
            _ => i,
        }
    }

    pub fn provider_id(&self, i: usize) -> &str {
        self.img.str(self.providers_()[i].id)
    }

    pub fn provider_count(&self) -> usize {
        self.providers_().len()
    }

    /// The catalog provider a provider value or route word means: its id, a known route word,
    /// or the first provider whose provider_match covers it.
    pub fn provider_named(&self, value: &str) -> Option<usize> {
        let v = value.trim().to_ascii_lowercase();
        if v.is_empty() {
            return None;
        }
        if let Some(i) = self.provider_index(&v) {
            return Some(i);
        }
        if let Some((_, id)) = ROUTE_WORDS.iter().find(|(w, _)| *w == v) {
            if let Some(i) = self.provider_index(id) {
                return Some(i);
            }
        }
        self.providers_()
            .iter()
            .position(|p| p.provider_match != NONE && self.rule_matches(p.provider_match, &v))
    }

    /// A provider value as the catalog names it: the provider it means (`Anthropic`, `claude`
    /// and `anthropic` give `anthropic`; `vertex_ai` gives `google`), else the value trimmed
    /// and in lower case.
    pub fn normalize_provider(&self, value: &str) -> String {
        match self.provider_named(value) {
            Some(i) => self.provider_id(i).to_string(),
            None => value.trim().to_ascii_lowercase(),
        }
    }

    /// A model of provider `p` (or of its fallback providers) covering `name` (lower case): its
    /// id first, then the rules in order; then the name with a compact date dashed.
    fn find_in(&self, p: usize, name: &str) -> Option<Resolved> {
        if let Some(r) = self.find_own(p, name) {
            return Some(r);
        }
        if let Some(d) = dashed_date(name) {
            if let Some(r) = self.find_own(p, &d) {
                return Some(r);
            }
        }
        for fp in self.img.list(self.providers_()[p].fallback) {
            let fp = *fp as usize;
            if let Some(r) = self
                .find_own(fp, name)
                .or_else(|| dashed_date(name).and_then(|d| self.find_own(fp, &d)))
            {
                return Some(r);
            }
        }
        None
    }

    fn find_own(&self, p: usize, name: &str) -> Option<Resolved> {
        let models = self.models_();
        // The id itself for a model without a rule (yours); a rule, where there is one, says
        // which names the model covers (the dataset's ids are not always names the API takes).
        if let Some(m) = self.by_id(p, name) {
            if models[m].rule == NONE {
                return Some(Resolved {
                    model: m,
                    how: How::Id,
                });
            }
        }
        self.img
            .list(self.providers_()[p].models)
            .iter()
            .find(|m| {
                let rule = models[**m as usize].rule;
                rule != NONE && self.rule_matches(rule, name)
            })
            .map(|m| Resolved {
                model: *m as usize,
                how: How::Rule,
            })
    }

    fn alias(&self, key: &str) -> Option<&AliasRec> {
        let all = self.img.section::<AliasRec>(S_ALIASES);
        all.binary_search_by(|a| self.img.str(a.key).as_bytes().cmp(key.as_bytes()))
            .ok()
            .map(|i| &all[i])
    }

    /// Resolves an application's model name, optionally with the provider (host) the call went
    /// to. A provider value the catalog does not know is ignored (the name alone decides).
    pub fn resolve(&self, raw: &str, provider: Option<&str>) -> Option<Resolved> {
        self.resolve_depth(raw, provider, 0)
    }

    fn resolve_depth(&self, raw: &str, provider: Option<&str>, depth: u8) -> Option<Resolved> {
        let s = raw.trim().to_ascii_lowercase();
        if s.is_empty() {
            return None;
        }
        let scan_order = self.img.list(self.img.header.scan);
        // Your aliases first: the name as sent, then without its route.
        let tail = s.rsplit('/').next().unwrap_or(&s);
        for key in [s.as_str(), tail] {
            if let Some(a) = self.alias(key) {
                let target = self.img.str(a.model).trim().to_ascii_lowercase();
                let p = self.img.opt_str(a.provider).or(provider);
                if let Some(pi) = p.and_then(|p| self.provider_named(p)) {
                    if let Some(m) = self.by_id(pi, &target) {
                        return Some(Resolved {
                            model: m,
                            how: How::Alias,
                        });
                    }
                }
                for pi in scan_order {
                    if let Some(m) = self.by_id(*pi as usize, &target) {
                        return Some(Resolved {
                            model: m,
                            how: How::Alias,
                        });
                    }
                }
                if depth < 4 && target != key {
                    if let Some(r) = self.resolve_depth(&target, p, depth + 1) {
                        return Some(Resolved {
                            model: r.model,
                            how: How::Alias,
                        });
                    }
                }
            }
        }
        let s = s.strip_prefix("models/").unwrap_or(&s).to_string();

        if let Some(pi) = provider.and_then(|p| self.provider_named(p)) {
            // The call's provider picks among the hosts that sell the model. One that lists no
            // model for this name (the vendor written as provider of a Bedrock id, say) leaves
            // the decision to the name.
            if let Some(r) = self.find_in(pi, &s) {
                return Some(r);
            }
            if let Some((first, rest)) = s.split_once('/') {
                if self.provider_named(first) == Some(pi) {
                    if let Some(r) = self.find_in(pi, rest.strip_prefix("models/").unwrap_or(rest))
                    {
                        return Some(r);
                    }
                }
            }
        }

        if let Some((first, rest)) = s.split_once('/') {
            let named = self.provider_named(first);
            if HOST_ONLY.contains(&first) {
                // `groq/…`, `bedrock/…`, `openrouter/vendor/model`: that host's price or none.
                return named
                    .and_then(|pi| self.find_in(pi, rest.strip_prefix("models/").unwrap_or(rest)));
            }
            // `vendor/model`: an OpenRouter id, else the vendor's own model.
            if let Some(or) = self.provider_index("openrouter") {
                if let Some(r) = self.find_in(or, &s) {
                    return Some(r);
                }
            }
            if let Some(pi) = named {
                if let Some(r) = self.find_in(pi, rest) {
                    return Some(r);
                }
            }
            // Hosts whose ids contain a slash (Together's `meta-llama/Llama-3.3-70B-Instruct-Turbo`).
            return self.scan(&s);
        }
        if is_bedrock_id(&s) {
            if let Some(aws) = self.provider_index("aws") {
                if let Some(r) = self.find_in(aws, &s) {
                    return Some(r);
                }
            }
        }
        self.scan(&s)
    }

    /// A name with no host: the providers whose model_match covers it, then every provider.
    fn scan(&self, s: &str) -> Option<Resolved> {
        let scan_order = self.img.list(self.img.header.scan);
        let providers = self.providers_();
        for pi in scan_order {
            let mm = providers[*pi as usize].model_match;
            if mm != NONE && self.rule_matches(mm, s) {
                if let Some(r) = self.find_in(*pi as usize, s) {
                    return Some(r);
                }
            }
        }
        for pi in scan_order {
            if let Some(r) = self.find_own(*pi as usize, s) {
                return Some(r);
            }
        }
        let d = dashed_date(s)?;
        scan_order
            .iter()
            .find_map(|pi| self.find_own(*pi as usize, &d))
    }

    /// The price row for a call to model `i` at `at` (µs since 2000-01-01 UTC). Its provider
    /// and model are the model's (`Catalog::model`), left empty here.
    pub fn price_row(&self, i: usize, at: i64, u: &Usage, tier: ServiceTier) -> Option<PriceRow> {
        self.price_row_index(i, at, u, tier).map(|r| self.row_at(r))
    }

    /// The index (in the whole catalog) of the price row for a call to model `i` at `at`: what a
    /// reader that keeps the rows it used (`row_at`) looks up.
    #[inline]
    pub fn price_row_index(
        &self,
        i: usize,
        at: i64,
        u: &Usage,
        tier: ServiceTier,
    ) -> Option<usize> {
        let sp = self.models_()[i].rows;
        let all = self.img.section::<RowRec>(S_ROWS);
        let rows = all.get(sp.off as usize..(sp.off + sp.len) as usize)?;
        let r = select_row(rows, at, u, tier)?;
        // `r` is an element of `rows`, a slice of `all`: its position by address.
        Some(
            sp.off as usize
                + (r as *const RowRec as usize - rows.as_ptr() as usize)
                    / std::mem::size_of::<RowRec>(),
        )
    }

    /// The cost of a call to model `i` at `at` (None: no row prices it then). A token-only call
    /// is priced from the image's record as it lies (no `PriceRow` made): the hot path.
    #[inline]
    pub fn cost_at(&self, i: usize, at: i64, u: &Usage, tier: ServiceTier) -> Option<Cost> {
        let sp = self.models_()[i].rows;
        let all = self.img.section::<RowRec>(S_ROWS);
        let rows = all.get(sp.off as usize..(sp.off + sp.len) as usize)?;
        let r = select_row(rows, at, u, tier)?;
        if !u.plain() {
            return Some(self.row(r).cost(u));
        }
        let input = word_price(r.input).unwrap_or_default();
        let cw5 = word_price(r.cache_write_5m);
        let fee = self
            .img
            .section::<ExtraRec>(S_EXTRAS)
            .get(r.extra as usize)
            .and_then(|x| word_price(x.0[7]));
        Some(plain_cost(
            [
                input,
                word_price(r.output).unwrap_or_default(),
                word_price(r.cache_read).unwrap_or(input),
                cw5.unwrap_or(input),
                word_price(r.cache_write_1h).or(cw5).unwrap_or(input),
            ],
            fee,
            u,
        ))
    }

    /// Price row number `r` of the catalog (`price_row_index`).
    pub fn row_at(&self, r: usize) -> PriceRow {
        self.row(&self.img.section::<RowRec>(S_ROWS)[r])
    }

    /// All price rows of model `i` (for `explain_cost`; the hot path uses `price_row`).
    pub fn model_rows(&self, i: usize) -> Vec<PriceRow> {
        let sp = self.models_()[i].rows;
        let all = self.img.section::<RowRec>(S_ROWS);
        all.get(sp.off as usize..(sp.off + sp.len) as usize)
            .unwrap_or(&[])
            .iter()
            .map(|r| self.row(r))
            .collect()
    }

    /// A row of the image as a price row.
    fn row(&self, r: &RowRec) -> PriceRow {
        let extra = self
            .img
            .section::<ExtraRec>(S_EXTRAS)
            .get(r.extra as usize)
            .map(|x| {
                let p = |k: usize| word_price(x.0[k]);
                Box::new(ExtraPrices {
                    input_audio: p(0),
                    cache_read_audio: p(1),
                    output_audio: p(2),
                    input_image: p(3),
                    cache_read_image: p(4),
                    output_image: p(5),
                    web_search_per_k: p(6),
                    request_per_k: p(7),
                })
            });
        PriceRow {
            id: r.id,
            provider: String::new(),
            model: String::new(),
            min_input_tokens: r.min_input_tokens,
            input: word_price(r.input).unwrap_or_default(),
            output: word_price(r.output).unwrap_or_default(),
            cache_read: word_price(r.cache_read),
            cache_write_5m: word_price(r.cache_write_5m),
            cache_write_1h: word_price(r.cache_write_1h),
            valid_from: r.valid_from,
            valid_to: r.valid_to,
            rank: r.rank as u8,
            service_tier: word_tier(r.tier),
            extra,
            window: Candidate::window(r),
        }
    }

    /// The provider of a model name: the catalog's when it resolves, else a guess from its
    /// prefix or family.
    pub fn provider_of(&self, raw: &str, provider: Option<&str>) -> Option<String> {
        match self.resolve(raw, provider) {
            Some(r) => Some(self.model(r.model).provider.to_string()),
            None => guess_provider(raw).map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::{Price, TS_INFINITY, TS_NEG_INFINITY};

    fn row(id: i64, provider: &str, model: &str, input: &str, output: &str) -> PriceRow {
        PriceRow {
            id,
            provider: provider.into(),
            model: model.into(),
            min_input_tokens: 0,
            input: Price::parse(input).unwrap(),
            output: Price::parse(output).unwrap(),
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

    fn prov(
        id: &str,
        model_match: Option<&str>,
        provider_match: Option<&str>,
        fallback: &[&str],
    ) -> ProviderDef {
        ProviderDef {
            id: id.into(),
            model_match: model_match.map(str::to_string),
            provider_match: provider_match.map(str::to_string),
            fallback: fallback.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn catalog() -> Catalog {
        let rows = vec![
            (
                row(1, "anthropic", "claude-sonnet-4-5", "3", "15"),
                Some(
                    r#"{"or": [{"starts_with": "claude-sonnet-4-5"}, {"starts_with": "claude-sonnet-4.5"}]}"#,
                ),
            ),
            (
                row(2, "anthropic", "claude-3-sonnet", "3", "15"),
                Some(r#"{"starts_with": "claude-3-sonnet"}"#),
            ),
            (
                row(3, "openai", "gpt-4o", "2.5", "10"),
                Some(r#"{"or": [{"equals": "gpt-4o"}, {"equals": "gpt-4o-2024-08-06"}]}"#),
            ),
            (row(4, "openai", "gpt-4o-2024-05-13", "5", "15"), None),
            (
                row(5, "openai", "gpt-5.2", "1.75", "14"),
                Some(r#"{"or": [{"equals": "gpt-5.2"}, {"equals": "gpt-5.2-2025-12-11"}]}"#),
            ),
            (
                row(6, "mistral", "mistral-large", "0.5", "1.5"),
                Some(
                    r#"{"or": [{"equals": "mistral-large-latest"}, {"equals": "mistral-large-2512"}]}"#,
                ),
            ),
            (
                row(7, "openrouter", "mistralai/mistral-large", "2", "6"),
                Some(r#"{"equals": "mistralai/mistral-large"}"#),
            ),
            (
                row(8, "openrouter", "anthropic/claude-3-sonnet", "3", "15"),
                Some(r#"{"equals": "anthropic/claude-3-sonnet"}"#),
            ),
            (
                row(
                    9,
                    "openrouter",
                    "meta-llama/llama-3.3-70b-instruct",
                    "0.59",
                    "0.79",
                ),
                Some(r#"{"equals": "meta-llama/llama-3.3-70b-instruct"}"#),
            ),
            (
                row(
                    10,
                    "openrouter",
                    "meta-llama/llama-3.3-70b-instruct:free",
                    "0",
                    "0",
                ),
                Some(r#"{"equals": "meta-llama/llama-3.3-70b-instruct:free"}"#),
            ),
            (
                row(11, "groq", "llama-3.3-70b-versatile", "0.59", "0.79"),
                None,
            ),
            (
                row(
                    12,
                    "aws",
                    "regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
                    "3.3",
                    "16.5",
                ),
                Some(
                    r#"{"regex": "^(us|eu|apac)\\.anthropic\\.claude-sonnet-4-5-20250929-v1:0$"}"#,
                ),
            ),
            (row(13, "azure", "gpt-4o-azure-only", "9", "9"), None),
            (
                row(14, "x-ai", "grok-4-0709", "3", "15"),
                Some(r#"{"or": [{"equals": "grok-4"}, {"equals": "grok-4-0709"}]}"#),
            ),
            (
                row(
                    15,
                    "together",
                    "meta-llama/Llama-3.3-70B-Instruct-Turbo",
                    "0.88",
                    "0.88",
                ),
                None,
            ),
            (
                row(16, "google", "claude-sonnet-4-5", "3", "15"),
                Some(r#"{"contains": "claude-sonnet-4-5"}"#),
            ),
            (
                row(17, "google", "gemini-2.5-pro", "1.25", "10"),
                Some(r#"{"starts_with": "gemini-2.5-pro"}"#),
            ),
        ];
        let providers = vec![
            prov(
                "anthropic",
                Some(r#"{"contains": "claude"}"#),
                Some(r#"{"contains": "anthropic"}"#),
                &[],
            ),
            prov(
                "aws",
                None,
                Some(r#"{"or": [{"contains": "bedrock"}, {"contains": "amazon"}]}"#),
                &[],
            ),
            prov("azure", None, None, &["openai"]),
            prov(
                "google",
                Some(r#"{"contains": "gemini"}"#),
                Some(r#"{"or": [{"contains": "google"}, {"contains": "vertex"}]}"#),
                &["anthropic"],
            ),
            prov("groq", None, None, &[]),
            prov(
                "mistral",
                Some(r#"{"regex": "^(?![^/]+/)(?:mistral|mixtral)"}"#),
                Some(r#"{"starts_with": "mistral"}"#),
                &[],
            ),
            prov(
                "openai",
                Some(r#"{"or": [{"starts_with": "gpt-"}, {"regex": "^o[134]"}]}"#),
                Some(r#"{"contains": "openai"}"#),
                &[],
            ),
            prov("openrouter", None, None, &[]),
            prov(
                "together",
                None,
                Some(r#"{"or": [{"equals": "together-ai"}, {"equals": "together_ai"}]}"#),
                &[],
            ),
            prov(
                "x-ai",
                Some(r#"{"contains": "grok"}"#),
                Some(r#"{"equals": "xai"}"#),
                &[],
            ),
        ];
        let (rows, rules): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .map(|(r, t)| (r, t.map(str::to_string)))
            .unzip();
        let (c, problems) = Catalog::new(
            rows,
            rules,
            providers,
            vec![Alias {
                alias: "House-Model".into(),
                model: "gpt-4o".into(),
                provider: Some("openai".into()),
            }],
        );
        assert!(problems.is_empty(), "{problems:?}");
        c
    }

    /// "provider/model" of what a name (and optional provider) resolves to.
    fn res(c: &Catalog, name: &str, provider: Option<&str>) -> Option<String> {
        c.resolve(name, provider)
            .map(|r| format!("{}/{}", c.model(r.model).provider, c.model(r.model).model))
    }

    #[test]
    fn the_hot_path_prices_as_the_row_does() {
        // cost_at reads the image's record for a token-only call; it must equal PriceRow::cost
        // for every model, with and without fees and cache prices, plain or not.
        let mut fee = row(90, "perplexity", "sonar-x", "1", "1");
        fee.extras_mut().request_per_k = Some(Price::parse("5").unwrap());
        let mut cached = row(91, "anthropic", "claude-x", "3", "15");
        cached.cache_read = Some(Price::parse("0.3").unwrap());
        cached.cache_write_5m = Some(Price::parse("3.75").unwrap());
        cached.cache_write_1h = Some(Price::parse("6").unwrap());
        let (c, _) = Catalog::new(
            vec![fee, cached, row(92, "openai", "plain-x", "2.5", "10")],
            vec![None, None, None],
            vec![],
            vec![],
        );
        let usages = [
            Usage {
                input: 1000,
                output: 200,
                ..Default::default()
            },
            Usage {
                input: 10,
                output: 0,
                cache_read: 5000,
                cache_write: 700,
                cache_write_1h: 300,
                ..Default::default()
            },
            Usage {
                input: 100,
                output: 100,
                web_searches: 3,
                ..Default::default()
            },
        ];
        for i in 0..c.model_count() {
            for u in &usages {
                let want = c
                    .price_row(i, 0, u, ServiceTier::Standard)
                    .map(|r| r.cost(u));
                assert_eq!(
                    c.cost_at(i, 0, u, ServiceTier::Standard),
                    want,
                    "model {i} {u:?}"
                );
                assert!(want.is_some());
            }
        }
    }

    #[test]
    fn ids_rules_and_case() {
        let c = catalog();
        assert_eq!(res(&c, "gpt-4o", None).as_deref(), Some("openai/gpt-4o"));
        assert_eq!(res(&c, "GPT-4o ", None).as_deref(), Some("openai/gpt-4o"));
        assert_eq!(
            res(&c, "claude-sonnet-4-5-20250929", None).as_deref(),
            Some("anthropic/claude-sonnet-4-5")
        );
        assert_eq!(
            res(&c, "claude-sonnet-4.5", None).as_deref(),
            Some("anthropic/claude-sonnet-4-5")
        );
        assert_eq!(res(&c, "no-such-model", None), None);
        assert_eq!(res(&c, "", None), None);
        assert_eq!(c.resolve("gpt-4o-2024-05-13", None).unwrap().how, How::Id);
        assert_eq!(c.resolve("gpt-4o-2024-08-06", None).unwrap().how, How::Rule);
    }

    #[test]
    fn never_guesses_a_price() {
        let c = catalog();
        // A dated snapshot priced separately upstream keeps its own price.
        assert_eq!(
            res(&c, "gpt-4o-2024-05-13", None).as_deref(),
            Some("openai/gpt-4o-2024-05-13")
        );
        // A snapshot no rule covers stays unpriced (no stripping of the date).
        assert_eq!(res(&c, "gpt-4o-2099-01-01", None), None);
        // OpenRouter's Mistral Large is not mistral-large-latest.
        assert_eq!(
            res(&c, "mistralai/mistral-large", None).as_deref(),
            Some("openrouter/mistralai/mistral-large")
        );
        assert_eq!(
            res(&c, "mistral-large-latest", None).as_deref(),
            Some("mistral/mistral-large")
        );
        assert_eq!(res(&c, "mistral-large", None), None);
        // `:free` is its own (free) model, and an unknown variant is not its base model.
        assert_eq!(
            res(&c, "meta-llama/llama-3.3-70b-instruct:free", None).as_deref(),
            Some("openrouter/meta-llama/llama-3.3-70b-instruct:free")
        );
        assert_eq!(
            res(&c, "meta-llama/llama-3.3-70b-instruct:nitro", None),
            None
        );
        // Compact dates are dashed, as the dataset does.
        assert_eq!(
            res(&c, "gpt-5.2-20251211", None).as_deref(),
            Some("openai/gpt-5.2")
        );
    }

    #[test]
    fn hosts_from_the_name() {
        let c = catalog();
        assert_eq!(
            res(&c, "anthropic/claude-3-sonnet", None).as_deref(),
            Some("openrouter/anthropic/claude-3-sonnet")
        );
        assert_eq!(
            res(&c, "openrouter/anthropic/claude-3-sonnet", None).as_deref(),
            Some("openrouter/anthropic/claude-3-sonnet")
        );
        assert_eq!(
            res(&c, "meta-llama/llama-3.3-70b-instruct", None).as_deref(),
            Some("openrouter/meta-llama/llama-3.3-70b-instruct")
        );
        // Not an OpenRouter id: the vendor's own model.
        assert_eq!(
            res(&c, "anthropic/claude-sonnet-4-5", None).as_deref(),
            Some("anthropic/claude-sonnet-4-5")
        );
        assert_eq!(
            res(&c, "x-ai/grok-4", None).as_deref(),
            Some("x-ai/grok-4-0709")
        );
        assert_eq!(
            res(&c, "xai/grok-4", None).as_deref(),
            Some("x-ai/grok-4-0709")
        );
        assert_eq!(
            res(&c, "groq/llama-3.3-70b-versatile", None).as_deref(),
            Some("groq/llama-3.3-70b-versatile")
        );
        assert_eq!(
            res(&c, "llama-3.3-70b-versatile", None).as_deref(),
            Some("groq/llama-3.3-70b-versatile")
        );
        // A host that does not list a model prices it only through its fallback providers.
        assert_eq!(
            res(&c, "azure/gpt-4o", None).as_deref(),
            Some("openai/gpt-4o")
        );
        assert_eq!(res(&c, "groq/gpt-4o", None), None);
        assert_eq!(res(&c, "openrouter/gpt-4o", None), None);
        assert_eq!(
            res(&c, "vertex_ai/claude-sonnet-4-5@20250929", None).as_deref(),
            Some("google/claude-sonnet-4-5")
        );
        assert_eq!(
            res(
                &c,
                "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo",
                None
            )
            .as_deref(),
            Some("together/meta-llama/Llama-3.3-70B-Instruct-Turbo")
        );
        assert_eq!(
            res(&c, "meta-llama/Llama-3.3-70B-Instruct-Turbo", None).as_deref(),
            Some("together/meta-llama/Llama-3.3-70B-Instruct-Turbo")
        );
        assert_eq!(
            res(&c, "models/gemini-2.5-pro", None).as_deref(),
            Some("google/gemini-2.5-pro")
        );
        // Bedrock ids go to Bedrock, not to another host whose rule merely contains the name.
        assert_eq!(
            res(&c, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", None).as_deref(),
            Some("aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0")
        );
        assert_eq!(
            res(
                &c,
                "bedrock/eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
                None
            )
            .as_deref(),
            Some("aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0")
        );
    }

    #[test]
    fn hosts_from_the_provider_value() {
        let c = catalog();
        assert_eq!(
            res(&c, "gpt-4o", Some("azure")).as_deref(),
            Some("openai/gpt-4o")
        );
        assert_eq!(
            res(&c, "gpt-4o-azure-only", Some("Azure")).as_deref(),
            Some("azure/gpt-4o-azure-only")
        );
        assert_eq!(
            res(&c, "gpt-4o-azure-only", None).as_deref(),
            Some("azure/gpt-4o-azure-only")
        );
        assert_eq!(
            res(&c, "claude-sonnet-4-5", Some("vertex_ai")).as_deref(),
            Some("google/claude-sonnet-4-5")
        );
        assert_eq!(
            res(&c, "claude-sonnet-4-5", Some("google-vertex")).as_deref(),
            Some("google/claude-sonnet-4-5")
        );
        assert_eq!(
            res(&c, "anthropic/claude-3-sonnet", Some("openrouter")).as_deref(),
            Some("openrouter/anthropic/claude-3-sonnet")
        );
        assert_eq!(
            res(&c, "openai/gpt-4o", Some("OpenAI")).as_deref(),
            Some("openai/gpt-4o")
        );
        assert_eq!(
            res(&c, "llama-3.3-70b-versatile", Some("groq")).as_deref(),
            Some("groq/llama-3.3-70b-versatile")
        );
        // The named provider lists no such model: the name decides (a vendor written as the
        // provider of a Bedrock id).
        assert_eq!(
            res(&c, "llama-3.3-70b-versatile", Some("openai")).as_deref(),
            Some("groq/llama-3.3-70b-versatile")
        );
        assert_eq!(
            res(
                &c,
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                Some("anthropic")
            )
            .as_deref(),
            Some("aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0")
        );
        // A provider value the catalog does not know: the name decides.
        assert_eq!(
            res(&c, "gpt-4o", Some("my-gateway")).as_deref(),
            Some("openai/gpt-4o")
        );
        assert_eq!(
            c.provider_named("bedrock").map(|i| c.provider_id(i)),
            Some("aws")
        );
        assert_eq!(
            c.provider_named("together_ai").map(|i| c.provider_id(i)),
            Some("together")
        );
    }

    #[test]
    fn aliases() {
        let c = catalog();
        assert_eq!(
            res(&c, "house-model", None).as_deref(),
            Some("openai/gpt-4o")
        );
        assert_eq!(
            res(&c, "HOUSE-MODEL", None).as_deref(),
            Some("openai/gpt-4o")
        );
        assert_eq!(
            res(&c, "gateway/house-model", None).as_deref(),
            Some("openai/gpt-4o")
        );
        assert_eq!(c.resolve("house-model", None).unwrap().how, How::Alias);
    }

    #[test]
    fn your_models_first_and_bad_rules_reported() {
        let mut mine = row(1_000_001, "openai", "gpt-4o-house", "1", "1");
        mine.rank = 2;
        let shipped = row(1, "openai", "gpt-4o-catchall", "2", "2");
        let (c, problems) = Catalog::new(
            vec![shipped, mine, row(2, "openai", "broken", "1", "1")],
            vec![
                Some(r#"{"starts_with": "gpt-4o"}"#.into()),
                Some(r#"{"starts_with": "gpt-4o-h"}"#.into()),
                Some(r#"{"regex": "("}"#.into()),
            ],
            vec![prov("openai", None, None, &[])],
            vec![],
        );
        assert_eq!(
            res(&c, "gpt-4o-house-2", None).as_deref(),
            Some("openai/gpt-4o-house")
        );
        assert_eq!(
            res(&c, "gpt-4o-other", None).as_deref(),
            Some("openai/gpt-4o-catchall")
        );
        assert!(problems.is_empty(), "{problems:?}");
        let broken = c.model(c.find_model("openai", "broken").unwrap());
        let problem = broken.rule_problem().unwrap();
        assert!(
            problem.contains("model openai broken") && problem.contains("$.regex"),
            "{problem}"
        );
        assert!(!broken.has_rule());
        assert_eq!(res(&c, "broken", None).as_deref(), Some("openai/broken"));
        assert_eq!(
            res(&c, "gpt-4o-catchall", None).as_deref(),
            Some("openai/gpt-4o-catchall")
        );
    }

    #[test]
    fn provider_guesses() {
        assert_eq!(guess_provider("claude-9-unknown"), Some("anthropic"));
        assert_eq!(guess_provider("gpt-7"), Some("openai"));
        assert_eq!(guess_provider("gemini-9"), Some("google"));
        assert_eq!(guess_provider("deepseek/whatever"), Some("deepseek"));
        assert_eq!(guess_provider("us.anthropic.claude-x-v1:0"), Some("aws"));
        assert_eq!(
            guess_provider("fireworks_ai/accounts/fireworks/models/llama-v9"),
            Some("fireworks")
        );
        assert_eq!(guess_provider("groq/some-new-model"), Some("groq"));
        assert_eq!(guess_provider("meta-llama/llama-9"), Some("meta"));
        assert_eq!(guess_provider("mystery"), None);
        assert!(is_bedrock_id(
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
        ));
        assert!(is_bedrock_id("anthropic.claude-3-haiku-20240307-v1:0"));
        assert!(!is_bedrock_id("gpt-4.1"));
        assert!(!is_bedrock_id("gemini-2.5-pro"));
    }
}
