//! A third-party chat plugin on the public SDK alone: chat completions in which no digit ever
//! reaches the client (account numbers, phone numbers, codes become `#`). It checks requests
//! with OpenAI's rules as Cinder's own chat does (`cinder_sdk::openai::params`), renders the
//! model's chat template, generates, and streams or answers whole. It serves one choice of
//! plain text; tools, `response_format`, `n` above 1 and logprobs are refused by name.

use cinder_sdk::inference::{ChatMessage, Event, GenerateRequest};
use cinder_sdk::openai::chat::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, Delta, Usage,
};
use cinder_sdk::openai::params::chat::{ChatParams, Role};
use cinder_sdk::types::FinishReason;
use cinder_sdk::{Error, Host, Request, Route, Serve, invalid_request};

#[derive(Default)]
struct Redact;

fn mask_digits(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// What this plugin does not serve, refused by name instead of ignored.
fn refuse_unsupported(p: &ChatParams) -> Result<(), Error> {
    let unsupported = [
        (p.tools.is_some(), "tools"),
        (p.response_format.is_some(), "response_format"),
        (p.n > 1, "n"),
        (p.top_logprobs.is_some(), "logprobs"),
        (p.store, "store"),
    ];
    match unsupported.iter().find(|(asked, _)| *asked) {
        Some((_, param)) => Err(invalid_request(
            &format!("chat-redact does not support `{param}`"),
            Some(param),
        )),
        None => Ok(()),
    }
}

impl Serve for Redact {
    fn serve(&self, _route: &Route, request: Request, host: &dyn Host) -> Result<(), Error> {
        let p = ChatParams::check(cinder_sdk::parse_body(&request.body)?)?;
        refuse_unsupported(&p)?;
        let messages: Vec<ChatMessage> = p
            .messages
            .iter()
            .map(|m| ChatMessage {
                role: match m.role {
                    Role::System | Role::Developer => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                    Role::Tool | Role::Function => "tool",
                }
                .into(),
                content: m.content.clone(),
            })
            .collect();
        let info = host.describe_model(&p.model)?;
        let prompt = host.apply_chat_template(&p.model, &messages, true)?;
        let generation = host
            .generate(&GenerateRequest {
                model: p.model.clone(),
                prompt: host.tokenize(&p.model, &prompt, true)?,
                max_tokens: p.max_tokens,
                sampling: p.sampling.clone().into(),
                stop: p.stop.clone().into_strings(),
                top_logprobs: None,
            })
            // The host names the prompt `prompt`; the client sent `messages`.
            .map_err(|e| e.naming(&[("prompt", "messages")]))?;
        let id = format!("chatcmpl-{}", request.request_id);
        let chunk = |delta: Delta, finish_reason: Option<String>, usage| ChatCompletionChunk {
            id: id.clone(),
            object: "chat.completion.chunk".into(),
            created: cinder_sdk::unix_time(),
            model: p.model.clone(),
            system_fingerprint: info.fingerprint.clone(),
            service_tier: None,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage,
        };
        let usage_slot = p.include_usage.then_some(None);
        if p.stream {
            let role = Delta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                ..Delta::default()
            };
            host.send_json(&chunk(role, None, usage_slot))?;
        }
        let mut text = String::new();
        loop {
            match generation.next()? {
                Some(Event::Delta(d)) if p.stream => {
                    let content = Delta {
                        content: Some(mask_digits(&d.text)),
                        ..Delta::default()
                    };
                    host.send_json(&chunk(content, None, usage_slot))?;
                }
                Some(Event::Delta(d)) => text.push_str(&mask_digits(&d.text)),
                Some(Event::Finished(f)) => {
                    let reason = match f.reason {
                        FinishReason::Stop => "stop",
                        FinishReason::Length => "length",
                    };
                    let usage = Usage::new(f.usage.prompt_tokens, f.usage.completion_tokens);
                    if !p.stream {
                        return host.respond_json(
                            200,
                            &ChatCompletion {
                                id,
                                object: "chat.completion".into(),
                                created: cinder_sdk::unix_time(),
                                model: p.model.clone(),
                                system_fingerprint: info.fingerprint.clone(),
                                service_tier: None,
                                choices: vec![Choice {
                                    index: 0,
                                    message: AssistantMessage {
                                        role: "assistant".into(),
                                        content: Some(text),
                                        refusal: None,
                                        tool_calls: None,
                                        function_call: None,
                                    },
                                    logprobs: None,
                                    finish_reason: Some(reason.into()),
                                }],
                                usage,
                            },
                        );
                    }
                    host.send_json(&chunk(Delta::default(), Some(reason.into()), usage_slot))?;
                    if p.include_usage {
                        let mut last = chunk(Delta::default(), None, Some(Some(usage)));
                        last.choices.clear();
                        host.send_json(&last)?;
                    }
                    return Ok(());
                }
                None => return Err(Error::Internal("the generation ended early".into())),
            }
        }
    }
}

cinder_sdk::export_chat_plugin!(Redact);

#[cfg(test)]
mod tests {
    use cinder_sdk::Serve;
    use cinder_sdk::testing::{FakeHost, post};
    use serde_json::json;

    use super::{Redact, mask_digits};
    use cinder_sdk::Route;

    fn chat(host: &FakeHost, body: serde_json::Value) -> Result<(), cinder_sdk::Error> {
        Redact.serve(&Route::new("chat.create"), post(&body), host)
    }

    #[test]
    fn digits_are_masked_and_nothing_else() {
        assert_eq!(mask_digits("call 555-0199, ok?"), "call ###-####, ok?");
    }

    #[test]
    fn whole_and_streamed_answers_mask_digits() {
        let messages = json!([{"role": "user", "content": "hi"}]);
        let host = FakeHost::new("m").generating(&["call ", "555", "-01"]);
        chat(&host, json!({"model": "m", "messages": messages})).unwrap();
        let (status, body) = host.response().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["choices"][0]["message"]["content"], "call ###-##");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");

        let host = FakeHost::new("m").generating(&["7", "7"]);
        let body = json!({"model": "m", "messages": messages, "stream": true,
            "stream_options": {"include_usage": true}, "max_tokens": 1});
        chat(&host, body).unwrap();
        let events = host.events();
        assert_eq!(events[1]["choices"][0]["delta"]["content"], "#");
        assert_eq!(events[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(events[3]["usage"]["completion_tokens"], 1);
    }

    #[test]
    fn openai_rules_and_what_it_does_not_serve_are_refused_by_name() {
        let host = FakeHost::new("m");
        let param = |body| match chat(&host, body) {
            Err(cinder_sdk::Error::InvalidRequest(d)) => d.param.unwrap_or_default(),
            other => panic!("{other:?}"),
        };
        let hi = json!([{"role": "user", "content": "hi"}]);
        assert_eq!(param(json!({"model": "m", "messages": []})), "messages");
        assert_eq!(
            param(json!({"model": "m", "messages": hi, "top_p": 0})),
            "top_p"
        );
        assert_eq!(param(json!({"model": "m", "messages": hi, "n": 2})), "n");
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        assert_eq!(
            param(json!({"model": "m", "messages": hi, "tools": tools})),
            "tools"
        );
    }
}
