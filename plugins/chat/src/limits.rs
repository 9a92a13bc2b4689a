//! What chat and legacy completions check beyond OpenAI's rules (those are
//! `cinder_sdk::openai::params`): Cinder's own per-request limits, which are plugin settings.

use cinder_sdk::Error;

/// Sequences one request may run at once (prompts × `best_of`, or `n`), unless the plugin
/// setting `max_sequences_per_request` says otherwise: each holds its own KV cache.
pub(crate) const MAX_SEQUENCES: u32 = 128;

/// The cap on sequences per request: the plugin setting `max_sequences_per_request`, else
/// [`MAX_SEQUENCES`].
pub(crate) fn max_sequences(host: &dyn cinder_sdk::host::Host) -> u32 {
    host.setting("max_sequences_per_request")
        .and_then(|v| v.parse().ok())
        .filter(|&n: &u32| n >= 1)
        .unwrap_or(MAX_SEQUENCES)
}

/// Prompt tokens one request may have, all prompts together, unless the plugin setting
/// `max_prompt_tokens_per_request` says otherwise: above any small model's context, and it
/// bounds the prefill work of one legacy request with 2048 prompts.
pub(crate) const MAX_PROMPT_TOKENS: u64 = 131_072;

/// A 400 naming `param` when `tokens` (all prompts so far) pass the plugin setting
/// `max_prompt_tokens_per_request`, else [`MAX_PROMPT_TOKENS`].
pub(crate) fn check_prompt_tokens(
    host: &dyn cinder_sdk::host::Host,
    tokens: u64,
    param: &str,
) -> Result<(), Error> {
    let max = host
        .setting("max_prompt_tokens_per_request")
        .and_then(|v| v.parse().ok())
        .filter(|&n: &u64| n >= 1)
        .unwrap_or(MAX_PROMPT_TOKENS);
    if tokens > max {
        return Err(cinder_sdk::types::Error::InvalidRequest(
            cinder_sdk::ErrorDetail {
                message: format!(
                    "the prompt has at least {tokens} tokens; at most {max} per request"
                ),
                param: Some(param.into()),
                code: Some("max_tokens_per_request".into()),
            },
        ));
    }
    Ok(())
}
