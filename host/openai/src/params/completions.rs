//! `POST /v1/completions` (legacy): every rule of a completion request, checked into
//! [`CompletionParams`].

use super::{Checked, Invalid, Sampling, SamplingFields, Stop};
use crate::completions::{CompletionRequest, Prompt};

/// OpenAI's legacy default for `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 16;
/// OpenAI's bound for legacy `logprobs`.
pub const MAX_LOGPROBS: u32 = 5;
/// OpenAI's bound for `best_of`.
pub const MAX_BEST_OF: u32 = 20;
/// OpenAI's bound on prompts per request.
pub const MAX_PROMPTS: usize = 2048;

/// One prompt as given: text or token ids (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    Text(String),
    Ids(Vec<u32>),
}

/// A legacy completion request with every OpenAI rule checked.
#[derive(Debug, Clone)]
pub struct CompletionParams {
    pub model: String,
    /// One to [`MAX_PROMPTS`] prompts, none empty.
    pub prompts: Vec<PromptInput>,
    /// Fill-in-the-middle: text after the insertion point (`None` when absent or empty).
    pub suffix: Option<String>,
    /// Tokens per choice at most (default 16); 0 generates nothing (with `echo` it scores).
    pub max_tokens: u32,
    pub sampling: Sampling,
    pub stop: Stop,
    /// Choices returned per prompt.
    pub n: u32,
    /// Candidates per prompt, `n` to [`MAX_BEST_OF`] (never above `n` when streaming).
    pub best_of: u32,
    /// `Some(k)`: logprobs with k alternatives per token, k ≤ [`MAX_LOGPROBS`].
    pub logprobs: Option<u32>,
    pub echo: bool,
    pub stream: bool,
    pub include_usage: bool,
    pub user: Option<String>,
}

impl CompletionParams {
    /// Checks a parsed legacy completion request.
    pub fn check(req: CompletionRequest) -> Checked<CompletionParams> {
        let prompts = match req.prompt {
            None => return Err(Invalid::new("`prompt` is required", "prompt")),
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
            return Err(Invalid::new(
                format!(
                    "prompt has {} prompts; at most {MAX_PROMPTS} per request",
                    prompts.len()
                ),
                "prompt",
            ));
        }
        if prompts.is_empty() || prompts.iter().any(empty) {
            return Err(Invalid::new(
                "`prompt` must not be empty (nor contain an empty prompt)",
                "prompt",
            ));
        }
        let sampling = SamplingFields {
            temperature: req.temperature,
            top_p: req.top_p,
            seed: req.seed,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            logit_bias: req.logit_bias,
        }
        .check()?;
        let max_tokens = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        let n = super::n(req.n)?;
        let best_of = req.best_of.unwrap_or(n);
        if best_of < n || best_of > MAX_BEST_OF.max(n) {
            return Err(Invalid::new(
                format!("best_of must be at least n ({n}) and at most {MAX_BEST_OF}"),
                "best_of",
            ));
        }
        if req.stream && best_of > n {
            return Err(Invalid::new(
                "best_of cannot be used with stream: the best choices are known only at the end",
                "best_of",
            ));
        }
        if let Some(k) = req.logprobs
            && k > MAX_LOGPROBS
        {
            return Err(Invalid::new(
                format!("logprobs must be between 0 and {MAX_LOGPROBS}"),
                "logprobs",
            ));
        }
        if req.echo && req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(Invalid::new("echo cannot be used with suffix", "echo"));
        }
        let stop = Stop::check(req.stop)?;
        let include_usage = super::include_usage(req.stream_options.as_ref(), req.stream)?;
        Ok(CompletionParams {
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
