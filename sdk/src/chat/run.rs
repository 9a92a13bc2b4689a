//! The first-party chat pipeline: template, tokenize, generate n choices, then stream chunks
//! or aggregate one response. [`super::Chat`]'s hooks are called on the way.

use crate::host::{Generation, Host};
use crate::inference::{self, Event, GenerateRequest};
use crate::openai::chat::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, ChoiceLogprobs, ChunkChoice,
    Delta, TokenLogprob, ToolCall, ToolCallFunction, TopLogprob, Usage,
};
use crate::{Error, Request};

use super::{Chat, Plan};

/// Runs one chat request the way the first-party plugin does, against `host` (the real one in
/// a plugin, a fake in native unit tests).
pub fn complete<C: Chat + ?Sized>(
    chat: &C,
    request: Request,
    host: &dyn Host,
) -> Result<(), Error> {
    if request.method != "POST" {
        return Err(crate::invalid_request("Only POST is allowed here", None));
    }
    let plan = chat.prepare(Plan::parse(&request.body)?)?;
    let info = host.describe_model(&plan.model)?;
    let (prompt, calling) = render(&plan, host)?;
    let prompt_ids = host.tokenize(&plan.model, &prompt, true)?;
    // n choices are n independent sequences, all running in the engine at once. With a
    // seed, choice i uses seed + i, so choices differ and each is reproducible.
    let generations = (0..plan.n)
        .map(|i| {
            let mut sampling = plan.sampling.clone();
            sampling.seed = sampling.seed.map(|s| s.wrapping_add(u64::from(i)));
            let request = GenerateRequest {
                model: plan.model.clone(),
                prompt: prompt_ids.clone(),
                max_tokens: plan.max_tokens,
                sampling,
                stop: plan.stop.clone(),
                top_logprobs: plan.top_logprobs,
            };
            match (&calling.constraint, &plan.constraint) {
                // The tools plugin's grammar: a schema the engine refuses is the tool's fault.
                (Some(c), _) => host.generate_constrained(&request, c).map_err(blame_tools),
                (None, Some(c)) => host.generate_constrained(&request, c),
                (None, None) => host.generate(&request),
            }
        })
        .collect::<Result<Vec<Box<dyn Generation>>, Error>>()?;
    if let Some(user) = &plan.user {
        crate::debug(&format!("request {} for user {user}", request.request_id));
    }
    let meta = Meta {
        id: format!("chatcmpl-{}", request.request_id),
        created: crate::unix_time(),
        model: plan.model.clone(),
        fingerprint: info.fingerprint,
        service_tier: plan.service_tier.clone(),
    };
    if plan.stream {
        stream(chat, &plan, &calling, &meta, &generations, host)
    } else {
        aggregate(chat, &plan, &meta, &generations, host)
    }
}

/// What the tools plugin said about calls in this request.
#[derive(Default)]
struct Calling {
    /// The grammar of required and named calls.
    constraint: Option<inference::Constraint>,
    /// What an answer that is a call starts with.
    prefixes: Vec<String>,
}

/// The prompt: through the tools plugin when the request has tools or its history has calls
/// or tool results, straight through the template otherwise (so chat without tools needs no
/// tools plugin).
fn render(plan: &Plan, host: &dyn Host) -> Result<(String, Calling), Error> {
    let tool_history = plan
        .messages
        .iter()
        .any(|m| !m.calls.is_empty() || m.role == "tool");
    if plan.tools.is_none() && !tool_history {
        let plain: Vec<inference::ChatMessage> = plan
            .messages
            .iter()
            .map(|m| inference::ChatMessage {
                role: m.role.clone(),
                content: m.content.clone(),
            })
            .collect();
        let prompt = host.apply_chat_template(&plan.model, &plain, true)?;
        return Ok((prompt, Calling::default()));
    }
    let prompt = host.render_tools(&plan.model, &plan.messages, plan.tools.as_ref())?;
    let calling = Calling {
        constraint: prompt.constraint.filter(|_| plan.tools.is_some()),
        prefixes: prompt.call_prefixes,
    };
    Ok((prompt.text, calling))
}

/// A grammar error from the tools plugin's constraint names `tools`, not `response_format`.
fn blame_tools(e: Error) -> Error {
    match e {
        Error::InvalidRequest(mut d) if d.param.as_deref() == Some("response_format") => {
            d.param = Some("tools".into());
            Error::InvalidRequest(d)
        }
        other => other,
    }
}

/// The calls in a finished answer (via the tools plugin), with ids where the model's format
/// has none.
fn read_calls(
    plan: &Plan,
    text: &str,
    id_prefix: &str,
    host: &dyn Host,
) -> Result<Option<Vec<ToolCall>>, Error> {
    let Some(tools) = &plan.tools else {
        return Ok(None);
    };
    let calls = host.parse_tool_calls(&plan.model, text, tools)?;
    Ok(calls.map(|calls| {
        (0..)
            .zip(calls)
            .map(|(i, c)| ToolCall {
                id: if c.id.is_empty() {
                    format!("call_{id_prefix}_{i}")
                } else {
                    c.id
                },
                kind: "function".into(),
                function: ToolCallFunction {
                    name: c.name,
                    arguments: c.arguments,
                },
            })
            .collect()
    }))
}

/// What every chunk and response repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    fingerprint: String,
    service_tier: Option<String>,
}

impl Meta {
    /// A whole `chat.completion` with these choices.
    fn completion(&self, choices: Vec<Choice>, usage: Usage) -> ChatCompletion {
        ChatCompletion {
            id: self.id.clone(),
            object: "chat.completion".into(),
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: self.fingerprint.clone(),
            service_tier: self.service_tier.clone(),
            choices,
            usage,
        }
    }
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

fn aggregate<C: Chat + ?Sized>(
    chat: &C,
    plan: &Plan,
    meta: &Meta,
    generations: &[Box<dyn Generation>],
    host: &dyn Host,
) -> Result<(), Error> {
    let mut choices = Vec::with_capacity(generations.len());
    let mut usage = Usage::default();
    for (index, generation) in (0u32..).zip(generations) {
        let mut content = String::new();
        let mut logprobs = Vec::new();
        let (reason, u) = loop {
            match generation.next()? {
                Some(Event::Delta(d)) => {
                    content.push_str(&chat.rewrite(index, d.text.clone()));
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
        // The prompt is read once, whatever n is; completions add up. The first choice's
        // prompt is the one that counts as read, cached or not.
        let cached = match usage.prompt_tokens_details {
            Some(d) => d.cached_tokens,
            None => generation.cached_tokens(),
        };
        usage = Usage::new(
            u.prompt_tokens,
            usage.completion_tokens + u.completion_tokens,
        )
        .with_cached(cached);
        // An answer in the tool-call format is calls, not text.
        let prefix = format!("{}_{index}", meta.id.trim_start_matches("chatcmpl-"));
        let calls = read_calls(plan, &content, &prefix, host)?;
        let called = if plan.legacy_functions {
            "function_call"
        } else {
            "tool_calls"
        };
        let finish = match (&calls, reason) {
            (Some(_), crate::types::FinishReason::Stop) => called.to_owned(),
            _ => crate::finish_reason(reason),
        };
        let (tool_calls, function_call) = match calls {
            Some(c) if plan.legacy_functions => (None, c.into_iter().next().map(|c| c.function)),
            other => (other, None),
        };
        let has_calls = tool_calls.is_some() || function_call.is_some();
        choices.push(Choice {
            index,
            message: AssistantMessage {
                role: "assistant".into(),
                content: if has_calls { None } else { Some(content) },
                refusal: None,
                tool_calls,
                function_call,
            },
            logprobs: plan.top_logprobs.map(|_| ChoiceLogprobs {
                content: logprobs,
                refusal: None,
            }),
            finish_reason: Some(finish),
        });
    }
    let response = meta.completion(choices, usage);
    if plan.store {
        super::stored::save(host, &response, plan.metadata.as_ref(), &plan.messages)?;
    }
    host.respond_json(200, &response)
}

fn stream<C: Chat + ?Sized>(
    chat: &C,
    plan: &Plan,
    calling: &Calling,
    meta: &Meta,
    generations: &[Box<dyn Generation>],
    host: &dyn Host,
) -> Result<(), Error> {
    // With include_usage every chunk carries `usage: null`, and one last chunk the numbers.
    let usage_field = plan.include_usage.then_some(None);
    let chunk = |index: u32,
                 delta: Delta,
                 logprobs: Option<ChoiceLogprobs>,
                 finish: Option<String>| ChatCompletionChunk {
        id: meta.id.clone(),
        object: "chat.completion.chunk".into(),
        created: meta.created,
        model: meta.model.clone(),
        system_fingerprint: meta.fingerprint.clone(),
        service_tier: meta.service_tier.clone(),
        choices: vec![ChunkChoice {
            index,
            delta,
            logprobs,
            finish_reason: finish,
        }],
        usage: usage_field,
    };
    for index in 0..generations.len() as u32 {
        // OpenAI starts a choice that may turn out to be calls with no content at all.
        let first = Delta {
            role: Some("assistant".into()),
            content: plan.tools.is_none().then(String::new),
            tool_calls: None,
            function_call: None,
        };
        host.send_json(&chunk(index, first, None, None))?;
    }
    // Round robin over the running choices: the engine advances them all each step, so each
    // `next` finds its event soon and the choices stream side by side.
    let mut running: Vec<(u32, &Box<dyn Generation>)> = (0u32..).zip(generations).collect();
    let mut usage = Usage::default();
    // With `store`, the streamed choices are assembled into the completion that is kept.
    let mut texts = vec![String::new(); generations.len()];
    let mut finishes = vec![None; generations.len()];
    // With tools, text that may be a call is held back until it is known to be one.
    let start = match &plan.tools {
        None => Hold::Stream,
        Some(_) if calling.constraint.is_some() => Hold::Calls(String::new()),
        Some(_) => Hold::Undecided(String::new()),
    };
    let mut holds = vec![start; generations.len()];
    while !running.is_empty() {
        let mut still = Vec::with_capacity(running.len());
        for (index, generation) in running {
            match generation.next()? {
                Some(Event::Delta(d)) => {
                    let logprobs = plan.top_logprobs.map(|_| ChoiceLogprobs {
                        content: logprobs_of(&d),
                        refusal: None,
                    });
                    let text = chat.rewrite(index, d.text.clone());
                    if plan.store {
                        texts[index as usize].push_str(&text);
                    }
                    let text = holds[index as usize].take(text, &calling.prefixes);
                    if !text.is_empty() || logprobs.as_ref().is_some_and(|l| !l.content.is_empty())
                    {
                        host.send_json(&chunk(index, text_delta(text), logprobs, None))?;
                    }
                    still.push((index, generation));
                }
                Some(Event::Finished(f)) => {
                    let cached = match usage.prompt_tokens_details {
                        Some(d) => d.cached_tokens,
                        None => generation.cached_tokens(),
                    };
                    usage = Usage::new(
                        f.usage.prompt_tokens,
                        usage.completion_tokens + f.usage.completion_tokens,
                    )
                    .with_cached(cached);
                    let mut finish = crate::finish_reason(f.reason);
                    let held = std::mem::replace(&mut holds[index as usize], Hold::Stream);
                    let (calls, rest) = match held {
                        Hold::Calls(buf) => {
                            let prefix =
                                format!("{}_{index}", meta.id.trim_start_matches("chatcmpl-"));
                            match read_calls(plan, &buf, &prefix, host)? {
                                Some(calls) => (calls, String::new()),
                                // Cut short or not a call after all: it was text.
                                None => (Vec::new(), buf),
                            }
                        }
                        Hold::Undecided(buf) => (Vec::new(), buf),
                        Hold::Stream => (Vec::new(), String::new()),
                    };
                    if !rest.is_empty() {
                        host.send_json(&chunk(index, text_delta(rest), None, None))?;
                    }
                    for (i, call) in (0u32..).zip(&calls) {
                        for piece in call_deltas(i, call, plan.legacy_functions) {
                            host.send_json(&chunk(index, piece, None, None))?;
                        }
                    }
                    if !calls.is_empty() && f.reason == crate::types::FinishReason::Stop {
                        finish = if plan.legacy_functions {
                            "function_call".into()
                        } else {
                            "tool_calls".into()
                        };
                    }
                    finishes[index as usize] = Some(finish.clone());
                    host.send_json(&chunk(index, Delta::default(), None, Some(finish)))?;
                }
                None => {
                    return Err(Error::Internal(
                        "the generation ended without finishing".into(),
                    ));
                }
            }
        }
        running = still;
    }
    if plan.include_usage {
        let mut last = chunk(0, Delta::default(), None, None);
        last.choices.clear();
        last.usage = Some(Some(usage));
        host.send_json(&last)?;
    }
    if plan.store {
        let choices = (0u32..)
            .zip(texts.into_iter().zip(finishes))
            .map(|(index, (content, finish))| Choice {
                index,
                message: AssistantMessage {
                    role: "assistant".into(),
                    content: Some(content),
                    refusal: None,
                    tool_calls: None,
                    function_call: None,
                },
                logprobs: None,
                finish_reason: finish,
            })
            .collect();
        let completion = meta.completion(choices, usage);
        super::stored::save(host, &completion, plan.metadata.as_ref(), &plan.messages)?;
    }
    Ok(())
}

/// Where a streamed choice's text goes while tools may be called.
#[derive(Clone)]
enum Hold {
    /// Straight to the client.
    Stream,
    /// Held until its start says text (stream it) or a call (one of the tools plugin's call
    /// prefixes).
    Undecided(String),
    /// Held to the end, then sent as tool calls.
    Calls(String),
}

impl Hold {
    /// Takes a piece of text; returns what may be sent now.
    fn take(&mut self, text: String, prefixes: &[String]) -> String {
        match self {
            Hold::Stream => text,
            Hold::Calls(buf) => {
                buf.push_str(&text);
                String::new()
            }
            Hold::Undecided(buf) => {
                buf.push_str(&text);
                let start = buf.trim_start();
                if start.is_empty() || prefixes.iter().any(|p| p.starts_with(start)) {
                    // Blank, or still the beginning of a call prefix (`<tool_` of `<tool_call>`).
                    String::new()
                } else if prefixes.iter().any(|p| start.starts_with(p.as_str())) {
                    *self = Hold::Calls(std::mem::take(buf));
                    String::new()
                } else {
                    let out = std::mem::take(buf);
                    *self = Hold::Stream;
                    out
                }
            }
        }
    }
}

fn text_delta(text: String) -> Delta {
    Delta {
        role: None,
        content: Some(text),
        tool_calls: None,
        function_call: None,
    }
}

/// A call as OpenAI streams it: `id`, `type` and name with empty arguments, then the arguments
/// (for `functions` requests, `function_call` with the name, then the arguments).
fn call_deltas(index: u32, call: &crate::openai::chat::ToolCall, legacy: bool) -> [Delta; 2] {
    use crate::openai::chat::{ToolCallDelta, ToolCallDeltaFunction};
    if legacy {
        let delta = |f: ToolCallDeltaFunction| Delta {
            role: None,
            content: None,
            tool_calls: None,
            function_call: Some(f),
        };
        return [
            delta(ToolCallDeltaFunction {
                name: Some(call.function.name.clone()),
                arguments: String::new(),
            }),
            delta(ToolCallDeltaFunction {
                name: None,
                arguments: call.function.arguments.clone(),
            }),
        ];
    }
    let delta = |d: ToolCallDelta| Delta {
        role: None,
        content: None,
        tool_calls: Some(vec![d]),
        function_call: None,
    };
    [
        delta(ToolCallDelta {
            index,
            id: Some(call.id.clone()),
            kind: Some("function".into()),
            function: ToolCallDeltaFunction {
                name: Some(call.function.name.clone()),
                arguments: String::new(),
            },
        }),
        delta(ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: ToolCallDeltaFunction {
                name: None,
                arguments: call.function.arguments.clone(),
            },
        }),
    ]
}
