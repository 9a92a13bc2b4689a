//! From a legacy completions body to a validated plan; every parameter honoured or refused
//! with a 400 that names it.

use cinder_sdk::Error;
use cinder_sdk::inference::Sampling;
use cinder_sdk::openai::params::completions::CompletionParams;

/// One prompt as given: text (tokenized with control tokens parsed, as llama.cpp's server
/// does) or token ids.
pub use cinder_sdk::openai::params::completions::PromptInput;

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
    /// Parses and validates a `/v1/completions` body (OpenAI's rules are
    /// [`CompletionParams::check`]'s).
    pub fn parse(body: &str) -> Result<LegacyPlan, Error> {
        let p = CompletionParams::check(cinder_sdk::parse_body(body)?)?;
        Ok(LegacyPlan {
            model: p.model,
            prompts: p.prompts,
            suffix: p.suffix,
            max_tokens: p.max_tokens,
            sampling: p.sampling.into(),
            stop: p.stop.into_strings(),
            n: p.n,
            best_of: p.best_of,
            logprobs: p.logprobs,
            echo: p.echo,
            stream: p.stream,
            include_usage: p.include_usage,
            user: p.user,
        })
    }
}
