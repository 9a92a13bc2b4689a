//! Cinder's chat plugin: owns `POST /v1/chat/completions`. It parses and validates the OpenAI
//! request, renders the prompt with the model's chat template (through the host), runs one
//! generation, and writes either stream chunks or one aggregated response into the sink.

mod request;

use cinder_sdk::inference::{self, Event, GenerateRequest, Generation};
use cinder_sdk::openai::chat::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, ChoiceLogprobs, ChunkChoice,
    Delta, TokenLogprob, TopLogprob, Usage,
};
use cinder_sdk::sink::ResponseSink;
use cinder_sdk::{Error, Request};

use request::Plan;

struct Chat;

impl cinder_sdk::Handler for Chat {
    fn handle(request: Request, sink: &ResponseSink) -> Result<(), Error> {
        if request.method != "POST" {
            return Err(cinder_sdk::invalid_request(
                "Only POST is allowed here",
                None,
            ));
        }
        let plan = Plan::parse(&request.body)?;
        let info = inference::describe_model(&plan.model)?;
        let prompt = inference::apply_chat_template(&plan.model, &plan.messages, true)?;
        let prompt_ids = inference::tokenize(&plan.model, &prompt, true)?;
        let generation = inference::generate(&GenerateRequest {
            model: plan.model.clone(),
            prompt: prompt_ids,
            max_tokens: plan.max_tokens,
            sampling: plan.sampling.clone(),
            stop: plan.stop.clone(),
            top_logprobs: plan.top_logprobs,
        })?;
        let meta = Meta {
            id: format!("chatcmpl-{}", request.request_id),
            created: cinder_sdk::unix_time(),
            model: plan.model.clone(),
            fingerprint: info.fingerprint,
        };
        if plan.stream {
            stream(&plan, &meta, &generation, sink)
        } else {
            aggregate(&plan, &meta, &generation, sink)
        }
    }
}

cinder_sdk::export_chat_plugin!(Chat);

/// What every chunk and response repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    fingerprint: String,
}

fn logprobs_of(delta: &inference::Delta) -> Vec<TokenLogprob> {
    let top = |t: &inference::TopLogprob| TopLogprob {
        token: t.text.clone(),
        logprob: t.logprob,
        bytes: Some(t.bytes.clone()),
    };
    delta
        .logprobs
        .iter()
        .map(|lp| TokenLogprob {
            token: lp.sampled.text.clone(),
            logprob: lp.sampled.logprob,
            bytes: Some(lp.sampled.bytes.clone()),
            top_logprobs: lp.top.iter().map(top).collect(),
        })
        .collect()
}

fn finish_reason(r: cinder_sdk::types::FinishReason) -> String {
    match r {
        cinder_sdk::types::FinishReason::Stop => "stop".into(),
        cinder_sdk::types::FinishReason::Length => "length".into(),
    }
}

fn aggregate(
    plan: &Plan,
    meta: &Meta,
    generation: &Generation,
    sink: &ResponseSink,
) -> Result<(), Error> {
    let mut content = String::new();
    let mut logprobs = Vec::new();
    let (reason, usage) = loop {
        match generation.next()? {
            Some(Event::Delta(d)) => {
                content.push_str(&d.text);
                if plan.top_logprobs.is_some() {
                    logprobs.extend(logprobs_of(&d));
                }
            }
            Some(Event::Finished(f)) => break (f.reason, f.usage),
            None => {
                return Err(Error::Internal(
                    "the generation ended without finishing".into(),
                ));
            }
        }
    };
    let response = ChatCompletion {
        id: meta.id.clone(),
        object: "chat.completion".into(),
        created: meta.created,
        model: meta.model.clone(),
        system_fingerprint: meta.fingerprint.clone(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".into(),
                content: Some(content),
                refusal: None,
            },
            logprobs: plan.top_logprobs.map(|_| ChoiceLogprobs {
                content: logprobs,
                refusal: None,
            }),
            finish_reason: Some(finish_reason(reason)),
        }],
        usage: Usage::new(usage.prompt_tokens, usage.completion_tokens),
    };
    cinder_sdk::respond_json(sink, 200, &response)
}

fn stream(
    plan: &Plan,
    meta: &Meta,
    generation: &Generation,
    sink: &ResponseSink,
) -> Result<(), Error> {
    // With include_usage every chunk carries `usage: null`, and one last chunk the numbers.
    let usage_field = plan.include_usage.then_some(None);
    let chunk = |delta: Delta, logprobs: Option<ChoiceLogprobs>, finish: Option<String>| {
        ChatCompletionChunk {
            id: meta.id.clone(),
            object: "chat.completion.chunk".into(),
            created: meta.created,
            model: meta.model.clone(),
            system_fingerprint: meta.fingerprint.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs,
                finish_reason: finish,
            }],
            usage: usage_field,
        }
    };
    let first = Delta {
        role: Some("assistant".into()),
        content: Some(String::new()),
    };
    cinder_sdk::send_json(sink, &chunk(first, None, None))?;
    loop {
        match generation.next()? {
            Some(Event::Delta(d)) => {
                let logprobs = plan.top_logprobs.map(|_| ChoiceLogprobs {
                    content: logprobs_of(&d),
                    refusal: None,
                });
                if d.text.is_empty() && logprobs.as_ref().is_none_or(|l| l.content.is_empty()) {
                    continue;
                }
                cinder_sdk::send_json(
                    sink,
                    &chunk(
                        Delta {
                            role: None,
                            content: Some(d.text),
                        },
                        logprobs,
                        None,
                    ),
                )?;
            }
            Some(Event::Finished(f)) => {
                cinder_sdk::send_json(
                    sink,
                    &chunk(Delta::default(), None, Some(finish_reason(f.reason))),
                )?;
                if plan.include_usage {
                    let mut last = chunk(Delta::default(), None, None);
                    last.choices.clear();
                    last.usage = Some(Some(Usage::new(
                        f.usage.prompt_tokens,
                        f.usage.completion_tokens,
                    )));
                    cinder_sdk::send_json(sink, &last)?;
                }
                return Ok(());
            }
            None => {
                return Err(Error::Internal(
                    "the generation ended without finishing".into(),
                ));
            }
        }
    }
}
