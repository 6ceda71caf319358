//! Provider usage objects to the disjoint token counts llm_cost prices. Plain Rust over a small
//! document trait (`Doc`): `serde_json::Value` here, PostgreSQL's binary jsonb in `pg::jsonb`.
//!
//! The counts are disjoint: every prompt token is in exactly one of input, cache read, 5-minute
//! cache write, 1-hour cache write; output includes reasoning (it is billed as output). The traps
//! this module exists for: OpenAI's `prompt_tokens` includes cached tokens, Anthropic's
//! `input_tokens` excludes cache reads and writes, Gemini's `thoughtsTokenCount` is beside
//! `candidatesTokenCount`, Anthropic's 1-hour cache writes are priced apart from 5-minute ones.

/// A value in a usage document, as far as llm_cost needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Missing,
    Null,
    /// A non-negative integer (an integral JSON number such as `12` or `12.0`).
    Count(i64),
    /// Anything else, described for the message (`-3`, `1.5`, `"12"`, `an object`).
    Bad(String),
}

/// A usage document: values by path of object keys.
pub trait Doc {
    fn field(&self, path: &[&str]) -> Field;
    /// Exact money (USD) as units of 10^-16; Err describes a value that is not a number.
    fn money(&self, path: &[&str]) -> Result<Option<i128>, String>;
    /// Whether `path` holds an object.
    fn is_object(&self, path: &[&str]) -> bool;
    /// Whether `path` exists (any value, null included).
    fn has(&self, path: &[&str]) -> bool {
        !matches!(self.field(path), Field::Missing)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenAiChat,
    OpenAiResponses,
    Anthropic,
    Gemini,
    BedrockConverse,
    DeepSeek,
    OpenRouter,
    LiteLlm,
    /// `{input_tokens, output_tokens}` alone: Anthropic and OpenAI Responses read it the same way.
    InputOutput,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::OpenAiChat => "openai chat completions",
            Format::OpenAiResponses => "openai responses",
            Format::Anthropic => "anthropic messages",
            Format::Gemini => "gemini usageMetadata",
            Format::BedrockConverse => "bedrock converse",
            Format::DeepSeek => "deepseek",
            Format::OpenRouter => "openrouter",
            Format::LiteLlm => "litellm",
            Format::InputOutput => "input/output tokens",
        }
    }

    /// The keys (paths below the usage object) this format reads or knows to be informational.
    fn known(self) -> &'static [&'static str] {
        match self {
            Format::OpenAiChat | Format::OpenRouter | Format::DeepSeek | Format::LiteLlm => &[
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "prompt_tokens_details",
                "prompt_tokens_details.cached_tokens",
                "prompt_tokens_details.audio_tokens",
                "prompt_tokens_details.cache_write_tokens",
                "prompt_tokens_details.text_tokens",
                "prompt_tokens_details.image_tokens",
                "completion_tokens_details",
                "completion_tokens_details.reasoning_tokens",
                "completion_tokens_details.audio_tokens",
                "completion_tokens_details.accepted_prediction_tokens",
                "completion_tokens_details.rejected_prediction_tokens",
                "completion_tokens_details.text_tokens",
                "completion_tokens_details.image_tokens",
                "cost",
                "is_byok",
                "cost_details",
                "cost_details.upstream_inference_cost",
                "cost_details.upstream_inference_prompt_cost",
                "cost_details.upstream_inference_completions_cost",
                "prompt_cache_hit_tokens",
                "prompt_cache_miss_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "response_cost",
                "metadata",
                "metadata.usage_object",
                "server_tool_use",
                "server_tool_use.web_search_requests",
            ],
            Format::OpenAiResponses => &[
                "input_tokens",
                "input_tokens_details",
                "input_tokens_details.cached_tokens",
                "output_tokens",
                "output_tokens_details",
                "output_tokens_details.reasoning_tokens",
                "total_tokens",
            ],
            Format::Anthropic | Format::InputOutput => &[
                "input_tokens",
                "output_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "cache_creation",
                "cache_creation.ephemeral_5m_input_tokens",
                "cache_creation.ephemeral_1h_input_tokens",
                "server_tool_use",
                "server_tool_use.web_search_requests",
                "server_tool_use.web_fetch_requests",
                "service_tier",
            ],
            Format::Gemini => &[
                "promptTokenCount",
                "candidatesTokenCount",
                "thoughtsTokenCount",
                "cachedContentTokenCount",
                "totalTokenCount",
                "toolUsePromptTokenCount",
                "promptTokensDetails",
                "candidatesTokensDetails",
                "cacheTokensDetails",
                "toolUsePromptTokensDetails",
                "trafficType",
                "prompt_token_count",
                "candidates_token_count",
                "thoughts_token_count",
                "cached_content_token_count",
                "total_token_count",
                "tool_use_prompt_token_count",
                "prompt_tokens_details",
                "candidates_tokens_details",
                "cache_tokens_details",
                "tool_use_prompt_tokens_details",
                "traffic_type",
            ],
            Format::BedrockConverse => &[
                "inputTokens",
                "outputTokens",
                "totalTokens",
                "cacheReadInputTokens",
                "cacheWriteInputTokens",
                "cacheReadInputTokenCount",
                "cacheWriteInputTokenCount",
            ],
        }
    }
}

/// The counts llm_cost prices, from one usage object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write_5m: i64,
    pub cache_write_1h: i64,
    /// Parts the counts above already include (informational; the catalog prices them as output
    /// or input): reasoning tokens, audio tokens in and out.
    pub reasoning: Option<i64>,
    pub audio_input: Option<i64>,
    pub audio_output: Option<i64>,
    /// A cost the provider reported (OpenRouter's `cost`), USD in units of 10^-16.
    pub provided_cost: Option<i128>,
    pub format: Option<Format>,
    /// Where the usage object was in the document (`usage`, `usageMetadata`), if not at its top.
    pub root: Option<&'static str>,
}

/// Bad input: the JSON path and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn jpath(root: &[&str], path: &[&str]) -> String {
    let mut s = String::from("$");
    for k in root.iter().chain(path) {
        s.push('.');
        s.push_str(k);
    }
    s
}

struct At<'a, D: Doc + ?Sized> {
    doc: &'a D,
    root: &'a [&'a str],
}

impl<D: Doc + ?Sized> At<'_, D> {
    fn is_object(&self, path: &[&str]) -> bool {
        let mut p: Vec<&str> = self.root.to_vec();
        p.extend_from_slice(path);
        self.doc.is_object(&p)
    }

    fn get(&self, path: &[&str]) -> Field {
        if self.root.is_empty() {
            return self.doc.field(path);
        }
        let mut p: Vec<&str> = Vec::with_capacity(self.root.len() + path.len());
        p.extend_from_slice(self.root);
        p.extend_from_slice(path);
        self.doc.field(&p)
    }

    fn has(&self, path: &[&str]) -> bool {
        !matches!(self.get(path), Field::Missing)
    }

    /// A count: None when missing or null; 22023-worthy error for anything but a non-negative integer.
    fn count(&self, path: &[&str]) -> Result<Option<i64>, UsageError> {
        match self.get(path) {
            Field::Missing | Field::Null => Ok(None),
            Field::Count(n) => Ok(Some(n)),
            Field::Bad(d) => Err(UsageError {
                path: jpath(self.root, path),
                message: format!("must be a non-negative integer token count (got {d})"),
            }),
        }
    }

    fn count0(&self, path: &[&str]) -> Result<i64, UsageError> {
        Ok(self.count(path)?.unwrap_or(0))
    }

    fn money(&self, path: &[&str]) -> Result<Option<i128>, UsageError> {
        let mut p: Vec<&str> = self.root.to_vec();
        p.extend_from_slice(path);
        self.doc.money(&p).map_err(|d| UsageError {
            path: jpath(self.root, path),
            message: format!("must be a number of USD (got {d})"),
        })
    }

    /// `total - part`, an error naming both paths when the part is larger.
    fn minus(
        &self,
        total: i64,
        total_path: &[&str],
        parts: &[(i64, &[&str])],
    ) -> Result<i64, UsageError> {
        let mut left = total;
        for (v, p) in parts {
            left -= v;
            if left < 0 {
                return Err(UsageError {
                    path: jpath(self.root, p),
                    message: format!(
                        "{} is more than {} ({total}) leaves",
                        v,
                        jpath(self.root, total_path)
                    ),
                });
            }
        }
        Ok(left)
    }
}

/// The usage format a provider value names, if it names one (`openai`, `anthropic`, `google`,
/// `bedrock`, `deepseek`, `openrouter`, `litellm`, OpenAI-compatible hosts).
fn format_of_provider(p: &str) -> Option<ProviderHint> {
    Some(match p.trim().to_ascii_lowercase().as_str() {
        "openai" | "azure" | "azure_ai" | "mistral" | "mistralai" | "groq" | "together"
        | "together_ai" | "fireworks" | "fireworks_ai" | "xai" | "x-ai" | "cerebras"
        | "perplexity" | "moonshot" | "moonshotai" | "zai" | "z-ai" => ProviderHint::OpenAi,
        "anthropic" => ProviderHint::Anthropic,
        "google" | "gemini" | "vertex_ai" | "vertex" | "google-vertex" => ProviderHint::Gemini,
        "bedrock" | "aws" | "amazon-bedrock" => ProviderHint::Bedrock,
        "deepseek" => ProviderHint::DeepSeek,
        "openrouter" => ProviderHint::OpenRouter,
        "litellm" => ProviderHint::LiteLlm,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProviderHint {
    OpenAi,
    Anthropic,
    Gemini,
    Bedrock,
    DeepSeek,
    OpenRouter,
    LiteLlm,
}

/// Whether a provider value names a usage format (else it is left to the shape).
pub fn provider_names_a_format(p: &str) -> bool {
    format_of_provider(p).is_some()
}

const SHAPE_HINT: &str = "name the provider: llm_cost.usage_tokens(usage, 'openai' | 'anthropic' | 'google' | 'bedrock' | 'deepseek' | 'openrouter' | 'litellm')";

/// Reads a usage object. `provider`: the API it came from, when the shape alone is ambiguous
/// (a provider value that names no format is ignored).
pub fn parse<D: Doc + ?Sized>(doc: &D, provider: Option<&str>) -> Result<Counts, UsageError> {
    // The usage object itself, or a whole response holding it.
    let (root, rootname): (&[&str], Option<&'static str>) = if doc.is_object(&["usageMetadata"]) {
        (&["usageMetadata"], Some("usageMetadata"))
    } else if doc.is_object(&["usage_metadata"]) {
        // The Python SDK's field names.
        (&["usage_metadata"], Some("usage_metadata"))
    } else if doc.is_object(&["usage"])
        && !doc.has(&["prompt_tokens"])
        && !doc.has(&["input_tokens"])
        && !doc.has(&["inputTokens"])
    {
        (&["usage"], Some("usage"))
    } else {
        (&[], None)
    };
    let at = At { doc, root };
    let hint = provider.and_then(format_of_provider);
    let format = detect(&at, hint)?;
    let mut c = extract(&at, format)?;
    c.format = Some(format);
    c.root = rootname;
    Ok(c)
}

fn detect<D: Doc + ?Sized>(
    at: &At<'_, D>,
    hint: Option<ProviderHint>,
) -> Result<Format, UsageError> {
    let has = |p: &[&str]| at.has(p);
    let chat = has(&["prompt_tokens"]) || has(&["completion_tokens"]);
    let io = has(&["input_tokens"]) || has(&["output_tokens"]);
    let camel = has(&["inputTokens"]) || has(&["outputTokens"]);
    let gemini = has(&["promptTokenCount"])
        || has(&["candidatesTokenCount"])
        || has(&["prompt_token_count"])
        || has(&["candidates_token_count"]);
    let anthropic_marks = has(&["cache_creation_input_tokens"])
        || has(&["cache_read_input_tokens"])
        || at.is_object(&["cache_creation"]);
    let responses_marks = has(&["input_tokens_details"]) || has(&["output_tokens_details"]);
    let litellm_marks = has(&["response_cost"]) || has(&["metadata", "usage_object"]);
    let chat_format = |h: Option<ProviderHint>| -> Format {
        if has(&["prompt_cache_hit_tokens"])
            || has(&["prompt_cache_miss_tokens"])
            || h == Some(ProviderHint::DeepSeek)
        {
            Format::DeepSeek
        } else if has(&["cost"]) || has(&["is_byok"]) || h == Some(ProviderHint::OpenRouter) {
            Format::OpenRouter
        } else if litellm_marks
            || has(&["cache_creation_input_tokens"])
            || h == Some(ProviderHint::LiteLlm)
        {
            Format::LiteLlm
        } else {
            Format::OpenAiChat
        }
    };
    let io_format = |h: Option<ProviderHint>| -> Format {
        if responses_marks || h == Some(ProviderHint::OpenAi) {
            Format::OpenAiResponses
        } else if anthropic_marks
            || matches!(
                h,
                Some(ProviderHint::Anthropic) | Some(ProviderHint::Bedrock)
            )
        {
            Format::Anthropic
        } else {
            Format::InputOutput
        }
    };
    let kinds = [chat, io, camel, gemini].iter().filter(|k| **k).count();
    if kinds > 1 && !litellm_marks {
        // Several shapes at once: the provider decides, or it is an error.
        return match hint {
            Some(ProviderHint::Gemini) if gemini => Ok(Format::Gemini),
            Some(ProviderHint::Bedrock) if camel => Ok(Format::BedrockConverse),
            Some(ProviderHint::Anthropic) if io => Ok(Format::Anthropic),
            Some(ProviderHint::OpenAi) if chat => Ok(Format::OpenAiChat),
            Some(ProviderHint::OpenAi) if io => Ok(Format::OpenAiResponses),
            Some(h @ (ProviderHint::DeepSeek | ProviderHint::OpenRouter | ProviderHint::LiteLlm)) if chat => Ok(chat_format(Some(h))),
            _ => Err(UsageError {
                path: jpath(at.root, &[]),
                message: format!(
                    "ambiguous usage object: it has the keys of several providers' usage ({}); {SHAPE_HINT}",
                    [(chat, "prompt_tokens: OpenAI chat"), (io, "input_tokens: Anthropic / OpenAI Responses"), (camel, "inputTokens: Bedrock Converse"), (gemini, "promptTokenCount: Gemini")]
                        .iter()
                        .filter(|(k, _)| *k)
                        .map(|(_, n)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        };
    }
    if gemini {
        Ok(Format::Gemini)
    } else if camel {
        Ok(Format::BedrockConverse)
    } else if chat || litellm_marks {
        Ok(chat_format(hint))
    } else if io {
        Ok(io_format(hint))
    } else {
        Err(UsageError {
            path: jpath(at.root, &[]),
            message: "not a usage object llm_cost knows: expected OpenAI (prompt_tokens / input_tokens), Anthropic (input_tokens), Gemini (promptTokenCount), Bedrock Converse (inputTokens), DeepSeek, OpenRouter or LiteLLM usage".into(),
        })
    }
}

fn extract<D: Doc + ?Sized>(at: &At<'_, D>, f: Format) -> Result<Counts, UsageError> {
    let mut c = Counts::default();
    match f {
        Format::OpenAiChat | Format::OpenRouter | Format::DeepSeek => {
            let p = at.count0(&["prompt_tokens"])?;
            c.output = at.count0(&["completion_tokens"])?;
            c.reasoning = at.count(&["completion_tokens_details", "reasoning_tokens"])?;
            c.audio_input = at.count(&["prompt_tokens_details", "audio_tokens"])?;
            c.audio_output = at.count(&["completion_tokens_details", "audio_tokens"])?;
            if f == Format::DeepSeek && at.has(&["prompt_cache_miss_tokens"]) {
                // prompt_tokens = hit + miss.
                c.input = at.count0(&["prompt_cache_miss_tokens"])?;
                c.cache_read = at.count0(&["prompt_cache_hit_tokens"])?;
            } else if f == Format::DeepSeek {
                c.cache_read = at.count0(&["prompt_cache_hit_tokens"])?;
                c.input = at.minus(
                    p,
                    &["prompt_tokens"],
                    &[(c.cache_read, &["prompt_cache_hit_tokens"])],
                )?;
            } else {
                // prompt_tokens includes the cached tokens (and, on OpenRouter, those written to the cache).
                c.cache_read = at.count0(&["prompt_tokens_details", "cached_tokens"])?;
                let written = if f == Format::OpenRouter {
                    at.count0(&["prompt_tokens_details", "cache_write_tokens"])?
                } else {
                    0
                };
                c.cache_write_5m = written;
                c.input = at.minus(
                    p,
                    &["prompt_tokens"],
                    &[
                        (c.cache_read, &["prompt_tokens_details", "cached_tokens"]),
                        (written, &["prompt_tokens_details", "cache_write_tokens"]),
                    ],
                )?;
            }
            if f == Format::OpenRouter {
                c.provided_cost = at.money(&["cost"])?;
            }
        }
        Format::LiteLlm => {
            // The standard logging payload keeps the provider's usage in metadata.usage_object;
            // a LiteLLM Usage object is that object itself. prompt_tokens counts every prompt
            // token, cache reads and writes included.
            let inner: &[&str] = if at.has(&["metadata", "usage_object", "prompt_tokens"]) {
                &["metadata", "usage_object"]
            } else {
                &[]
            };
            let k = |key: &'static [&'static str]| -> Vec<&'static str> {
                inner.iter().chain(key.iter()).copied().collect()
            };
            let p = at.count0(&k(&["prompt_tokens"]))?;
            c.output = at.count0(&k(&["completion_tokens"]))?;
            c.reasoning = at.count(&k(&["completion_tokens_details", "reasoning_tokens"]))?;
            let cached_path = if at.has(&k(&["cache_read_input_tokens"])) {
                k(&["cache_read_input_tokens"])
            } else {
                k(&["prompt_tokens_details", "cached_tokens"])
            };
            c.cache_read = at.count0(&cached_path)?;
            c.cache_write_5m = at.count0(&k(&["cache_creation_input_tokens"]))?;
            c.input = at.minus(
                p,
                &k(&["prompt_tokens"]),
                &[
                    (c.cache_read, &cached_path),
                    (c.cache_write_5m, &k(&["cache_creation_input_tokens"])),
                ],
            )?;
        }
        Format::OpenAiResponses => {
            let i = at.count0(&["input_tokens"])?;
            c.cache_read = at.count0(&["input_tokens_details", "cached_tokens"])?;
            c.input = at.minus(
                i,
                &["input_tokens"],
                &[(c.cache_read, &["input_tokens_details", "cached_tokens"])],
            )?;
            c.output = at.count0(&["output_tokens"])?;
            c.reasoning = at.count(&["output_tokens_details", "reasoning_tokens"])?;
        }
        Format::Anthropic | Format::InputOutput => {
            // input_tokens excludes the cache reads and writes.
            c.input = at.count0(&["input_tokens"])?;
            c.output = at.count0(&["output_tokens"])?;
            c.cache_read = at.count0(&["cache_read_input_tokens"])?;
            let total = at.count(&["cache_creation_input_tokens"])?;
            let m5 = at.count(&["cache_creation", "ephemeral_5m_input_tokens"])?;
            let h1 = at.count(&["cache_creation", "ephemeral_1h_input_tokens"])?;
            match (total, m5, h1) {
                (t, None, None) => c.cache_write_5m = t.unwrap_or(0),
                (t, m, h) => {
                    let h = h.unwrap_or(0);
                    let m = match (m, t) {
                        (Some(m), _) => m,
                        (None, Some(t)) => at.minus(
                            t,
                            &["cache_creation_input_tokens"],
                            &[(h, &["cache_creation", "ephemeral_1h_input_tokens"])],
                        )?,
                        (None, None) => 0,
                    };
                    if let Some(t) = t {
                        if m.checked_add(h) != Some(t) {
                            return Err(UsageError {
                                path: jpath(at.root, &["cache_creation"]),
                                message: format!("ephemeral_5m_input_tokens ({m}) + ephemeral_1h_input_tokens ({h}) must equal cache_creation_input_tokens ({t})"),
                            });
                        }
                    }
                    c.cache_write_5m = m;
                    c.cache_write_1h = h;
                }
            }
        }
        Format::Gemini => {
            // promptTokenCount includes the cached tokens; thinking is billed as output. The REST
            // API writes camelCase, the Python SDK snake_case.
            let snake = at.has(&["prompt_token_count"]) || at.has(&["candidates_token_count"]);
            let k = |camel: &'static str, snake_name: &'static str| -> &'static str {
                if snake {
                    snake_name
                } else {
                    camel
                }
            };
            let (pk, ck, tk, thk, ok) = (
                k("promptTokenCount", "prompt_token_count"),
                k("cachedContentTokenCount", "cached_content_token_count"),
                k("toolUsePromptTokenCount", "tool_use_prompt_token_count"),
                k("thoughtsTokenCount", "thoughts_token_count"),
                k("candidatesTokenCount", "candidates_token_count"),
            );
            let p = at.count0(&[pk])?;
            c.cache_read = at.count0(&[ck])?;
            let tool = at.count0(&[tk])?;
            c.input = sum(
                at,
                at.minus(p, &[pk], &[(c.cache_read, &[ck])])?,
                tool,
                &[tk],
            )?;
            let thoughts = at.count(&[thk])?;
            c.output = sum(at, at.count0(&[ok])?, thoughts.unwrap_or(0), &[thk])?;
            c.reasoning = thoughts;
        }
        Format::BedrockConverse => {
            c.input = at.count0(&["inputTokens"])?;
            c.output = at.count0(&["outputTokens"])?;
            c.cache_read = at
                .count(&["cacheReadInputTokens"])?
                .or(at.count(&["cacheReadInputTokenCount"])?)
                .unwrap_or(0);
            c.cache_write_5m = at
                .count(&["cacheWriteInputTokens"])?
                .or(at.count(&["cacheWriteInputTokenCount"])?)
                .unwrap_or(0);
        }
    }
    Ok(c)
}

/// `a + b` of two counts, 22023 (not a wrapped, negative count) past bigint.
fn sum<D: Doc + ?Sized>(at: &At<'_, D>, a: i64, b: i64, path: &[&str]) -> Result<i64, UsageError> {
    a.checked_add(b).ok_or_else(|| UsageError {
        path: jpath(at.root, path),
        message: format!("{a} + {b} tokens is more than bigint holds"),
    })
}

/// Key paths of `v` (below `root`) the format does not read: listed by `explain_cost`.
pub fn ignored_keys(v: &serde_json::Value, c: &Counts) -> Vec<String> {
    let Some(f) = c.format else { return vec![] };
    let mut root = v;
    if let Some(r) = c.root {
        root = &v[r];
    }
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, prefix: &str, known: &[&str], out: &mut Vec<String>) {
        if let Some(o) = v.as_object() {
            for (k, x) in o {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if !known.contains(&p.as_str()) {
                    out.push(p);
                } else if x.is_object() && p != "metadata.usage_object" {
                    walk(x, &p, known, out);
                }
            }
        }
    }
    walk(root, "", f.known(), &mut out);
    if let (Format::LiteLlm, Some(inner)) =
        (f, root.get("metadata").and_then(|m| m.get("usage_object")))
    {
        let mut nested = Vec::new();
        walk(inner, "", Format::LiteLlm.known(), &mut nested);
        out.extend(
            nested
                .into_iter()
                .map(|k| format!("metadata.usage_object.{k}")),
        );
    }
    // (The rest of a whole response around a `usage` object is not usage: not listed.)
    out
}

// ---------------------------------------------------------------------------------------------
// serde_json documents
// ---------------------------------------------------------------------------------------------

fn describe(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("\"{s}\""),
        serde_json::Value::Object(_) => "an object".into(),
        serde_json::Value::Array(_) => "an array".into(),
        other => other.to_string(),
    }
}

/// The units of 10^-16 of a JSON number written as decimal text; None if not representable.
pub fn decimal_units(text: &str) -> Option<i128> {
    let d = rust_decimal::Decimal::from_str_exact(text)
        .or_else(|_| rust_decimal::Decimal::from_scientific(text))
        .ok()?;
    let d = d.normalize();
    if d.scale() > 16 {
        return None;
    }
    d.mantissa().checked_mul(10i128.pow(16 - d.scale()))
}

impl Doc for serde_json::Value {
    fn field(&self, path: &[&str]) -> Field {
        let mut v = self;
        for k in path {
            match v.get(*k) {
                Some(x) => v = x,
                None => return Field::Missing,
            }
        }
        match v {
            serde_json::Value::Null => Field::Null,
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    return if i >= 0 {
                        Field::Count(i)
                    } else {
                        Field::Bad(i.to_string())
                    };
                }
                // 12.0 is a count; 1.5 or 1e30 is not.
                match decimal_units(&n.to_string()) {
                    Some(u)
                        if u >= 0
                            && u % 10i128.pow(16) == 0
                            && u / 10i128.pow(16) <= i64::MAX as i128 =>
                    {
                        Field::Count((u / 10i128.pow(16)) as i64)
                    }
                    _ => Field::Bad(n.to_string()),
                }
            }
            other => Field::Bad(describe(other)),
        }
    }

    fn money(&self, path: &[&str]) -> Result<Option<i128>, String> {
        let mut v = self;
        for k in path {
            match v.get(*k) {
                Some(x) => v = x,
                None => return Ok(None),
            }
        }
        match v {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Number(n) => match decimal_units(&n.to_string()) {
                Some(u) if u >= 0 => Ok(Some(u)),
                _ => Err(n.to_string()),
            },
            other => Err(describe(other)),
        }
    }

    fn is_object(&self, path: &[&str]) -> bool {
        let mut v = self;
        for k in path {
            match v.get(*k) {
                Some(x) => v = x,
                None => return false,
            }
        }
        v.is_object()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn counts(v: serde_json::Value, provider: Option<&str>) -> Counts {
        parse(&v, provider).unwrap_or_else(|e| panic!("{e}"))
    }

    fn tuple(c: &Counts) -> (i64, i64, i64, i64, i64) {
        (
            c.input,
            c.output,
            c.cache_read,
            c.cache_write_5m,
            c.cache_write_1h,
        )
    }

    #[test]
    fn openai_chat_cached_tokens_are_not_counted_twice() {
        // OpenAI docs example: prompt_tokens includes cached_tokens.
        let c = counts(
            json!({"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}),
            None,
        );
        assert_eq!(tuple(&c), (86, 300, 1920, 0, 0));
        assert_eq!(c.reasoning, Some(128));
        assert_eq!(c.format, Some(Format::OpenAiChat));
        // A whole response: the usage object inside.
        let c = counts(
            json!({"id": "chatcmpl-1", "model": "gpt-4o", "usage": {"prompt_tokens": 10, "completion_tokens": 2}}),
            None,
        );
        assert_eq!(tuple(&c), (10, 2, 0, 0, 0));
        assert_eq!(c.root, Some("usage"));
    }

    #[test]
    fn openai_responses() {
        let c = counts(
            json!({"input_tokens": 36, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 87,
            "output_tokens_details": {"reasoning_tokens": 40}, "total_tokens": 123}),
            None,
        );
        assert_eq!(tuple(&c), (26, 87, 10, 0, 0));
        assert_eq!(c.format, Some(Format::OpenAiResponses));
    }

    #[test]
    fn anthropic_cache_reads_and_writes_are_beside_input() {
        let c = counts(
            json!({"input_tokens": 50, "cache_creation_input_tokens": 2048, "cache_read_input_tokens": 1800, "output_tokens": 503,
            "cache_creation": {"ephemeral_5m_input_tokens": 48, "ephemeral_1h_input_tokens": 2000}, "service_tier": "standard"}),
            None,
        );
        assert_eq!(tuple(&c), (50, 503, 1800, 48, 2000));
        assert_eq!(c.format, Some(Format::Anthropic));
        // Without the breakdown every write is a 5-minute one.
        let c = counts(
            json!({"input_tokens": 5, "cache_creation_input_tokens": 100, "output_tokens": 1}),
            None,
        );
        assert_eq!(tuple(&c), (5, 1, 0, 100, 0));
        let e = parse(&json!({"input_tokens": 5, "cache_creation_input_tokens": 100, "cache_creation": {"ephemeral_5m_input_tokens": 1, "ephemeral_1h_input_tokens": 2}}), None).unwrap_err();
        assert_eq!(e.path, "$.cache_creation");
    }

    #[test]
    fn gemini_thinking_is_output() {
        let c = counts(
            json!({"usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": 300, "thoughtsTokenCount": 700,
            "cachedContentTokenCount": 1000, "totalTokenCount": 2200, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1200}]}}),
            None,
        );
        assert_eq!(tuple(&c), (200, 1000, 1000, 0, 0));
        assert_eq!(c.reasoning, Some(700));
        assert_eq!(c.root, Some("usageMetadata"));
        // The Python SDK's snake_case.
        let c = counts(
            json!({"usage_metadata": {"prompt_token_count": 1200, "candidates_token_count": 300, "thoughts_token_count": 700,
            "cached_content_token_count": 1000, "total_token_count": 2200}}),
            None,
        );
        assert_eq!(tuple(&c), (200, 1000, 1000, 0, 0));
        assert_eq!(
            ignored_keys(
                &json!({"usage_metadata": {"prompt_token_count": 1, "new": 2}}),
                &counts(
                    json!({"usage_metadata": {"prompt_token_count": 1, "new": 2}}),
                    None
                )
            ),
            vec!["new".to_string()]
        );
    }

    #[test]
    fn bedrock_deepseek_openrouter_litellm_mistral() {
        let c = counts(
            json!({"inputTokens": 30, "outputTokens": 628, "totalTokens": 658, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20}),
            None,
        );
        assert_eq!(tuple(&c), (30, 628, 100, 20, 0));
        let c = counts(
            json!({"prompt_tokens": 1000, "completion_tokens": 10, "prompt_cache_hit_tokens": 800, "prompt_cache_miss_tokens": 200}),
            None,
        );
        assert_eq!(
            (tuple(&c), c.format),
            ((200, 10, 800, 0, 0), Some(Format::DeepSeek))
        );
        let c = counts(
            json!({"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196, "cost": 0.95, "is_byok": false,
            "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 0}}),
            None,
        );
        assert_eq!(
            (tuple(&c), c.provided_cost),
            ((94, 2, 100, 0, 0), Some(9_500_000_000_000_000))
        );
        let c = counts(
            json!({"prompt_tokens": 3000, "completion_tokens": 20, "response_cost": 0.01,
            "metadata": {"usage_object": {"prompt_tokens": 3000, "completion_tokens": 20, "cache_creation_input_tokens": 500, "cache_read_input_tokens": 2000}}}),
            None,
        );
        assert_eq!(
            (tuple(&c), c.format, c.provided_cost),
            ((500, 20, 2000, 500, 0), Some(Format::LiteLlm), None)
        );
        let c = counts(
            json!({"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}),
            Some("mistral"),
        );
        assert_eq!(
            (tuple(&c), c.format),
            ((12, 34, 0, 0, 0), Some(Format::OpenAiChat))
        );
    }

    #[test]
    fn bad_counts_name_the_path() {
        let e = parse(
            &json!({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 1.5}}),
            None,
        )
        .unwrap_err();
        assert_eq!(e.path, "$.prompt_tokens_details.cached_tokens");
        assert!(e.message.contains("1.5"), "{e}");
        assert_eq!(
            parse(&json!({"input_tokens": -3}), None).unwrap_err().path,
            "$.input_tokens"
        );
        assert_eq!(
            parse(&json!({"input_tokens": "12"}), None)
                .unwrap_err()
                .path,
            "$.input_tokens"
        );
        assert_eq!(parse(&json!({"usage": {"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}}), None).unwrap_err().path, "$.usage.prompt_tokens_details.cached_tokens");
        assert_eq!(counts(json!({"prompt_tokens": 12.0}), None).input, 12);
        // Sums of counts never wrap into a negative count.
        let e = parse(
            &json!({"usageMetadata": {"candidatesTokenCount": i64::MAX, "thoughtsTokenCount": 1}}),
            None,
        )
        .unwrap_err();
        assert_eq!(e.path, "$.usageMetadata.thoughtsTokenCount");
        let e = parse(
            &json!({"usageMetadata": {"promptTokenCount": i64::MAX, "toolUsePromptTokenCount": 5}}),
            None,
        )
        .unwrap_err();
        assert_eq!(e.path, "$.usageMetadata.toolUsePromptTokenCount");
        assert_eq!(
            parse(&json!({"prompt_tokens": 1e30}), None)
                .unwrap_err()
                .path,
            "$.prompt_tokens"
        );
        assert!(parse(&json!({"foo": 1}), None)
            .unwrap_err()
            .message
            .starts_with("not a usage object"));
        assert!(
            parse(
                &json!({"openrouter": 1, "prompt_tokens": 1, "cost": "free"}),
                None
            )
            .unwrap_err()
            .path
                == "$.cost"
        );
    }

    #[test]
    fn ambiguous_shapes_ask_for_the_provider() {
        let v = json!({"prompt_tokens": 10, "input_tokens": 10, "output_tokens": 2});
        let e = parse(&v, None).unwrap_err();
        assert!(
            e.message.contains("ambiguous") && e.message.contains("name the provider"),
            "{e}"
        );
        assert_eq!(
            counts(v.clone(), Some("anthropic")).format,
            Some(Format::Anthropic)
        );
        assert_eq!(counts(v, Some("openai")).format, Some(Format::OpenAiChat));
        // input/output alone: Anthropic and Responses agree.
        assert_eq!(
            counts(json!({"input_tokens": 3, "output_tokens": 4}), None).format,
            Some(Format::InputOutput)
        );
    }

    #[test]
    fn ignored_keys_are_listed() {
        let v = json!({"prompt_tokens": 1, "completion_tokens": 1, "surprise": 3, "prompt_tokens_details": {"cached_tokens": 0, "new_kind": 1}});
        let c = counts(v.clone(), None);
        assert_eq!(
            ignored_keys(&v, &c),
            vec![
                "prompt_tokens_details.new_kind".to_string(),
                "surprise".to_string()
            ]
        );
    }
}
