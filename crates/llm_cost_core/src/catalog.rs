//! The price catalog as plain Rust: which catalog model an application's model name means, and
//! the price row of a call. Loaded from `llm_cost.model_prices`, `llm_cost.providers` and
//! `llm_cost.model_aliases` by `pg::cache`; no Postgres here.
//!
//! Resolution never guesses a price: a name reaches a model only through that model's id, its
//! match rule (the dataset's, or yours), or your alias. What a name says about the host is used to
//! pick the provider: LiteLLM-style routes (`bedrock/…`, `groq/…`, `openrouter/…`), OpenRouter's
//! `vendor/model` ids, Bedrock's `region.vendor.model-v1:0` ids, or an explicit provider value.

use crate::matching::{dashed_date, Rule};
use crate::pricing::{select_row, PriceRow, ServiceTier, Usage};
use std::collections::HashMap;

/// One catalog model: a (provider, model) pair with all its price rows (tiers, service tiers,
/// history, origins) and the rule saying which names it covers.
#[derive(Debug)]
pub struct Model {
    pub provider: String,
    pub model: String,
    pub rows: Vec<PriceRow>,
    /// The match rule as stored (JSON); None: the model id itself (any letter case).
    pub rule_text: Option<String>,
    /// Parsed on first use: most rules are never needed in a backend (names are memoised).
    rule: std::cell::OnceCell<Option<Rule>>,
}

impl Model {
    /// The model's match rule; None when it has none, or one that cannot be used (then the
    /// model is matched by its id, as one without a rule).
    pub fn rule(&self) -> Option<&Rule> {
        self.rule
            .get_or_init(|| {
                self.rule_text
                    .as_deref()
                    .and_then(|t| Rule::parse_text(t).ok())
            })
            .as_ref()
    }

    /// The problem with the model's match rule, if it has one that cannot be used.
    pub fn rule_problem(&self) -> Option<String> {
        let t = self.rule_text.as_deref()?;
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

#[derive(Debug)]
struct ProviderInfo {
    id: String,
    model_match: Option<Rule>,
    provider_match: Option<Rule>,
    fallback: Vec<String>,
    /// Indexes into `models`: own models in match order.
    models: Vec<usize>,
    /// lower(model id) -> index.
    by_id: HashMap<String, usize>,
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

#[derive(Debug, Default)]
pub struct Catalog {
    models: Vec<Model>,
    providers: Vec<ProviderInfo>,
    provider_index: HashMap<String, usize>,
    /// Providers to try for a name that names no host: those with a model_match rule first
    /// (model makers), then hosts; OpenRouter and Hugging Face routes last.
    scan_order: Vec<usize>,
    aliases: HashMap<String, Alias>,
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

impl Catalog {
    /// Builds the catalog. `rules[i]` is the match rule (JSON text) stored with `rows[i]`.
    /// Returns the catalog and the problems found in the providers' rules (a model's rule is
    /// parsed when first used; `Model::rule_problem` says what is wrong with one).
    pub fn new(
        rows: Vec<PriceRow>,
        rules: Vec<Option<String>>,
        providers: Vec<ProviderDef>,
        aliases: Vec<Alias>,
    ) -> (Catalog, Vec<String>) {
        let mut c = Catalog::default();
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
        for p in &providers {
            let id = p.id.to_ascii_lowercase();
            if c.provider_index.contains_key(&id) {
                continue;
            }
            let info = ProviderInfo {
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
                by_id: HashMap::new(),
            };
            c.provider_index.insert(id, c.providers.len());
            c.providers.push(info);
        }
        // Rows grouped by (provider, model), in the order of their first row (the dataset's order).
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|i| rows[*i].id);
        let mut rows: Vec<Option<PriceRow>> = rows.into_iter().map(Some).collect();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        // Best rule text per model: from the highest-ranked row that has one.
        let mut best_rule: Vec<(i16, Option<String>)> = Vec::new();
        for i in order {
            let r = rows[i].take().expect("each row once");
            let key = (
                r.provider.to_ascii_lowercase(),
                r.model.to_ascii_lowercase(),
            );
            let m = match index.get(&key) {
                Some(m) => *m,
                None => {
                    let pi = match c.provider_index.get(&key.0) {
                        Some(pi) => *pi,
                        None => {
                            // A provider only your rows name: a provider with no rules of its own.
                            c.provider_index.insert(key.0.clone(), c.providers.len());
                            c.providers.push(ProviderInfo {
                                id: key.0.clone(),
                                model_match: None,
                                provider_match: None,
                                fallback: vec![],
                                models: vec![],
                                by_id: HashMap::new(),
                            });
                            c.providers.len() - 1
                        }
                    };
                    c.models.push(Model {
                        provider: key.0.clone(),
                        model: r.model.clone(),
                        rows: vec![],
                        rule_text: None,
                        rule: Default::default(),
                    });
                    best_rule.push((-1, None));
                    let m = c.models.len() - 1;
                    c.providers[pi].models.push(m);
                    c.providers[pi].by_id.insert(key.1.clone(), m);
                    index.insert(key, m);
                    m
                }
            };
            if let Some(t) = &rules[i] {
                if (r.rank as i16) > best_rule[m].0 {
                    best_rule[m] = (r.rank as i16, Some(t.clone()));
                }
            }
            c.models[m].rows.push(r);
        }
        for (m, (_, text)) in best_rule.into_iter().enumerate() {
            c.models[m].rule_text = text;
        }
        // Your own and imported models are tried before the shipped ones of the same provider.
        let top_rank: Vec<u8> = c
            .models
            .iter()
            .map(|m| m.rows.iter().map(|r| r.rank).max().unwrap_or(0))
            .collect();
        for p in &mut c.providers {
            p.models.sort_by_key(|m| std::cmp::Reverse(top_rank[*m]));
        }
        let last = |id: &str| id == "openrouter" || id.starts_with("huggingface");
        let mut scan: Vec<usize> = (0..c.providers.len())
            .filter(|i| c.providers[*i].model_match.is_some())
            .collect();
        scan.extend(
            (0..c.providers.len())
                .filter(|i| c.providers[*i].model_match.is_none() && !last(&c.providers[*i].id)),
        );
        scan.extend(
            (0..c.providers.len())
                .filter(|i| c.providers[*i].model_match.is_none() && last(&c.providers[*i].id)),
        );
        c.scan_order = scan;
        for a in aliases {
            c.aliases.insert(a.alias.trim().to_ascii_lowercase(), a);
        }
        (c, problems)
    }

    pub fn models(&self) -> &[Model] {
        &self.models
    }

    pub fn model(&self, i: usize) -> &Model {
        &self.models[i]
    }

    /// The model a call priced as model `i` is reported under: a router's `vendor/model` id
    /// (OpenRouter's `openai/gpt-4o-mini`) is the vendor's own model when the vendor lists one of
    /// that name (`gpt-4o-mini`), so that the spellings of one model count together in reports;
    /// any other model is itself.
    pub fn reported_model(&self, i: usize) -> usize {
        let m = &self.models[i];
        let Some((vendor, rest)) = m.model.split_once('/') else {
            return i;
        };
        let Some(p) = self.provider_named(vendor) else {
            return i;
        };
        let vendor_id = &self.providers[p].id;
        if *vendor_id == m.provider {
            return i;
        }
        match self.find_in(p, &rest.trim().to_ascii_lowercase()) {
            Some(r) if self.models[r.model].provider == *vendor_id => r.model,
            _ => i,
        }
    }

    /// Approximate heap bytes the catalog holds (strings, rows, indexes; rules not yet parsed).
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        let mut n = self.models.capacity() * size_of::<Model>();
        for m in &self.models {
            n += m.provider.capacity()
                + m.model.capacity()
                + m.rule_text.as_ref().map_or(0, |t| t.capacity());
            n += m.rows.capacity() * size_of::<PriceRow>();
            n += m
                .rows
                .iter()
                .map(|r| r.provider.capacity() + r.model.capacity())
                .sum::<usize>();
        }
        for p in &self.providers {
            n += size_of::<ProviderInfo>()
                + p.id.capacity()
                + p.models.capacity() * size_of::<usize>();
            n += p.by_id.capacity() * (size_of::<String>() + size_of::<usize>() + 8)
                + p.by_id.keys().map(|k| k.capacity()).sum::<usize>();
        }
        n + self.aliases.capacity() * (size_of::<String>() + size_of::<Alias>() + 8)
    }

    pub fn provider_id(&self, i: usize) -> &str {
        &self.providers[i].id
    }

    pub fn provider_count(&self) -> usize {
        self.providers.len()
    }

    /// The catalog provider a provider value or route word means: its id, a known route word,
    /// or the first provider whose provider_match covers it.
    pub fn provider_named(&self, value: &str) -> Option<usize> {
        let v = value.trim().to_ascii_lowercase();
        if v.is_empty() {
            return None;
        }
        if let Some(i) = self.provider_index.get(&v) {
            return Some(*i);
        }
        if let Some((_, id)) = ROUTE_WORDS.iter().find(|(w, _)| *w == v) {
            if let Some(i) = self.provider_index.get(*id) {
                return Some(*i);
            }
        }
        self.providers
            .iter()
            .position(|p| p.provider_match.as_ref().is_some_and(|r| r.is_match(&v)))
    }

    /// A provider value as the catalog names it: the provider it means (`Anthropic`, `claude`
    /// and `anthropic` give `anthropic`; `vertex_ai` gives `google`), else the value trimmed
    /// and in lower case.
    pub fn normalize_provider(&self, value: &str) -> String {
        match self.provider_named(value) {
            Some(i) => self.providers[i].id.clone(),
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
        for f in &self.providers[p].fallback {
            if let Some(fp) = self.provider_index.get(f) {
                if let Some(r) = self
                    .find_own(*fp, name)
                    .or_else(|| dashed_date(name).and_then(|d| self.find_own(*fp, &d)))
                {
                    return Some(r);
                }
            }
        }
        None
    }

    fn find_own(&self, p: usize, name: &str) -> Option<Resolved> {
        let prov = &self.providers[p];
        // The id itself for a model without a rule (yours); a rule, where there is one, says
        // which names the model covers (the dataset's ids are not always names the API takes).
        if let Some(m) = prov.by_id.get(name) {
            if self.models[*m].rule().is_none() {
                return Some(Resolved {
                    model: *m,
                    how: How::Id,
                });
            }
        }
        prov.models
            .iter()
            .find(|m| self.models[**m].rule().is_some_and(|r| r.is_match(name)))
            .map(|m| Resolved {
                model: *m,
                how: How::Rule,
            })
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
        // Your aliases first: the name as sent, then without its route.
        let tail = s.rsplit('/').next().unwrap_or(&s);
        for key in [s.as_str(), tail] {
            if let Some(a) = self.aliases.get(key) {
                let target = a.model.trim().to_ascii_lowercase();
                let p = a.provider.as_deref().or(provider);
                if let Some(pi) = p.and_then(|p| self.provider_named(p)) {
                    if let Some(m) = self.providers[pi].by_id.get(&target) {
                        return Some(Resolved {
                            model: *m,
                            how: How::Alias,
                        });
                    }
                }
                for pi in &self.scan_order {
                    if let Some(m) = self.providers[*pi].by_id.get(&target) {
                        return Some(Resolved {
                            model: *m,
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
            if let Some(or) = self.provider_index.get("openrouter") {
                if let Some(r) = self.find_in(*or, &s) {
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
            if let Some(aws) = self.provider_index.get("aws") {
                if let Some(r) = self.find_in(*aws, &s) {
                    return Some(r);
                }
            }
        }
        self.scan(&s)
    }

    /// A name with no host: the providers whose model_match covers it, then every provider.
    fn scan(&self, s: &str) -> Option<Resolved> {
        for pi in &self.scan_order {
            if self.providers[*pi]
                .model_match
                .as_ref()
                .is_some_and(|r| r.is_match(s))
            {
                if let Some(r) = self.find_in(*pi, s) {
                    return Some(r);
                }
            }
        }
        for pi in &self.scan_order {
            if let Some(r) = self.find_own(*pi, s) {
                return Some(r);
            }
        }
        let d = dashed_date(s)?;
        self.scan_order.iter().find_map(|pi| self.find_own(*pi, &d))
    }

    /// The price row for a call to model `i` at `at` (µs since 2000-01-01 UTC).
    pub fn price_row(&self, i: usize, at: i64, u: &Usage, tier: ServiceTier) -> Option<&PriceRow> {
        select_row(&self.models[i].rows, at, u, tier)
    }

    /// The provider of a model name: the catalog's when it resolves, else a guess from its
    /// prefix or family.
    pub fn provider_of(&self, raw: &str, provider: Option<&str>) -> Option<String> {
        match self.resolve(raw, provider) {
            Some(r) => Some(self.models[r.model].provider.clone()),
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
            c.provider_named("bedrock")
                .map(|i| c.providers[i].id.as_str()),
            Some("aws")
        );
        assert_eq!(
            c.provider_named("together_ai")
                .map(|i| c.providers[i].id.as_str()),
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
        let broken = c.models().iter().find(|m| m.model == "broken").unwrap();
        let problem = broken.rule_problem().unwrap();
        assert!(
            problem.contains("model openai broken") && problem.contains("$.regex"),
            "{problem}"
        );
        assert!(broken.rule().is_none());
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
