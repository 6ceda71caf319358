//! The price catalog as plain Rust: model-name resolution and price look-up.
//! Loaded from `llm_cost.model_prices` / `llm_cost.model_aliases` by `cache.rs`; no Postgres here.

use crate::core::pricing::{select_row, PriceRow, Usage};
use std::collections::HashMap;

/// One catalog model: a (provider, model) pair with all its price rows (tiers and history).
#[derive(Debug, Clone)]
pub struct Model {
    pub provider: String,
    pub model: String,
    pub rows: Vec<PriceRow>,
}

/// A DBA-defined alias: `alias` (any case) means `model`, optionally of `provider`.
#[derive(Debug, Clone)]
pub struct Alias {
    pub alias: String,
    pub model: String,
    pub provider: Option<String>,
}

#[derive(Debug, Default)]
pub struct Catalog {
    models: Vec<Model>,
    /// lower(model) -> indexes into `models` (several providers may list one model id).
    by_name: HashMap<String, Vec<usize>>,
    /// lower(undated model) -> index of the newest dated snapshot, e.g.
    /// `claude-sonnet-4-5` -> `claude-sonnet-4-5-20250929`.
    by_undated: HashMap<String, Vec<usize>>,
    aliases: HashMap<String, Alias>,
}

/// Providers we recognise in prefixes, with the catalog provider they stand for.
const PROVIDER_WORDS: &[(&str, &str)] = &[
    ("anthropic", "anthropic"),
    ("claude", "anthropic"),
    ("openai", "openai"),
    ("azure", "openai"),
    ("azure_ai", "openai"),
    ("google", "google"),
    ("gemini", "google"),
    ("vertex_ai", "google"),
    ("vertex", "google"),
    ("vertexai", "google"),
    ("google-vertex", "google"),
    ("mistral", "mistral"),
    ("mistralai", "mistral"),
    ("deepseek", "deepseek"),
    ("deepseek-ai", "deepseek"),
    ("cohere", "cohere"),
    ("meta", "meta"),
    ("meta-llama", "meta"),
    ("amazon", "amazon"),
    ("xai", "xai"),
    ("x-ai", "xai"),
];

/// Routers and hosting platforms: they say where the call went, not who made the model.
const ROUTER_WORDS: &[&str] = &[
    "openrouter", "bedrock", "vertex_ai", "vertex", "azure", "azure_ai", "together", "together_ai",
    "fireworks", "fireworks_ai", "groq", "litellm", "models", "publishers", "aws",
];

const BEDROCK_REGIONS: &[&str] = &["us", "eu", "apac", "ap", "global", "us-gov", "jp", "au", "ca"];
const BEDROCK_VENDORS: &[&str] =
    &["anthropic", "meta", "amazon", "mistral", "cohere", "deepseek", "openai", "ai21", "writer", "qwen"];

fn provider_word(w: &str) -> Option<&'static str> {
    PROVIDER_WORDS.iter().find(|(k, _)| *k == w).map(|(_, v)| *v)
}

/// Strips a trailing `-YYYYMMDD` or `-YYYY-MM-DD` date, if any.
pub fn strip_date_suffix(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let is_digits = |x: &[u8]| x.iter().all(|c| c.is_ascii_digit());
    if b.len() > 9 && b[b.len() - 9] == b'-' && is_digits(&b[b.len() - 8..]) {
        let y = &b[b.len() - 8..b.len() - 4];
        if y.starts_with(b"20") {
            return Some(&s[..s.len() - 9]);
        }
    }
    if b.len() > 11 {
        let t = &b[b.len() - 11..];
        if t[0] == b'-' && t[5] == b'-' && t[8] == b'-' && is_digits(&t[1..5]) && is_digits(&t[6..8]) && is_digits(&t[9..11]) && t[1..3] == *b"20" {
            return Some(&s[..s.len() - 11]);
        }
    }
    None
}

/// Strips a Bedrock version suffix: `-v1:0`, `-v2`, `:0`.
fn strip_bedrock_version(s: &str) -> &str {
    let mut s = s;
    if let Some(i) = s.rfind(':') {
        if s[i + 1..].chars().all(|c| c.is_ascii_digit()) {
            s = &s[..i];
        }
    }
    if let Some(i) = s.rfind("-v") {
        if i + 2 < s.len() && s[i + 2..].chars().all(|c| c.is_ascii_digit()) {
            s = &s[..i];
        }
    }
    s
}

/// A parsed application model name: the bare model id candidates, most specific first, and the
/// provider named by a prefix, if any.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NameVariants {
    pub candidates: Vec<String>,
    /// Route segments as written (`azure`, `openrouter`, `anthropic`), outermost first.
    pub prefixes: Vec<String>,
    pub provider_hint: Option<&'static str>,
}

/// Every spelling of `raw` worth looking up, most specific first. Pure string work.
pub fn name_variants(raw: &str) -> NameVariants {
    let mut out = NameVariants::default();
    let s = raw.trim().to_ascii_lowercase();
    if s.is_empty() {
        return out;
    }
    let push = |v: &mut Vec<String>, c: &str| {
        if !c.is_empty() && !v.iter().any(|x| x == c) {
            v.push(c.to_string());
        }
    };
    let mut cands: Vec<String> = Vec::new();
    push(&mut cands, &s);

    // Provider routes: `anthropic/…`, `openrouter/anthropic/…`, `models/gemini-…`.
    let mut last = s.as_str();
    if s.contains('/') {
        let parts: Vec<&str> = s.split('/').collect();
        for p in &parts[..parts.len() - 1] {
            out.prefixes.push(p.to_string());
            if let Some(pv) = provider_word(p) {
                if !ROUTER_WORDS.contains(p) || out.provider_hint.is_none() {
                    out.provider_hint = Some(pv);
                }
            }
        }
        last = parts[parts.len() - 1];
        push(&mut cands, last);
    }

    // Bedrock: `us.anthropic.claude-sonnet-4-5-20250929-v1:0`.
    let mut core = last.to_string();
    {
        let mut segs: Vec<&str> = last.splitn(3, '.').collect();
        if segs.len() >= 2 && BEDROCK_REGIONS.contains(&segs[0]) && BEDROCK_VENDORS.contains(&segs[1]) {
            segs.remove(0);
        }
        if segs.len() >= 2 && BEDROCK_VENDORS.contains(&segs[0]) {
            if out.provider_hint.is_none() {
                out.provider_hint = provider_word(segs[0]);
            }
            let rest = last[last.find(segs[1]).unwrap_or(0)..].to_string();
            core = strip_bedrock_version(&rest).to_string();
            push(&mut cands, &rest);
            push(&mut cands, &core);
        }
    }

    // Vertex: `claude-sonnet-4-5@20250929` -> `claude-sonnet-4-5-20250929`, `claude-sonnet-4-5`.
    if let Some((base, ver)) = core.clone().split_once('@') {
        let ver: String = ver.chars().filter(|c| *c != '-').collect();
        if ver.len() == 8 && ver.chars().all(|c| c.is_ascii_digit()) {
            push(&mut cands, &format!("{base}-{ver}"));
        }
        push(&mut cands, base);
        core = base.to_string();
    }

    // Router variants: `…:free`, `…:thinking`, `…:beta`.
    if let Some((base, _)) = core.clone().split_once(':') {
        push(&mut cands, base);
        core = base.to_string();
    }

    // OpenRouter writes `claude-sonnet-4.5`; Anthropic writes `claude-sonnet-4-5`.
    if core.starts_with("claude") && core.contains('.') {
        let dashed = core.replace('.', "-");
        push(&mut cands, &dashed);
        core = dashed;
    }

    // Dated snapshot -> undated alias (`gpt-4o-2024-08-06` -> `gpt-4o`).
    if let Some(undated) = strip_date_suffix(&core) {
        push(&mut cands, undated);
    }
    // Mistral's `-latest` names.
    if !core.ends_with("-latest") && (core.starts_with("mistral") || core.starts_with("codestral")) {
        let base = strip_date_suffix(&core).unwrap_or(&core).to_string();
        push(&mut cands, &format!("{base}-latest"));
    }
    out.candidates = cands;
    out
}

/// The provider of a model id nobody has catalogued, guessed from its family name.
pub fn guess_provider(raw: &str) -> Option<&'static str> {
    let v = name_variants(raw);
    if let Some(p) = v.provider_hint {
        return Some(p);
    }
    let core = v.candidates.last()?.as_str();
    let starts = |p: &str| core.starts_with(p);
    if starts("claude") {
        Some("anthropic")
    } else if starts("gpt-") || starts("o1") || starts("o3") || starts("o4") || starts("text-embedding") || starts("chatgpt") || starts("davinci") || starts("babbage") || starts("whisper") || starts("dall-e") || starts("tts-") {
        Some("openai")
    } else if starts("gemini") || starts("gemma") || starts("text-bison") || starts("chat-bison") {
        Some("google")
    } else if starts("mistral") || starts("codestral") || starts("ministral") || starts("magistral") || starts("pixtral") || starts("devstral") || starts("open-mistral") || starts("open-mixtral") {
        Some("mistral")
    } else if starts("deepseek") {
        Some("deepseek")
    } else if starts("command") || starts("embed-") || starts("rerank") {
        Some("cohere")
    } else if starts("llama") {
        Some("meta")
    } else if starts("grok") {
        Some("xai")
    } else {
        None
    }
}

impl Catalog {
    pub fn new(rows: Vec<PriceRow>, aliases: Vec<Alias>) -> Catalog {
        let mut c = Catalog::default();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        for r in rows {
            let key = (r.provider.to_ascii_lowercase(), r.model.to_ascii_lowercase());
            let i = *index.entry(key.clone()).or_insert_with(|| {
                c.models.push(Model { provider: r.provider.clone(), model: r.model.clone(), rows: vec![] });
                c.models.len() - 1
            });
            c.models[i].rows.push(r);
        }
        // Deterministic provider order for a model id listed by several providers.
        let mut order: Vec<usize> = (0..c.models.len()).collect();
        order.sort_by(|a, b| c.models[*a].provider.cmp(&c.models[*b].provider));
        for i in order {
            let lower = c.models[i].model.to_ascii_lowercase();
            if let Some(undated) = strip_date_suffix(&lower) {
                c.by_undated.entry(undated.to_string()).or_default().push(i);
            }
            c.by_name.entry(lower).or_default().push(i);
        }
        // Newest snapshot first (dates sort as text).
        let models = &c.models;
        for v in c.by_undated.values_mut() {
            v.sort_by(|a, b| models[*b].model.to_ascii_lowercase().cmp(&models[*a].model.to_ascii_lowercase()));
        }
        for a in aliases {
            c.aliases.insert(a.alias.trim().to_ascii_lowercase(), a);
        }
        c
    }

    pub fn models(&self) -> &[Model] {
        &self.models
    }

    pub fn model(&self, i: usize) -> &Model {
        &self.models[i]
    }

    fn pick(&self, ids: &[usize], prefixes: &[String], hint: Option<&str>) -> usize {
        for p in prefixes.iter().rev() {
            if let Some(i) = ids.iter().find(|i| self.models[**i].provider.eq_ignore_ascii_case(p)) {
                return *i;
            }
        }
        if let Some(h) = hint {
            if let Some(i) = ids.iter().find(|i| self.models[**i].provider.eq_ignore_ascii_case(h)) {
                return *i;
            }
        }
        ids[0]
    }

    fn lookup_exact(&self, name: &str, prefixes: &[String], hint: Option<&str>) -> Option<usize> {
        self.by_name.get(name).map(|ids| self.pick(ids, prefixes, hint))
    }

    /// Resolves an application's model name to a catalog model index. Order: a DBA alias or
    /// exact id for each spelling (most specific first), then the newest dated snapshot of an
    /// undated spelling.
    pub fn resolve(&self, raw: &str) -> Option<usize> {
        self.resolve_depth(raw, 0)
    }

    fn resolve_depth(&self, raw: &str, depth: u8) -> Option<usize> {
        let v = name_variants(raw);
        for c in &v.candidates {
            if let Some(a) = self.aliases.get(c) {
                let hint = a.provider.as_deref().or(v.provider_hint);
                let prefixes: &[String] = if a.provider.is_some() { &[] } else { &v.prefixes };
                let target = a.model.trim().to_ascii_lowercase();
                if let Some(i) = self.lookup_exact(&target, prefixes, hint) {
                    return Some(i);
                }
                // An alias may point at another spelling (or alias), a few levels deep at most.
                if depth < 4 {
                    if let Some(i) = self.resolve_depth(&target, depth + 1) {
                        return Some(i);
                    }
                }
            }
            if let Some(i) = self.lookup_exact(c, &v.prefixes, v.provider_hint) {
                return Some(i);
            }
        }
        for c in &v.candidates {
            if let Some(ids) = self.by_undated.get(c.as_str()) {
                return Some(self.pick(ids, &v.prefixes, v.provider_hint));
            }
        }
        None
    }

    /// The price row for a call to model `i` at `at` (µs since 2000-01-01 UTC).
    pub fn price_row(&self, i: usize, at: i64, u: &Usage) -> Option<&PriceRow> {
        select_row(&self.models[i].rows, at, u)
    }

    /// The provider of a model name: the catalog's when it resolves, else a guess from its
    /// prefix or family.
    pub fn provider_of(&self, raw: &str) -> Option<String> {
        match self.resolve(raw) {
            Some(i) => Some(self.models[i].provider.clone()),
            None => guess_provider(raw).map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pricing::{Price, TS_INFINITY, TS_NEG_INFINITY};

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
            user_defined: false,
        }
    }

    fn catalog() -> Catalog {
        Catalog::new(
            vec![
                row(1, "anthropic", "claude-sonnet-4-5-20250929", "3", "15"),
                row(2, "anthropic", "claude-haiku-4-5-20251001", "1", "5"),
                row(3, "openai", "gpt-4o", "2.5", "10"),
                row(4, "openai", "gpt-5.1", "1.25", "10"),
                row(5, "google", "gemini-2.5-pro", "1.25", "10"),
                row(6, "mistral", "mistral-large-latest", "0.5", "1.5"),
                row(7, "anthropic", "claude-sonnet-4-20250514", "3", "15"),
                row(8, "anthropic", "claude-opus-4-1-20250805", "15", "75"),
                row(9, "anthropic", "claude-opus-4-1", "15", "75"),
                row(10, "azure", "gpt-4o", "2.75", "11"),
            ],
            vec![Alias { alias: "House-Model".into(), model: "gpt-4o".into(), provider: Some("openai".into()) }],
        )
    }

    fn resolved(c: &Catalog, name: &str) -> Option<String> {
        c.resolve(name).map(|i| c.model(i).model.clone())
    }

    #[test]
    fn exact_and_case() {
        let c = catalog();
        assert_eq!(resolved(&c, "gpt-4o").as_deref(), Some("gpt-4o"));
        assert_eq!(resolved(&c, "GPT-4o").as_deref(), Some("gpt-4o"));
        assert_eq!(resolved(&c, "  gpt-5.1 ").as_deref(), Some("gpt-5.1"));
        assert_eq!(resolved(&c, "no-such-model"), None);
        assert_eq!(resolved(&c, ""), None);
    }

    #[test]
    fn dated_and_undated() {
        let c = catalog();
        assert_eq!(resolved(&c, "claude-sonnet-4-5").as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(resolved(&c, "claude-sonnet-4-5-20250929").as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(resolved(&c, "gpt-4o-2024-08-06").as_deref(), Some("gpt-4o"));
        // Both exist: the exact spelling wins.
        assert_eq!(resolved(&c, "claude-opus-4-1").as_deref(), Some("claude-opus-4-1"));
        assert_eq!(resolved(&c, "claude-opus-4-1-20250805").as_deref(), Some("claude-opus-4-1-20250805"));
    }

    #[test]
    fn provider_prefixes() {
        let c = catalog();
        assert_eq!(resolved(&c, "anthropic/claude-sonnet-4-5-20250929").as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(resolved(&c, "openrouter/anthropic/claude-sonnet-4.5").as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(resolved(&c, "openai/gpt-4o").as_deref(), Some("gpt-4o"));
        assert_eq!(resolved(&c, "google/gemini-2.5-pro").as_deref(), Some("gemini-2.5-pro"));
        assert_eq!(resolved(&c, "models/gemini-2.5-pro").as_deref(), Some("gemini-2.5-pro"));
        assert_eq!(resolved(&c, "mistral-large").as_deref(), Some("mistral-large-latest"));
        assert_eq!(resolved(&c, "openrouter/openai/gpt-4o:free").as_deref(), Some("gpt-4o"));
    }

    #[test]
    fn provider_hint_picks_among_providers() {
        let c = catalog();
        let i = c.resolve("azure/gpt-4o").unwrap();
        assert_eq!(c.model(i).provider, "azure");
        let i = c.resolve("openai/gpt-4o").unwrap();
        assert_eq!(c.model(i).provider, "openai");
        // Without a hint: deterministic (alphabetical provider).
        let i = c.resolve("gpt-4o").unwrap();
        assert_eq!(c.model(i).provider, "azure");
    }

    #[test]
    fn bedrock_and_vertex() {
        let c = catalog();
        assert_eq!(resolved(&c, "us.anthropic.claude-sonnet-4-5-20250929-v1:0").as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(resolved(&c, "anthropic.claude-haiku-4-5-20251001-v1:0").as_deref(), Some("claude-haiku-4-5-20251001"));
        assert_eq!(resolved(&c, "eu.anthropic.claude-sonnet-4-20250514-v1:0").as_deref(), Some("claude-sonnet-4-20250514"));
        assert_eq!(resolved(&c, "bedrock/global.anthropic.claude-sonnet-4-5-20250929-v1:0").as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(resolved(&c, "claude-sonnet-4-5@20250929").as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(resolved(&c, "vertex_ai/claude-opus-4-1@20250805").as_deref(), Some("claude-opus-4-1-20250805"));
    }

    #[test]
    fn aliases() {
        let c = catalog();
        assert_eq!(resolved(&c, "house-model").as_deref(), Some("gpt-4o"));
        let i = c.resolve("HOUSE-MODEL").unwrap();
        assert_eq!(c.model(i).provider, "openai");
    }

    #[test]
    fn provider_of() {
        let c = catalog();
        assert_eq!(c.provider_of("claude-sonnet-4-5").as_deref(), Some("anthropic"));
        assert_eq!(c.provider_of("claude-9-unknown").as_deref(), Some("anthropic"));
        assert_eq!(c.provider_of("gpt-7").as_deref(), Some("openai"));
        assert_eq!(c.provider_of("gemini-9").as_deref(), Some("google"));
        assert_eq!(c.provider_of("deepseek/whatever").as_deref(), Some("deepseek"));
        assert_eq!(c.provider_of("mystery"), None);
    }

    #[test]
    fn date_suffixes() {
        assert_eq!(strip_date_suffix("claude-sonnet-4-5-20250929"), Some("claude-sonnet-4-5"));
        assert_eq!(strip_date_suffix("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(strip_date_suffix("gpt-4o"), None);
        assert_eq!(strip_date_suffix("model-12345678"), None);
    }
}
