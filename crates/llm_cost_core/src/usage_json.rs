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
    /// Gemini's per-modality lists (`[{"modality": "AUDIO", "tokenCount": 12}, ...]`): the sum
    /// of `count_key` over the objects of the array at `path` whose `match_key` is the string
    /// `value`; with an empty `count_key`, how many such objects there are. Missing when there is
    /// no such array or element.
    fn array_sum(&self, path: &[&str], match_key: &str, value: &str, count_key: &str) -> Field;
    /// The string at `path`, if it is one.
    fn text(&self, path: &[&str]) -> Option<String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenAiChat,
    OpenAiResponses,
    /// The Realtime API's `response.usage` (`input_token_details`, `output_token_details`).
    OpenAiRealtime,
    Anthropic,
    Gemini,
    BedrockConverse,
    DeepSeek,
    OpenRouter,
    LiteLlm,
    /// xAI's OpenAI-compatible usage: reasoning tokens are outside `completion_tokens`.
    Xai,
    /// xAI's native usage (`cached_prompt_text_tokens`, `reasoning_tokens` at the top).
    XaiNative,
    /// Perplexity: reasoning and citation tokens beside `completion_tokens`, searches, a cost object.
    Perplexity,
    /// Cohere: `billed_units` (v2 chat `usage`, v1 `meta`).
    Cohere,
    /// `{input_tokens, output_tokens}` alone: Anthropic and OpenAI Responses read it the same way.
    InputOutput,
}

/// Chat Completions keys every OpenAI-compatible shape has.
const CHAT_READ: &[&str] = &[
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details.cached_tokens",
    "prompt_tokens_details.cache_write_tokens",
    "prompt_tokens_details.audio_tokens",
    "prompt_tokens_details.image_tokens",
    "completion_tokens_details.audio_tokens",
    "completion_tokens_details.image_tokens",
];
/// Chat keys that do not change the bill: totals, and parts already inside a count that is read.
const CHAT_INFO: &[&str] = &[
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    "prompt_tokens_details.text_tokens",
    "completion_tokens_details.reasoning_tokens",
    "completion_tokens_details.text_tokens",
    // Predicted outputs: both are already in completion_tokens.
    "completion_tokens_details.accepted_prediction_tokens",
    "completion_tokens_details.rejected_prediction_tokens",
];

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::OpenAiChat => "openai chat completions",
            Format::OpenAiResponses => "openai responses",
            Format::OpenAiRealtime => "openai realtime",
            Format::Anthropic => "anthropic messages",
            Format::Gemini => "gemini usageMetadata",
            Format::BedrockConverse => "bedrock converse",
            Format::DeepSeek => "deepseek",
            Format::OpenRouter => "openrouter",
            Format::LiteLlm => "litellm",
            Format::Xai => "xai chat completions",
            Format::XaiNative => "xai native",
            Format::Perplexity => "perplexity",
            Format::Cohere => "cohere billed_units",
            Format::InputOutput => "input/output tokens",
        }
    }

    /// The keys (paths below the usage object) this format reads: each changes the bill.
    pub fn read(self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = match self {
            Format::OpenAiChat => CHAT_READ.to_vec(),
            Format::DeepSeek => [CHAT_READ, &["prompt_cache_hit_tokens"]].concat(),
            Format::OpenRouter => [CHAT_READ, &["cost"]].concat(),
            // total_tokens says whether reasoning is already in completion_tokens.
            Format::Xai => [
                CHAT_READ,
                &[
                    "completion_tokens_details.reasoning_tokens",
                    "total_tokens",
                    "cost_in_usd_ticks",
                ],
            ]
            .concat(),
            Format::Perplexity => [
                CHAT_READ,
                &[
                    "reasoning_tokens",
                    "citation_tokens",
                    "num_search_queries",
                    "cost.total_cost",
                ],
            ]
            .concat(),
            Format::LiteLlm => [
                CHAT_READ,
                &[
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                    "server_tool_use.web_search_requests",
                ],
            ]
            .concat(),
            Format::XaiNative => vec![
                "prompt_tokens",
                "completion_tokens",
                "reasoning_tokens",
                "cached_prompt_text_tokens",
                "prompt_image_tokens",
                "cost_in_usd_ticks",
                "server_side_tool_usage_details.web_search_calls",
            ],
            Format::OpenAiResponses => vec![
                "input_tokens",
                "input_tokens_details.cached_tokens",
                "input_tokens_details.cache_write_tokens",
                "output_tokens",
            ],
            Format::OpenAiRealtime => vec![
                "input_tokens",
                "output_tokens",
                "input_token_details.cached_tokens",
                "input_token_details.audio_tokens",
                "input_token_details.image_tokens",
                "input_token_details.cached_tokens_details.audio_tokens",
                "input_token_details.cached_tokens_details.image_tokens",
                "output_token_details.audio_tokens",
            ],
            Format::Anthropic | Format::InputOutput => vec![
                "input_tokens",
                "output_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "cache_creation.ephemeral_5m_input_tokens",
                "cache_creation.ephemeral_1h_input_tokens",
                "server_tool_use.web_search_requests",
                "service_tier",
            ],
            Format::Gemini => vec![
                "promptTokenCount",
                "candidatesTokenCount",
                "thoughtsTokenCount",
                "cachedContentTokenCount",
                "toolUsePromptTokenCount",
                "promptTokensDetails",
                "candidatesTokensDetails",
                "cacheTokensDetails",
                "toolUsePromptTokensDetails",
                "prompt_token_count",
                "candidates_token_count",
                "thoughts_token_count",
                "cached_content_token_count",
                "tool_use_prompt_token_count",
                "prompt_tokens_details",
                "candidates_tokens_details",
                "cache_tokens_details",
                "tool_use_prompt_tokens_details",
            ],
            Format::BedrockConverse => vec![
                "inputTokens",
                "outputTokens",
                "cacheReadInputTokens",
                "cacheWriteInputTokens",
                "cacheReadInputTokenCount",
                "cacheWriteInputTokenCount",
            ],
            Format::Cohere => vec!["billed_units.input_tokens", "billed_units.output_tokens"],
        };
        v.sort_unstable();
        v
    }

    /// Keys this format knows and does not read because they do not change the bill (totals,
    /// parts of a count that is read, labels). Anything else is listed by `ignored_keys`.
    pub fn informational(self) -> Vec<&'static str> {
        match self {
            Format::OpenAiChat | Format::DeepSeek | Format::Xai => {
                let mut v = CHAT_INFO.to_vec();
                if self == Format::DeepSeek {
                    // prompt_tokens = hit + miss: the miss count is read only without prompt_tokens.
                    v.push("prompt_cache_miss_tokens");
                }
                if self == Format::Xai {
                    // Read: reasoning is outside completion_tokens at xAI.
                    v.retain(|k| {
                        *k != "completion_tokens_details.reasoning_tokens" && *k != "total_tokens"
                    });
                    v.extend(["num_sources_used", "server_side_tool_usage_details"]);
                }
                v
            }
            Format::OpenRouter => [
                CHAT_INFO,
                &[
                    "is_byok",
                    "cost_details",
                    "cost_details.upstream_inference_cost",
                    "cost_details.upstream_inference_prompt_cost",
                    "cost_details.upstream_inference_completions_cost",
                ],
            ]
            .concat(),
            Format::Perplexity => [
                CHAT_INFO,
                &[
                    "search_context_size",
                    "cost",
                    "cost.input_tokens_cost",
                    "cost.output_tokens_cost",
                    "cost.reasoning_tokens_cost",
                    "cost.citation_tokens_cost",
                    "cost.request_cost",
                    "cost.search_queries_cost",
                ],
            ]
            .concat(),
            Format::LiteLlm => [
                CHAT_INFO,
                &[
                    "response_cost",
                    "metadata",
                    "metadata.usage_object",
                    "server_tool_use",
                    "prompt_tokens_details.cached_tokens_details",
                ],
            ]
            .concat(),
            Format::XaiNative => vec![
                "total_tokens",
                "prompt_text_tokens",
                "num_sources_used",
                "server_side_tool_usage_details",
            ],
            Format::OpenAiResponses => vec![
                "input_tokens_details",
                "output_tokens_details",
                "output_tokens_details.reasoning_tokens",
                "total_tokens",
            ],
            Format::OpenAiRealtime => vec![
                "total_tokens",
                "input_token_details",
                "input_token_details.text_tokens",
                "input_token_details.cached_tokens_details",
                "input_token_details.cached_tokens_details.text_tokens",
                "output_token_details",
                "output_token_details.text_tokens",
            ],
            Format::Anthropic | Format::InputOutput => vec![
                "cache_creation",
                "server_tool_use",
                // Web fetches cost only the tokens they add.
                "server_tool_use.web_fetch_requests",
                "inference_geo",
                "output_tokens_details",
                "output_tokens_details.thinking_tokens",
            ],
            Format::Gemini => vec![
                "totalTokenCount",
                "trafficType",
                "total_token_count",
                "traffic_type",
            ],
            Format::BedrockConverse => vec!["totalTokens"],
            Format::Cohere => vec![
                "billed_units",
                "tokens",
                "tokens.input_tokens",
                "tokens.output_tokens",
                "api_version",
                "api_version.version",
                "api_version.is_experimental",
                "api_version.is_deprecated",
                "warnings",
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
    /// Parts of the counts above, priced at their modality's price where the catalog has one:
    /// audio and image tokens of the uncached input, of the cache reads, of the output.
    pub input_audio: i64,
    pub cache_read_audio: i64,
    pub output_audio: i64,
    pub input_image: i64,
    pub cache_read_image: i64,
    pub output_image: i64,
    /// Web searches the call made.
    pub web_searches: i64,
    /// Informational: reasoning tokens (already in `output`).
    pub reasoning: Option<i64>,
    /// A cost the provider reported (OpenRouter's `cost`), USD in units of 10^-16.
    pub provided_cost: Option<i128>,
    /// The service tier the usage (Anthropic's `service_tier`) or the response around it
    /// (OpenAI's) says the call was billed at; None when it says none or one llm_cost does not know.
    pub service_tier: Option<crate::pricing::ServiceTier>,
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
/// `bedrock`, `deepseek`, `openrouter`, `litellm`, `xai`, `perplexity`, `cohere`,
/// OpenAI-compatible hosts).
fn format_of_provider(p: &str) -> Option<ProviderHint> {
    Some(match p.trim().to_ascii_lowercase().as_str() {
        "openai" | "azure" | "azure_ai" | "mistral" | "mistralai" | "groq" | "together"
        | "together_ai" | "fireworks" | "fireworks_ai" | "cerebras" | "moonshot" | "moonshotai"
        | "zai" | "z-ai" => ProviderHint::OpenAi,
        "xai" | "x-ai" | "grok" => ProviderHint::Xai,
        "perplexity" | "perplexityai" => ProviderHint::Perplexity,
        "cohere" | "cohere_chat" => ProviderHint::Cohere,
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
    Xai,
    Perplexity,
    Cohere,
}

/// Whether a provider value names a usage format (else it is left to the shape).
pub fn provider_names_a_format(p: &str) -> bool {
    format_of_provider(p).is_some()
}

const SHAPE_HINT: &str = "name the provider: llm_cost.usage_tokens(usage, 'openai' | 'anthropic' | 'google' | 'bedrock' | 'deepseek' | 'openrouter' | 'litellm' | 'xai' | 'perplexity' | 'cohere')";

/// Reads a usage object. `provider`: the API it came from, when the shape alone is ambiguous
/// (a provider value that names no format is ignored).
/// What a stored document is, before it is read as usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// A usage object, or a response holding one.
    Usage,
    /// An error response without usage (`{"type": "error", "error": {...}}` from Anthropic,
    /// `{"error": {...}}` from OpenAI and Gemini): the call failed and was not billed.
    Error,
    /// JSON `null`: no usage was recorded.
    Absent,
}

/// Tells a usage object from an error response or JSON null (the rule the cost trigger applies:
/// a failed call is stored at $0, a row without usage is stored unpriced, neither is refused).
pub fn kind<D: Doc + ?Sized>(doc: &D) -> DocKind {
    if doc.field(&[]) == Field::Null {
        return DocKind::Absent;
    }
    let has_usage = doc.is_object(&["usage"])
        || doc.is_object(&["usageMetadata"])
        || doc.is_object(&["usage_metadata"])
        || doc.is_object(&["billed_units"])
        || doc.is_object(&["meta", "billed_units"])
        || doc.has(&["prompt_tokens"])
        || doc.has(&["input_tokens"])
        || doc.has(&["inputTokens"])
        || doc.has(&["promptTokenCount"])
        || doc.has(&["completion_tokens"])
        || doc.has(&["output_tokens"]);
    let says_error = doc.text(&["type"]).as_deref() == Some("error")
        || doc.text(&["object"]).as_deref() == Some("error")
        || !matches!(doc.field(&["error"]), Field::Missing | Field::Null);
    if says_error && !has_usage {
        DocKind::Error
    } else {
        DocKind::Usage
    }
}

pub fn parse<D: Doc + ?Sized>(doc: &D, provider: Option<&str>) -> Result<Counts, UsageError> {
    // The usage object itself, or a whole response holding it.
    let top_level_counts = doc.has(&["prompt_tokens"])
        || doc.has(&["input_tokens"])
        || doc.has(&["inputTokens"])
        || doc.is_object(&["billed_units"]);
    let (root, rootname): (&[&str], Option<&'static str>) = if doc.is_object(&["usageMetadata"]) {
        (&["usageMetadata"], Some("usageMetadata"))
    } else if doc.is_object(&["usage_metadata"]) {
        // The Python SDK's field names.
        (&["usage_metadata"], Some("usage_metadata"))
    } else if doc.is_object(&["usage"]) && !top_level_counts {
        (&["usage"], Some("usage"))
    } else if doc.is_object(&["meta", "billed_units"]) && !top_level_counts {
        // Cohere v1: the billed units are in the response's meta.
        (&["meta"], Some("meta"))
    } else {
        (&[], None)
    };
    let at = At { doc, root };
    let hint = provider.and_then(format_of_provider);
    let format = detect(&at, hint)?;
    let mut c = extract(&at, format)?;
    c.format = Some(format);
    c.root = rootname;
    // The tier the call was billed at: in Anthropic's usage, or beside OpenAI's usage object in a
    // whole response.
    let tier_text = at
        .doc
        .text(&[root, &["service_tier"][..]].concat())
        .or_else(|| {
            if rootname == Some("usage") {
                doc.text(&["service_tier"])
            } else {
                None
            }
        });
    c.service_tier = tier_text.and_then(|t| crate::pricing::ServiceTier::parse(&t));
    // A whole OpenAI Responses response says its web searches in its output items
    // (`{"type": "web_search_call"}`), not in its usage.
    if rootname == Some("usage") && c.web_searches == 0 {
        if let Field::Count(n) = doc.array_sum(&["output"], "type", "web_search_call", "") {
            c.web_searches = n;
        }
    }
    Ok(c)
}

fn detect<D: Doc + ?Sized>(
    at: &At<'_, D>,
    hint: Option<ProviderHint>,
) -> Result<Format, UsageError> {
    let has = |p: &[&str]| at.has(p);
    if at.is_object(&["billed_units"]) {
        return Ok(Format::Cohere);
    }
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
    let realtime_marks = has(&["input_token_details"]) || has(&["output_token_details"]);
    let litellm_marks = has(&["response_cost"]) || has(&["metadata", "usage_object"]);
    let xai_native_marks = has(&["cached_prompt_text_tokens"])
        || has(&["prompt_text_tokens"])
        || (has(&["reasoning_tokens"]) && hint == Some(ProviderHint::Xai));
    let perplexity_marks = has(&["citation_tokens"])
        || has(&["num_search_queries"])
        || has(&["search_context_size"])
        || at.is_object(&["cost"]);
    let chat_format = |h: Option<ProviderHint>| -> Format {
        if has(&["prompt_cache_hit_tokens"])
            || has(&["prompt_cache_miss_tokens"])
            || h == Some(ProviderHint::DeepSeek)
        {
            Format::DeepSeek
        } else if xai_native_marks {
            Format::XaiNative
        } else if h == Some(ProviderHint::Xai) || has(&["cost_in_usd_ticks"]) {
            Format::Xai
        } else if perplexity_marks || h == Some(ProviderHint::Perplexity) {
            Format::Perplexity
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
        if realtime_marks {
            Format::OpenAiRealtime
        } else if responses_marks || matches!(h, Some(ProviderHint::OpenAi | ProviderHint::Xai)) {
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
            Some(ProviderHint::OpenAi) if io => Ok(io_format(hint)),
            Some(h @ (ProviderHint::DeepSeek | ProviderHint::OpenRouter | ProviderHint::LiteLlm | ProviderHint::Xai | ProviderHint::Perplexity)) if chat => Ok(chat_format(Some(h))),
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
            message: "not a usage object llm_cost knows: expected OpenAI (prompt_tokens / input_tokens), Anthropic (input_tokens), Gemini (promptTokenCount), Bedrock Converse (inputTokens), DeepSeek, OpenRouter, LiteLLM, xAI, Perplexity or Cohere (billed_units) usage".into(),
        })
    }
}

/// Splits a modality's prompt tokens (cached ones included) into uncached and cached parts when
/// the usage does not say how many were cached: uncached first, the rest read from the cache.
fn split_modality(total: i64, uncached_left: i64, cached_left: i64) -> (i64, i64) {
    let uncached = total.min(uncached_left.max(0));
    let cached = (total - uncached).min(cached_left.max(0));
    (uncached, cached)
}

/// The counts of a Chat Completions shape (OpenAI and the hosts that copy it).
fn extract_chat<D: Doc + ?Sized>(
    at: &At<'_, D>,
    f: Format,
    c: &mut Counts,
) -> Result<(), UsageError> {
    let p = at.count0(&["prompt_tokens"])?;
    let completion = at.count0(&["completion_tokens"])?;
    c.output = completion;
    c.reasoning = at.count(&["completion_tokens_details", "reasoning_tokens"])?;
    // prompt_tokens includes the cached tokens and those written to the cache.
    let written_path: &[&str] = &["prompt_tokens_details", "cache_write_tokens"];
    let written = at.count0(written_path)?;
    c.cache_write_5m = written;
    let cached_path: &[&str] = if f == Format::DeepSeek && at.has(&["prompt_cache_hit_tokens"]) {
        &["prompt_cache_hit_tokens"]
    } else {
        &["prompt_tokens_details", "cached_tokens"]
    };
    c.cache_read = at.count0(cached_path)?;
    if f == Format::DeepSeek && !at.has(&["prompt_tokens"]) && at.has(&["prompt_cache_miss_tokens"])
    {
        // prompt_tokens = hit + miss; without prompt_tokens the misses are the uncached input.
        c.input = at.minus(
            at.count0(&["prompt_cache_miss_tokens"])?,
            &["prompt_cache_miss_tokens"],
            &[(written, written_path)],
        )?;
    } else {
        c.input = at.minus(
            p,
            &["prompt_tokens"],
            &[(c.cache_read, cached_path), (written, written_path)],
        )?;
    }
    let audio = at.count0(&["prompt_tokens_details", "audio_tokens"])?;
    (c.input_audio, c.cache_read_audio) = split_modality(audio, c.input, c.cache_read);
    let image = at.count0(&["prompt_tokens_details", "image_tokens"])?;
    (c.input_image, c.cache_read_image) = split_modality(
        image,
        c.input - c.input_audio,
        c.cache_read - c.cache_read_audio,
    );
    match f {
        Format::Xai => {
            // xAI counts reasoning outside completion_tokens (total = prompt + completion +
            // reasoning); a usage already normalised (total = prompt + completion) is not added twice.
            let r = c.reasoning.unwrap_or(0);
            let total = at.count(&["total_tokens"])?;
            let folded = r > 0 && total == p.checked_add(completion);
            if !folded {
                c.output = sum(
                    at,
                    c.output,
                    r,
                    &["completion_tokens_details", "reasoning_tokens"],
                )?;
            }
            if let Some(ticks) = at.count(&["cost_in_usd_ticks"])? {
                // xAI bills in ticks of 10^-10 USD.
                c.provided_cost = Some(ticks as i128 * 1_000_000);
            }
            // Server-side tools: web searches are billed per call (other tools are listed as
            // ignored keys: the catalog has no price for them).
            c.web_searches = at.count0(&["server_side_tool_usage_details", "web_search_calls"])?;
        }
        Format::Perplexity => {
            let r = at.count(&["reasoning_tokens"])?;
            if r.is_some() {
                c.reasoning = r;
            }
            c.output = sum(at, c.output, r.unwrap_or(0), &["reasoning_tokens"])?;
            c.output = sum(
                at,
                c.output,
                at.count0(&["citation_tokens"])?,
                &["citation_tokens"],
            )?;
            c.web_searches = at.count0(&["num_search_queries"])?;
            c.provided_cost = at.money(&["cost", "total_cost"])?;
        }
        Format::OpenRouter => c.provided_cost = at.money(&["cost"])?,
        _ => {}
    }
    c.output_audio = at.count0(&["completion_tokens_details", "audio_tokens"])?;
    c.output_image = at.count0(&["completion_tokens_details", "image_tokens"])?;
    Ok(())
}

/// Gemini's per-modality token counts of one list (`promptTokensDetails`, ...), snake or camel.
fn modality<D: Doc + ?Sized>(
    at: &At<'_, D>,
    list: &str,
    m: &str,
    snake: bool,
) -> Result<i64, UsageError> {
    let mut path: Vec<&str> = at.root.to_vec();
    path.push(list);
    let key = if snake { "token_count" } else { "tokenCount" };
    match at.doc.array_sum(&path, "modality", m, key) {
        Field::Missing | Field::Null => Ok(0),
        Field::Count(n) => Ok(n),
        Field::Bad(d) => Err(UsageError {
            path: format!("{}[modality={m}].{key}", jpath(at.root, &[list])),
            message: format!("must be a non-negative integer token count (got {d})"),
        }),
    }
}

fn extract<D: Doc + ?Sized>(at: &At<'_, D>, f: Format) -> Result<Counts, UsageError> {
    let mut c = Counts::default();
    match f {
        Format::OpenAiChat
        | Format::OpenRouter
        | Format::DeepSeek
        | Format::Xai
        | Format::Perplexity => {
            extract_chat(at, f, &mut c)?;
        }
        Format::XaiNative => {
            // prompt_tokens includes the cached prompt tokens; reasoning is beside completion.
            let p = at.count0(&["prompt_tokens"])?;
            c.cache_read = at.count0(&["cached_prompt_text_tokens"])?;
            c.input = at.minus(
                p,
                &["prompt_tokens"],
                &[(c.cache_read, &["cached_prompt_text_tokens"])],
            )?;
            let r = at.count(&["reasoning_tokens"])?;
            c.reasoning = r;
            c.output = sum(
                at,
                at.count0(&["completion_tokens"])?,
                r.unwrap_or(0),
                &["reasoning_tokens"],
            )?;
            c.input_image = at.count0(&["prompt_image_tokens"])?.min(c.input);
            if let Some(ticks) = at.count(&["cost_in_usd_ticks"])? {
                c.provided_cost = Some(ticks as i128 * 1_000_000);
            }
            c.web_searches = at.count0(&["server_side_tool_usage_details", "web_search_calls"])?;
        }
        Format::Cohere => {
            // What Cohere bills: billed_units (tokens counts the prompt template as well).
            c.input = at.count0(&["billed_units", "input_tokens"])?;
            c.output = at.count0(&["billed_units", "output_tokens"])?;
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
            let written_path = if at.has(&k(&["cache_creation_input_tokens"])) {
                k(&["cache_creation_input_tokens"])
            } else {
                k(&["prompt_tokens_details", "cache_write_tokens"])
            };
            c.cache_write_5m = at.count0(&written_path)?;
            c.input = at.minus(
                p,
                &k(&["prompt_tokens"]),
                &[
                    (c.cache_read, &cached_path),
                    (c.cache_write_5m, &written_path),
                ],
            )?;
            let audio = at.count0(&k(&["prompt_tokens_details", "audio_tokens"]))?;
            (c.input_audio, c.cache_read_audio) = split_modality(audio, c.input, c.cache_read);
            let image = at.count0(&k(&["prompt_tokens_details", "image_tokens"]))?;
            (c.input_image, c.cache_read_image) = split_modality(
                image,
                c.input - c.input_audio,
                c.cache_read - c.cache_read_audio,
            );
            c.output_audio = at.count0(&k(&["completion_tokens_details", "audio_tokens"]))?;
            c.output_image = at.count0(&k(&["completion_tokens_details", "image_tokens"]))?;
            c.web_searches = match at.count(&k(&["server_tool_use", "web_search_requests"]))? {
                Some(n) => n,
                None => at.count0(&k(&["prompt_tokens_details", "web_search_requests"]))?,
            };
        }
        Format::OpenAiResponses => {
            let i = at.count0(&["input_tokens"])?;
            c.cache_read = at.count0(&["input_tokens_details", "cached_tokens"])?;
            c.cache_write_5m = at.count0(&["input_tokens_details", "cache_write_tokens"])?;
            c.input = at.minus(
                i,
                &["input_tokens"],
                &[
                    (c.cache_read, &["input_tokens_details", "cached_tokens"]),
                    (
                        c.cache_write_5m,
                        &["input_tokens_details", "cache_write_tokens"],
                    ),
                ],
            )?;
            c.output = at.count0(&["output_tokens"])?;
            c.reasoning = at.count(&["output_tokens_details", "reasoning_tokens"])?;
        }
        Format::OpenAiRealtime => {
            // input_tokens includes the cached ones; the modality counts include cached tokens,
            // cached_tokens_details says how many of each were cached.
            let d = "input_token_details";
            let i = at.count0(&["input_tokens"])?;
            c.cache_read = at.count0(&[d, "cached_tokens"])?;
            c.input = at.minus(
                i,
                &["input_tokens"],
                &[(c.cache_read, &[d, "cached_tokens"])],
            )?;
            c.output = at.count0(&["output_tokens"])?;
            c.output_audio = at
                .count0(&["output_token_details", "audio_tokens"])?
                .min(c.output);
            for (kind, total_path, cached_path) in [
                (
                    "audio",
                    [d, "audio_tokens"],
                    [d, "cached_tokens_details", "audio_tokens"],
                ),
                (
                    "image",
                    [d, "image_tokens"],
                    [d, "cached_tokens_details", "image_tokens"],
                ),
            ] {
                let total = at.count0(&total_path)?;
                let (uncached, cached) = match at.count(&cached_path)? {
                    Some(cached) => (
                        at.minus(total, &total_path, &[(cached, &cached_path)])?,
                        cached,
                    ),
                    None => split_modality(
                        total,
                        c.input - c.input_audio,
                        c.cache_read - c.cache_read_audio,
                    ),
                };
                if kind == "audio" {
                    (c.input_audio, c.cache_read_audio) = (uncached, cached);
                } else {
                    (c.input_image, c.cache_read_image) = (uncached, cached);
                }
            }
        }
        Format::Anthropic | Format::InputOutput => {
            // input_tokens excludes the cache reads and writes.
            c.input = at.count0(&["input_tokens"])?;
            c.output = at.count0(&["output_tokens"])?;
            c.cache_read = at.count0(&["cache_read_input_tokens"])?;
            c.web_searches = at.count0(&["server_tool_use", "web_search_requests"])?;
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
            // Modalities: the prompt's (cached included) and the tool-use prompt's lists, the
            // cache's list, the candidates' list. Documents are priced as images.
            let (pl, tl, cl, ol) = (
                k("promptTokensDetails", "prompt_tokens_details"),
                k(
                    "toolUsePromptTokensDetails",
                    "tool_use_prompt_tokens_details",
                ),
                k("cacheTokensDetails", "cache_tokens_details"),
                k("candidatesTokensDetails", "candidates_tokens_details"),
            );
            let m = |list: &str, names: &[&str]| -> Result<i64, UsageError> {
                let mut t = 0i64;
                for n in names {
                    t = t.saturating_add(modality(at, list, n, snake)?);
                }
                Ok(t)
            };
            for (names, is_audio) in [(&["AUDIO"][..], true), (&["IMAGE", "DOCUMENT"][..], false)] {
                let cached = m(cl, names)?.min(c.cache_read);
                let prompt = m(pl, names)?.saturating_add(m(tl, names)?);
                let uncached = prompt.saturating_sub(cached).max(0);
                let out = m(ol, names)?;
                if is_audio {
                    c.cache_read_audio = cached;
                    c.input_audio = uncached.min(c.input);
                    c.output_audio = out.min(c.output);
                } else {
                    c.cache_read_image = cached.min(c.cache_read - c.cache_read_audio);
                    c.input_image = uncached.min(c.input - c.input_audio);
                    c.output_image = out.min(c.output - c.output_audio);
                }
            }
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
    let known: Vec<&str> = f.read().into_iter().chain(f.informational()).collect();
    walk(root, "", &known, &mut out);
    if let (Format::LiteLlm, Some(inner)) =
        (f, root.get("metadata").and_then(|m| m.get("usage_object")))
    {
        let mut nested = Vec::new();
        walk(inner, "", &known, &mut nested);
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

    fn array_sum(&self, path: &[&str], match_key: &str, value: &str, count_key: &str) -> Field {
        let mut v = self;
        for k in path {
            match v.get(*k) {
                Some(x) => v = x,
                None => return Field::Missing,
            }
        }
        let Some(items) = v.as_array() else {
            return Field::Missing;
        };
        let mut total: Option<i64> = None;
        for it in items {
            if it.get(match_key).and_then(|m| m.as_str()) != Some(value) {
                continue;
            }
            if count_key.is_empty() {
                total = Some(total.unwrap_or(0).saturating_add(1));
                continue;
            }
            match it.field(&[count_key]) {
                Field::Count(n) => total = Some(total.unwrap_or(0).saturating_add(n)),
                Field::Missing | Field::Null => total = Some(total.unwrap_or(0)),
                bad => return bad,
            }
        }
        total.map(Field::Count).unwrap_or(Field::Missing)
    }

    fn text(&self, path: &[&str]) -> Option<String> {
        let mut v = self;
        for k in path {
            v = v.get(*k)?;
        }
        v.as_str().map(str::to_string)
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
    fn error_responses_and_null_are_not_usage() {
        assert_eq!(kind(&json!(null)), DocKind::Absent);
        assert_eq!(
            kind(
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            ),
            DocKind::Error
        );
        assert_eq!(
            kind(
                &json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})
            ),
            DocKind::Error
        );
        assert_eq!(
            kind(
                &json!({"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}})
            ),
            DocKind::Error
        );
        // Usage beside an error field is usage (billed).
        assert_eq!(
            kind(&json!({"error": null, "usage": {"prompt_tokens": 1, "completion_tokens": 1}})),
            DocKind::Usage
        );
        assert_eq!(
            kind(&json!({"input_tokens": 1, "output_tokens": 2})),
            DocKind::Usage
        );
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

    fn all(c: &Counts) -> [i64; 12] {
        [
            c.input,
            c.output,
            c.cache_read,
            c.cache_write_5m,
            c.cache_write_1h,
            c.input_audio,
            c.cache_read_audio,
            c.output_audio,
            c.input_image,
            c.cache_read_image,
            c.output_image,
            c.web_searches,
        ]
    }

    #[test]
    fn openai_cache_writes_are_not_input() {
        // gpt-5.6: prompt_tokens counts the tokens written to the cache; they are billed apart.
        let c = counts(
            json!({"prompt_tokens": 300000, "completion_tokens": 1000, "total_tokens": 301000,
            "prompt_tokens_details": {"cached_tokens": 100000, "cache_write_tokens": 150000, "audio_tokens": 0}}),
            Some("openai"),
        );
        assert_eq!(tuple(&c), (50000, 1000, 100000, 150000, 0));
        assert_eq!(c.format, Some(Format::OpenAiChat));
        let c = counts(
            json!({"input_tokens": 5000, "input_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 2000},
            "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 4}, "total_tokens": 5010}),
            None,
        );
        assert_eq!(tuple(&c), (2000, 10, 1000, 2000, 0));
    }

    #[test]
    fn deepseek_openai_shape_and_native_shape() {
        let v = json!({"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200,
            "prompt_tokens_details": {"cached_tokens": 600}});
        let c = counts(v.clone(), Some("deepseek"));
        assert_eq!(tuple(&c), (400, 200, 600, 0, 0));
        assert_eq!(c.format, Some(Format::DeepSeek));
        let c = counts(
            json!({"prompt_tokens": 1000, "completion_tokens": 200, "prompt_cache_hit_tokens": 600, "prompt_cache_miss_tokens": 400}),
            None,
        );
        assert_eq!(tuple(&c), (400, 200, 600, 0, 0));
    }

    #[test]
    fn xai_reasoning_is_billed_and_cache_reads_are_read() {
        // OpenAI-compatible xAI usage: total = prompt + completion + reasoning.
        let c = counts(
            json!({"prompt_tokens": 37, "completion_tokens": 530, "total_tokens": 800,
            "prompt_tokens_details": {"text_tokens": 37, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 6},
            "completion_tokens_details": {"reasoning_tokens": 233, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
            "num_sources_used": 0}),
            Some("xai"),
        );
        assert_eq!(tuple(&c), (31, 763, 6, 0, 0));
        assert_eq!(c.format, Some(Format::Xai));
        // Already folded (total = prompt + completion): not added twice.
        let c = counts(
            json!({"prompt_tokens": 37, "completion_tokens": 763, "total_tokens": 800,
            "completion_tokens_details": {"reasoning_tokens": 233}}),
            Some("x-ai"),
        );
        assert_eq!(c.output, 763);
        // Native shape.
        let c = counts(
            json!({"prompt_tokens": 100, "completion_tokens": 20, "reasoning_tokens": 50, "cached_prompt_text_tokens": 60,
            "prompt_text_tokens": 100, "prompt_image_tokens": 0, "total_tokens": 170, "cost_in_usd_ticks": 12345}),
            Some("xai"),
        );
        assert_eq!(tuple(&c), (40, 70, 60, 0, 0));
        assert_eq!(c.format, Some(Format::XaiNative));
        assert_eq!(c.provided_cost, Some(12_345_000_000));
    }

    #[test]
    fn cohere_billed_units() {
        let v2 = json!({"id": "x", "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 418},
            "tokens": {"input_tokens": 71, "output_tokens": 418}, "cached_tokens": 0}});
        let c = counts(v2.clone(), None);
        assert_eq!(tuple(&c), (5, 418, 0, 0, 0));
        assert_eq!(c.format, Some(Format::Cohere));
        assert_eq!(ignored_keys(&v2, &c), vec!["cached_tokens".to_string()]);
        let v1 = json!({"text": "hi", "meta": {"api_version": {"version": "1"}, "billed_units": {"input_tokens": 12, "output_tokens": 3}, "tokens": {"input_tokens": 80, "output_tokens": 3}}});
        let c = counts(v1.clone(), None);
        assert_eq!(tuple(&c), (12, 3, 0, 0, 0));
        assert_eq!(c.root, Some("meta"));
        assert!(ignored_keys(&v1, &c).is_empty());
        let c = counts(
            json!({"billed_units": {"input_tokens": 7, "output_tokens": 1}}),
            Some("cohere"),
        );
        assert_eq!(tuple(&c), (7, 1, 0, 0, 0));
    }

    #[test]
    fn audio_and_image_tokens_by_modality() {
        // OpenAI audio chat: audio is part of the prompt and of the completion.
        let c = counts(
            json!({"prompt_tokens": 1000, "completion_tokens": 500, "prompt_tokens_details": {"audio_tokens": 700, "cached_tokens": 0},
            "completion_tokens_details": {"audio_tokens": 400}}),
            None,
        );
        assert_eq!(all(&c), [1000, 500, 0, 0, 0, 700, 0, 400, 0, 0, 0, 0]);
        // Realtime: cached tokens per modality.
        let c = counts(
            json!({"total_tokens": 1500, "input_tokens": 1200, "output_tokens": 300,
            "input_token_details": {"text_tokens": 400, "audio_tokens": 700, "image_tokens": 100, "cached_tokens": 500,
                "cached_tokens_details": {"text_tokens": 200, "audio_tokens": 300, "image_tokens": 0}},
            "output_token_details": {"text_tokens": 100, "audio_tokens": 200}}),
            None,
        );
        assert_eq!(c.format, Some(Format::OpenAiRealtime));
        assert_eq!(all(&c), [700, 300, 500, 0, 0, 400, 300, 200, 100, 0, 0, 0]);
        // Gemini: per-modality lists, the cache's list says what was cached.
        let c = counts(
            json!({"promptTokenCount": 1000, "candidatesTokenCount": 100, "cachedContentTokenCount": 300,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 600}, {"modality": "AUDIO", "tokenCount": 400}],
            "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 100}, {"modality": "TEXT", "tokenCount": 200}],
            "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 100}], "totalTokenCount": 1100}),
            None,
        );
        assert_eq!(all(&c), [700, 100, 300, 0, 0, 300, 100, 0, 0, 0, 0, 0]);
        let e = parse(&json!({"promptTokenCount": 10, "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": -1}]}), None).unwrap_err();
        assert_eq!(e.path, "$.promptTokensDetails[modality=AUDIO].tokenCount");
    }

    #[test]
    fn searches_are_counted() {
        let c = counts(
            json!({"input_tokens": 10, "output_tokens": 5, "server_tool_use": {"web_search_requests": 3}}),
            Some("anthropic"),
        );
        assert_eq!(c.web_searches, 3);
        let c = counts(
            json!({"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30, "citation_tokens": 7,
            "num_search_queries": 2, "reasoning_tokens": 5, "search_context_size": "low",
            "cost": {"input_tokens_cost": 0.00001, "output_tokens_cost": 0.00002, "request_cost": 0.005, "total_cost": 0.00503}}),
            None,
        );
        assert_eq!(c.format, Some(Format::Perplexity));
        assert_eq!((c.input, c.output, c.web_searches), (10, 32, 2));
        assert_eq!(c.provided_cost, Some(50_300_000_000_000));
    }

    /// Each provider's documented usage object, with every key of its schema: each key is either
    /// read (changing its value changes the counts) or informational (changing it does not),
    /// and none is unknown.
    #[test]
    fn every_documented_key_is_read_or_informational() {
        let docs: Vec<(&str, Option<&str>, serde_json::Value)> = vec![
            (
                "openai chat",
                None,
                json!({"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 500, "audio_tokens": 10, "image_tokens": 20, "text_tokens": 1976},
                "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 5, "image_tokens": 6, "text_tokens": 289, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}),
            ),
            (
                "openai responses",
                None,
                json!({"input_tokens": 36, "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5},
                "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 40}, "total_tokens": 123}),
            ),
            (
                "openai realtime",
                None,
                json!({"total_tokens": 1500, "input_tokens": 1200, "output_tokens": 300,
                "input_token_details": {"text_tokens": 400, "audio_tokens": 700, "image_tokens": 100, "cached_tokens": 500,
                    "cached_tokens_details": {"text_tokens": 200, "audio_tokens": 250, "image_tokens": 50}},
                "output_token_details": {"text_tokens": 100, "audio_tokens": 200}}),
            ),
            (
                "anthropic",
                None,
                json!({"input_tokens": 50, "cache_creation_input_tokens": 2048, "cache_read_input_tokens": 1800, "output_tokens": 503,
                "cache_creation": {"ephemeral_5m_input_tokens": 48, "ephemeral_1h_input_tokens": 2000},
                "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 2}, "service_tier": "standard", "inference_geo": "us"}),
            ),
            (
                "gemini",
                None,
                json!({"promptTokenCount": 1000, "candidatesTokenCount": 100, "cachedContentTokenCount": 300, "thoughtsTokenCount": 50,
                "toolUsePromptTokenCount": 20, "totalTokenCount": 1170, "trafficType": "ON_DEMAND",
                "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 400}], "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 100}],
                "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 60}], "toolUsePromptTokensDetails": [{"modality": "AUDIO", "tokenCount": 10}]}),
            ),
            (
                "bedrock",
                None,
                json!({"inputTokens": 30, "outputTokens": 20, "totalTokens": 50, "cacheReadInputTokens": 5, "cacheWriteInputTokens": 7}),
            ),
            (
                "deepseek",
                None,
                json!({"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200, "prompt_cache_hit_tokens": 600, "prompt_cache_miss_tokens": 400,
                "completion_tokens_details": {"reasoning_tokens": 20}}),
            ),
            (
                "deepseek openai shape",
                Some("deepseek"),
                json!({"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200,
                "prompt_tokens_details": {"cached_tokens": 600}}),
            ),
            (
                "openrouter",
                None,
                json!({"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110, "cost": 0.0012, "is_byok": false,
                "prompt_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 10, "audio_tokens": 0},
                "cost_details": {"upstream_inference_cost": 0.001, "upstream_inference_prompt_cost": 0.0008, "upstream_inference_completions_cost": 0.0002},
                "completion_tokens_details": {"reasoning_tokens": 2, "image_tokens": 0}}),
            ),
            (
                "xai",
                Some("xai"),
                json!({"prompt_tokens": 37, "completion_tokens": 530, "total_tokens": 800,
                "prompt_tokens_details": {"text_tokens": 37, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 6},
                "completion_tokens_details": {"reasoning_tokens": 233, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
                "num_sources_used": 0, "cost_in_usd_ticks": 100}),
            ),
            (
                "xai native",
                Some("xai"),
                json!({"prompt_tokens": 100, "completion_tokens": 20, "reasoning_tokens": 50, "cached_prompt_text_tokens": 60,
                "prompt_text_tokens": 100, "prompt_image_tokens": 10, "total_tokens": 170, "num_sources_used": 0, "cost_in_usd_ticks": 100}),
            ),
            (
                "perplexity",
                None,
                json!({"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30, "citation_tokens": 7,
                "num_search_queries": 2, "reasoning_tokens": 5, "search_context_size": "low",
                "cost": {"input_tokens_cost": 0.00001, "output_tokens_cost": 0.00002, "reasoning_tokens_cost": 0.0, "citation_tokens_cost": 0.0, "request_cost": 0.005, "search_queries_cost": 0.0, "total_cost": 0.00503}}),
            ),
            (
                "cohere",
                None,
                json!({"billed_units": {"input_tokens": 5, "output_tokens": 418}, "tokens": {"input_tokens": 71, "output_tokens": 418}}),
            ),
            (
                "litellm",
                None,
                json!({"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 30,
                "prompt_tokens_details": {"cached_tokens": 30, "audio_tokens": 5, "image_tokens": 4, "text_tokens": 91},
                "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 2, "image_tokens": 1},
                "server_tool_use": {"web_search_requests": 1}, "response_cost": 0.01}),
            ),
        ];
        fn leaves(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
            if let Some(o) = v.as_object() {
                for (k, x) in o {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if x.is_object() {
                        leaves(x, &p, out);
                    } else {
                        out.push(p);
                    }
                }
            }
        }
        fn bump(v: &mut serde_json::Value, path: &str) {
            let mut x = v;
            for k in path.split('.') {
                x = x.get_mut(k).unwrap();
            }
            let add = |n: &mut serde_json::Value| {
                if let Some(i) = n.as_i64() {
                    *n = json!(i + 1);
                } else if let Some(f) = n.as_f64() {
                    *n = json!(f + 1.0);
                }
            };
            if let Some(a) = x.as_array_mut() {
                for it in a {
                    for (_, n) in it.as_object_mut().unwrap().iter_mut() {
                        add(n);
                    }
                }
            } else if x.is_number() {
                add(x);
            } else {
                *x = json!(if x == "priority" { "batch" } else { "priority" });
            }
        }
        for (name, hint, doc) in docs {
            let c = parse(&doc, hint).unwrap_or_else(|e| panic!("{name}: {e}"));
            let f = c.format.unwrap();
            let (read, info) = (f.read(), f.informational());
            assert!(
                ignored_keys(&doc, &c).is_empty(),
                "{name}: unknown keys {:?}",
                ignored_keys(&doc, &c)
            );
            let mut keys = Vec::new();
            leaves(&doc, "", &mut keys);
            for k in keys {
                let mut d = doc.clone();
                bump(&mut d, &k);
                let after = parse(&d, hint);
                let changed = match &after {
                    Err(_) => true,
                    Ok(a) => {
                        all(a) != all(&c)
                            || a.provided_cost != c.provided_cost
                            || a.service_tier != c.service_tier
                    }
                };
                // Keys read only in some documents: xAI's total_tokens when it equals prompt +
                // completion (xai_reasoning_is_billed... checks it); LiteLLM's copy of the cache
                // reads when cache_read_input_tokens is absent (litellm test below).
                let conditional = (f == Format::Xai && k == "total_tokens")
                    || (f == Format::LiteLlm && k == "prompt_tokens_details.cached_tokens");
                if read.contains(&k.as_str()) {
                    assert!(
                        changed || conditional,
                        "{name}: {k} is listed as read but does not change the counts"
                    );
                } else {
                    assert!(
                        info.contains(&k.as_str()),
                        "{name}: {k} is neither read nor informational"
                    );
                    assert!(
                        !changed,
                        "{name}: {k} is informational but changes the counts"
                    );
                }
            }
        }
    }

    /// Usage objects from genai-prices' extraction tests, read to the same counts.
    #[test]
    fn genai_prices_extraction_examples() {
        // Gemini with cached audio: 14152 prompt (150 audio), 12239 cached (129 audio), 60 + 69
        // thinking out (10 audio).
        let c = counts(
            json!({"usageMetadata": {"promptTokenCount": 14152, "candidatesTokenCount": 60, "totalTokenCount": 14271,
                "cachedContentTokenCount": 12239, "trafficType": "ON_DEMAND",
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 14002}, {"modality": "AUDIO", "tokenCount": 150}],
                "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 129}, {"modality": "TEXT", "tokenCount": 12110}],
                "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 50}, {"modality": "AUDIO", "tokenCount": 10}],
                "thoughtsTokenCount": 69}, "modelVersion": "gemini-2.5-flash"}),
            None,
        );
        assert_eq!(all(&c), [1913, 129, 12239, 0, 0, 21, 129, 10, 0, 0, 0, 0]);
        // Tool-use prompt modalities count as input.
        let c = counts(
            json!({"usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3, "thoughtsTokenCount": 4,
                "toolUsePromptTokenCount": 25, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 10}],
                "toolUsePromptTokensDetails": [{"modality": "TEXT", "tokenCount": 10}, {"modality": "AUDIO", "tokenCount": 5},
                    {"modality": "IMAGE", "tokenCount": 7}, {"modality": "DOCUMENT", "tokenCount": 2}, {"modality": "VIDEO", "tokenCount": 3}]}}),
            None,
        );
        assert_eq!(all(&c), [35, 7, 0, 0, 0, 5, 0, 0, 9, 0, 0, 0]);
        // xAI native, no provider named.
        let c = counts(
            json!({"model": "grok-4-fast-non-reasoning", "usage": {"prompt_tokens": 181, "cached_prompt_text_tokens": 162,
                "completion_tokens": 27, "prompt_text_tokens": 181, "total_tokens": 208}}),
            None,
        );
        assert_eq!(tuple(&c), (19, 27, 162, 0, 0));
        // OpenRouter: cache writes and audio inside prompt_tokens.
        let c = counts(
            json!({"usage": {"prompt_tokens": 4819, "completion_tokens": 1906, "total_tokens": 6725,
                "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 4800, "audio_tokens": 17},
                "completion_tokens_details": {"audio_tokens": 23}}}),
            Some("openrouter"),
        );
        assert_eq!(all(&c), [19, 1906, 0, 4800, 0, 17, 0, 23, 0, 0, 0, 0]);
        // xAI server-side web searches.
        let c = counts(
            json!({"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
                "server_side_tool_usage_details": {"web_search_calls": 3, "x_search_calls": 0}}),
            Some("xai"),
        );
        assert_eq!(c.web_searches, 3);
    }

    #[test]
    fn the_billed_service_tier_is_read() {
        let c = counts(
            json!({"input_tokens": 5, "output_tokens": 1, "service_tier": "priority"}),
            Some("anthropic"),
        );
        assert_eq!(c.service_tier, Some(crate::pricing::ServiceTier::Priority));
        let c = counts(
            json!({"id": "x", "service_tier": "flex", "usage": {"prompt_tokens": 5, "completion_tokens": 1}}),
            None,
        );
        assert_eq!(c.service_tier, Some(crate::pricing::ServiceTier::Flex));
        let c = counts(
            json!({"service_tier": "default", "usage": {"input_tokens": 5, "output_tokens": 1}}),
            Some("openai"),
        );
        assert_eq!(c.service_tier, Some(crate::pricing::ServiceTier::Standard));
        // A tier llm_cost does not know is none (standard).
        let c = counts(
            json!({"input_tokens": 5, "output_tokens": 1, "service_tier": "scale"}),
            None,
        );
        assert_eq!(c.service_tier, None);
    }

    #[test]
    fn gemini_python_sdk_modality_lists() {
        let c = counts(
            json!({"usage_metadata": {"prompt_token_count": 1000, "candidates_token_count": 10, "cached_content_token_count": 100,
                "prompt_tokens_details": [{"modality": "AUDIO", "token_count": 300}, {"modality": "TEXT", "token_count": 700}],
                "cache_tokens_details": [{"modality": "AUDIO", "token_count": 50}]}}),
            None,
        );
        assert_eq!(all(&c), [900, 10, 100, 0, 0, 250, 50, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn openai_web_search_calls_in_a_whole_response() {
        let c = counts(
            json!({"id": "resp_1", "output": [{"type": "web_search_call", "status": "completed"},
                {"type": "web_search_call", "status": "completed"}, {"type": "message", "content": []}],
                "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 20}}),
            None,
        );
        assert_eq!((c.input, c.output, c.web_searches), (100, 20, 2));
        // The usage object alone has no searches.
        let c = counts(
            json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 20}),
            None,
        );
        assert_eq!(c.web_searches, 0);
    }
}
