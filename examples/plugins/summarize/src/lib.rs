//! `POST /v1/summarize`: a new endpoint, served by the same model as chat.
//!
//! Request: `{"model": "...", "text": "...", "max_tokens": 64}`.
//! Response: `{"object": "summary", "model", "summary", "finish_reason", "usage"}`.
//! Mistakes get OpenAI's error envelope with the offending `param`.

use cinder_sdk::inference::{ChatMessage, Event, GenerateRequest, Sampling};
use cinder_sdk::openai::chat::Usage;
use cinder_sdk::types::FinishReason;
use cinder_sdk::{Error, Host, Request, Route, Serve, invalid_request};
use serde::{Deserialize, Serialize};

const DEFAULT_MAX_TOKENS: u32 = 64;
const MAX_MAX_TOKENS: u32 = 1024;
/// The system prompt unless the operator sets `[plugins.settings.summarize] instruction`.
const INSTRUCTION: &str = "Summarize the user's text in one or two short sentences.";

#[derive(Deserialize)]
struct SummarizeRequest {
    model: Option<String>,
    text: Option<String>,
    max_tokens: Option<u32>,
}

#[derive(Serialize)]
struct Summary {
    object: &'static str,
    model: String,
    summary: String,
    finish_reason: &'static str,
    usage: Usage,
}

/// Parses and checks the body; every refusal names its parameter.
fn parse(body: &str) -> Result<(String, String, u32), Error> {
    let req: SummarizeRequest = serde_json::from_str(body)
        .map_err(|e| invalid_request(&format!("The body is not valid JSON: {e}"), None))?;
    let model = req
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid_request("`model` is required", Some("model")))?;
    let text = req
        .text
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| invalid_request("`text` is required and must not be empty", Some("text")))?;
    let max_tokens = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if !(1..=MAX_MAX_TOKENS).contains(&max_tokens) {
        return Err(invalid_request(
            &format!("`max_tokens` must be between 1 and {MAX_MAX_TOKENS}"),
            Some("max_tokens"),
        ));
    }
    Ok((model, text, max_tokens))
}

#[derive(Default)]
struct Summarize;

impl Serve for Summarize {
    fn serve(&self, _route: &Route, request: Request, host: &dyn Host) -> Result<(), Error> {
        let (model, text, max_tokens) = parse(&request.body)?;
        let messages = [
            ChatMessage {
                role: "system".into(),
                content: INSTRUCTION.into(),
            },
            ChatMessage {
                role: "user".into(),
                content: text,
            },
        ];
        let prompt = host.apply_chat_template(&model, &messages, true)?;
        let prompt = host.tokenize(&model, &prompt, true)?;
        let generation = host.generate(&GenerateRequest {
            model: model.clone(),
            prompt,
            max_tokens: Some(max_tokens),
            // Greedy: the same text gets the same summary.
            sampling: Sampling {
                temperature: 0.0,
                top_p: 1.0,
                seed: None,
                presence_penalty: 0.0,
                frequency_penalty: 0.0,
                logit_bias: Vec::new(),
            },
            stop: Vec::new(),
            top_logprobs: None,
        })?;
        let mut summary = String::new();
        loop {
            match generation.next()? {
                Some(Event::Delta(d)) => summary.push_str(&d.text),
                Some(Event::Finished(f)) => {
                    let response = Summary {
                        object: "summary",
                        model,
                        summary: summary.trim().to_owned(),
                        finish_reason: match f.reason {
                            FinishReason::Stop => "stop",
                            FinishReason::Length => "length",
                        },
                        usage: Usage::new(f.usage.prompt_tokens, f.usage.completion_tokens),
                    };
                    return host.respond_json(200, &response);
                }
                None => {
                    return Err(Error::Internal(
                        "the generation ended without finishing".into(),
                    ));
                }
            }
        }
    }
}

cinder_sdk::export_chat_plugin!(Summarize);
