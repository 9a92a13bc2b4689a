//! From a legacy completions body to a validated plan; every parameter honoured or refused
//! with a 400 that names it.

use crate::inference::Sampling;
use crate::openai::completions::{CompletionRequest, Prompt};
use crate::validate;
use crate::{Error, invalid_request};

/// OpenAI's legacy default for `max_tokens`.
const DEFAULT_MAX_TOKENS: u32 = 16;
/// OpenAI's bounds for legacy `logprobs` and `best_of`.
const MAX_LOGPROBS: u32 = 5;
const MAX_BEST_OF: u32 = 20;
/// OpenAI's bound on prompts per request.
const MAX_PROMPTS: usize = 2048;

/// One prompt as given: text (tokenized with control tokens parsed, as llama.cpp's server
/// does) or token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    /// A text prompt.
    Text(String),
    /// A prompt already as token ids.
    Ids(Vec<u32>),
}

/// A validated legacy completion request.
#[derive(Debug, Clone)]
pub struct LegacyPlan {
    /// The model id or alias.
    pub model: String,
    /// One or more prompts; each gets its own choices.
    pub prompts: Vec<PromptInput>,
    /// Fill-in-the-middle: text after the insertion point.
    pub suffix: Option<String>,
    /// Tokens per choice at most (OpenAI's legacy default is 16); 0 generates nothing.
    pub max_tokens: u32,
    /// Sampling parameters, ranges checked.
    pub sampling: Sampling,
    /// Up to four stop strings.
    pub stop: Vec<String>,
    /// Choices returned per prompt.
    pub n: u32,
    /// Candidates generated per prompt, of which the `n` with the best mean logprob return.
    pub best_of: u32,
    /// `Some(k)`: legacy logprobs with k alternatives per token.
    pub logprobs: Option<u32>,
    /// Whether each choice starts with its prompt.
    pub echo: bool,
    /// Whether to answer with an SSE stream.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// The end user's id, logged with the request.
    pub user: Option<String>,
}

impl LegacyPlan {
    /// Parses and validates a `/v1/completions` body.
    pub fn parse(body: &str) -> Result<LegacyPlan, Error> {
        let req: CompletionRequest = validate::parse_body(body)?;
        let prompts = match req.prompt {
            None => return Err(invalid_request("`prompt` is required", Some("prompt"))),
            Some(Prompt::Text(t)) => vec![PromptInput::Text(t)],
            Some(Prompt::Texts(ts)) => ts.into_iter().map(PromptInput::Text).collect(),
            Some(Prompt::Tokens(ids)) => vec![PromptInput::Ids(ids)],
            Some(Prompt::TokenLists(l)) => l.into_iter().map(PromptInput::Ids).collect(),
        };
        let empty = |p: &PromptInput| match p {
            PromptInput::Text(t) => t.is_empty(),
            PromptInput::Ids(ids) => ids.is_empty(),
        };
        if prompts.len() > MAX_PROMPTS {
            return Err(invalid_request(
                &format!(
                    "prompt has {} prompts; at most {MAX_PROMPTS} per request",
                    prompts.len()
                ),
                Some("prompt"),
            ));
        }
        if prompts.is_empty() || prompts.iter().any(empty) {
            return Err(invalid_request(
                "`prompt` must not be empty (nor contain an empty prompt)",
                Some("prompt"),
            ));
        }
        let sampling = validate::sampling(validate::SamplingFields {
            temperature: req.temperature,
            top_p: req.top_p,
            seed: req.seed,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            logit_bias: req.logit_bias,
        })?;
        // 0 is allowed: with echo it scores the prompt without generating.
        let max_tokens = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        let n = validate::n(req.n)?;
        let best_of = req.best_of.unwrap_or(n);
        if best_of < n || best_of > MAX_BEST_OF.max(n) {
            return Err(invalid_request(
                &format!("best_of must be at least n ({n}) and at most {MAX_BEST_OF}"),
                Some("best_of"),
            ));
        }
        if req.stream && best_of > n {
            return Err(invalid_request(
                "best_of cannot be used with stream: the best choices are known only at the end",
                Some("best_of"),
            ));
        }
        if let Some(k) = req.logprobs
            && k > MAX_LOGPROBS
        {
            return Err(invalid_request(
                &format!("logprobs must be between 0 and {MAX_LOGPROBS}"),
                Some("logprobs"),
            ));
        }
        if req.echo && req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(invalid_request(
                "echo cannot be used with suffix",
                Some("echo"),
            ));
        }
        let stop = validate::stop(req.stop)?;
        let include_usage = validate::include_usage(req.stream_options.as_ref(), req.stream)?;
        Ok(LegacyPlan {
            model: req.model,
            prompts,
            suffix: req.suffix.filter(|s| !s.is_empty()),
            max_tokens,
            sampling,
            stop,
            n,
            best_of,
            logprobs: req.logprobs,
            echo: req.echo,
            stream: req.stream,
            include_usage,
            user: req.user,
        })
    }
}
