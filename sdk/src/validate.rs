//! Validation shared by the text-generation families (chat and legacy completions): every
//! parameter in range or a 400 that names it.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::inference::{LogitBias, Sampling};
use crate::openai::chat::{StopSequences, StreamOptions};
use crate::{Error, invalid_request};

/// OpenAI's upper bound for `n`.
pub(crate) const MAX_N: u32 = 128;
/// OpenAI's bound for the number of stop sequences.
const MAX_STOP: usize = 4;
/// Bytes in one stop sequence.
const MAX_STOP_BYTES: usize = 1024;
/// Sequences one request may run at once (prompts × `best_of`, or `n`), unless the plugin
/// setting `max_sequences_per_request` says otherwise: each holds its own KV cache.
pub(crate) const MAX_SEQUENCES: u32 = 128;

/// The cap on sequences per request: the plugin setting `max_sequences_per_request`, else
/// [`MAX_SEQUENCES`].
pub(crate) fn max_sequences(host: &dyn crate::host::Host) -> u32 {
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
    host: &dyn crate::host::Host,
    tokens: u64,
    param: &str,
) -> Result<(), Error> {
    let max = host
        .setting("max_prompt_tokens_per_request")
        .and_then(|v| v.parse().ok())
        .filter(|&n: &u64| n >= 1)
        .unwrap_or(MAX_PROMPT_TOKENS);
    if tokens > max {
        return Err(crate::types::Error::InvalidRequest(crate::ErrorDetail {
            message: format!("the prompt has at least {tokens} tokens; at most {max} per request"),
            param: Some(param.into()),
            code: Some("max_tokens_per_request".into()),
        }));
    }
    Ok(())
}

/// Parses a JSON body into `T`; a mistake becomes a 400 naming the path of the field at fault
/// (`max_tokens`, `messages[0].role`). Fields `T` does not know are ignored, never refused:
/// newer SDKs send fields this server may not know yet. They are logged so an operator can
/// see what was ignored.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &str) -> Result<T, Error> {
    let (value, unknown) = crate::openai::ErrorBody::parse_json(body)
        .map_err(|b| invalid_request(&b.error.message, b.error.param.as_deref()))?;
    if !unknown.is_empty() {
        crate::debug(&format!("ignoring unknown fields: {}", unknown.join(", ")));
    }
    Ok(value)
}

/// A 400 naming `param` unless `value` is absent or within `[min, max]`.
pub(crate) fn check_range(
    param: &str,
    value: Option<f32>,
    min: f32,
    max: f32,
) -> Result<(), Error> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(invalid_request(
            &format!("{param} must be between {min} and {max}, got {v}"),
            Some(param),
        )),
        _ => Ok(()),
    }
}

/// A 400 naming `param` when it is `Some(0)`.
pub(crate) fn at_least_one(param: &str, value: Option<u32>) -> Result<(), Error> {
    if value == Some(0) {
        return Err(invalid_request(
            &format!("{param} must be at least 1"),
            Some(param),
        ));
    }
    Ok(())
}

/// The sampling fields both families share.
pub(crate) struct SamplingFields {
    pub(crate) temperature: Option<f32>,
    pub(crate) top_p: Option<f32>,
    pub(crate) seed: Option<i64>,
    pub(crate) presence_penalty: Option<f32>,
    pub(crate) frequency_penalty: Option<f32>,
    pub(crate) logit_bias: Option<BTreeMap<String, f32>>,
}

/// Checks every sampling parameter's range and turns them into the WIT's `sampling`.
pub(crate) fn sampling(f: SamplingFields) -> Result<Sampling, Error> {
    check_range("temperature", f.temperature, 0.0, 2.0)?;
    check_range("top_p", f.top_p, 0.0, 1.0)?;
    if f.top_p == Some(0.0) {
        return Err(invalid_request(
            "top_p must be greater than 0",
            Some("top_p"),
        ));
    }
    check_range("presence_penalty", f.presence_penalty, -2.0, 2.0)?;
    check_range("frequency_penalty", f.frequency_penalty, -2.0, 2.0)?;
    let mut logit_bias = Vec::new();
    for (k, v) in f.logit_bias.unwrap_or_default() {
        let token = k.parse::<u32>().map_err(|_| {
            invalid_request(
                &format!("logit_bias key `{k}` is not a token id"),
                Some("logit_bias"),
            )
        })?;
        check_range("logit_bias", Some(v), -100.0, 100.0)?;
        logit_bias.push(LogitBias { token, bias: v });
    }
    Ok(Sampling {
        temperature: f.temperature.unwrap_or(1.0),
        top_p: f.top_p.unwrap_or(1.0),
        // OpenAI takes any 64-bit integer; its bits are the seed.
        seed: f.seed.map(|s| s as u64),
        presence_penalty: f.presence_penalty.unwrap_or(0.0),
        frequency_penalty: f.frequency_penalty.unwrap_or(0.0),
        logit_bias,
    })
}

/// `stop` as a list of at most four strings.
pub(crate) fn stop(stop: Option<StopSequences>) -> Result<Vec<String>, Error> {
    let stop = stop.map(StopSequences::into_vec).unwrap_or_default();
    if stop.len() > MAX_STOP {
        return Err(invalid_request(
            &format!("stop takes at most {MAX_STOP} sequences"),
            Some("stop"),
        ));
    }
    // The engine matches stop strings against held-back text after every token.
    if let Some(long) = stop.iter().find(|s| s.len() > MAX_STOP_BYTES) {
        return Err(invalid_request(
            &format!(
                "a stop sequence is at most {MAX_STOP_BYTES} bytes, got {}",
                long.len()
            ),
            Some("stop"),
        ));
    }
    Ok(stop)
}

/// `n` within OpenAI's bounds (default 1).
pub(crate) fn n(n: Option<u32>) -> Result<u32, Error> {
    let n = n.unwrap_or(1);
    if !(1..=MAX_N).contains(&n) {
        return Err(invalid_request(
            &format!("n must be between 1 and {MAX_N}"),
            Some("n"),
        ));
    }
    Ok(n)
}

/// `stream_options.include_usage`; `stream_options` without `stream` is refused.
pub(crate) fn include_usage(options: Option<&StreamOptions>, stream: bool) -> Result<bool, Error> {
    if options.is_some() && !stream {
        return Err(invalid_request(
            "stream_options is only allowed when stream is true",
            Some("stream_options"),
        ));
    }
    Ok(options.is_some_and(|o| o.include_usage))
}
