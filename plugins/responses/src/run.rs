//! `POST /v1/responses`: from the checked request to the prompt (instructions, the chain
//! `previous_response_id` continues, this input), one generation, and its answer as output
//! items, streamed as semantic events or answered whole, and stored.

use serde_json::{Value, json};

use cinder_sdk::calling::{self, Hold};
use cinder_sdk::host::{AgentHost, Generation, Host};
use cinder_sdk::inference::{self, Constraint, Event, GenerateRequest};
use cinder_sdk::openai::params::SamplingFields;
use cinder_sdk::openai::params::chat::ResponseFormat;
use cinder_sdk::openai::params::responses::ResponseParams;
use cinder_sdk::openai::responses::{IncompleteDetails, OutputItem, Response, Usage};
use cinder_sdk::tools::{Message, ToolUse};
use cinder_sdk::types::FinishReason;
use cinder_sdk::{Error, Request};

use crate::background;
use crate::conversations;
use crate::emit::Emitter;
use crate::file_search::{self, Searched};
use crate::items;
use crate::stored::{self, Stored};

/// The host's names for what a response request became, as this API's parameters.
pub const PARAMS: [(&str, &str); 6] = [
    ("prompt", "input"),
    ("max-tokens", "max_output_tokens"),
    ("top-logprobs", "top_logprobs"),
    ("constraint", "text.format"),
    ("sampling.temperature", "temperature"),
    ("sampling.top-p", "top_p"),
];

/// A checked request with what the model reads.
pub struct Plan {
    pub params: ResponseParams,
    /// The new response's id (`resp_` and the host's request id).
    pub id: String,
    /// Instructions first, then the chain's items, then this input.
    pub messages: Vec<Message>,
    pub tools: Option<ToolUse>,
    pub constraint: Option<Constraint>,
    /// This request's input as stored items.
    pub input: Vec<OutputItem>,
    /// What the file_search tool found, once [`file_search::search`] ran.
    pub searched: Option<Searched>,
}

impl Plan {
    /// Checks `request`'s body and gathers the conversation it continues.
    pub fn build(request: &Request, host: &dyn Host) -> Result<Plan, Error> {
        let body: Value = cinder_sdk::parse_body(&request.body)?;
        let params = ResponseParams::check(&body)?;
        let id = format!("resp_{}", request.request_id);
        let mut chain = match (&params.previous_response_id, &params.conversation) {
            (Some(prev), _) => stored::context(host, prev)?,
            (None, Some(conversation)) => conversations::context(host, conversation)?,
            (None, None) => Vec::new(),
        };
        let input = items::stored_input(&id, "input", params.input.clone(), host)?;
        if chain.is_empty() && input.is_empty() {
            return Err(cinder_sdk::invalid_request(
                "Missing required parameter: 'input'.",
                Some("input"),
            ));
        }
        chain.extend(input.iter().cloned());
        let messages = items::messages(params.instructions.as_deref(), &chain, host)?;
        let tools = params.tools.clone().map(ToolUse::from);
        let constraint = params.format.clone().and_then(|f| match f {
            ResponseFormat::Text => None,
            ResponseFormat::JsonObject => Some(Constraint::JsonObject),
            ResponseFormat::JsonSchema(schema) => Some(Constraint::JsonSchema(
                cinder_sdk::schema::close_objects(schema).to_string(),
            )),
        });
        Ok(Plan {
            params,
            id,
            messages,
            tools,
            constraint,
            input,
            searched: None,
        })
    }
}

/// The prompt as text, and what tool calling adds: the grammar of required and named calls,
/// and what a call starts with.
pub struct Prompt {
    pub text: String,
    pub calls_constraint: Option<Constraint>,
    pub call_prefixes: Vec<String>,
}

/// Renders `messages` (through the tools plugin when calls are in play).
pub fn render(plan: &Plan, messages: &[Message], host: &dyn Host) -> Result<Prompt, Error> {
    let model = &plan.params.model;
    let calls_in_history = messages
        .iter()
        .any(|m| !m.calls.is_empty() || m.role == "tool");
    if plan.tools.is_none() && !calls_in_history {
        let plain: Vec<inference::ChatMessage> = messages
            .iter()
            .map(|m| inference::ChatMessage {
                role: m.role.clone(),
                content: m.content.clone(),
            })
            .collect();
        return Ok(Prompt {
            text: host.apply_chat_template(model, &plain, true)?,
            calls_constraint: None,
            call_prefixes: Vec::new(),
        });
    }
    let p = host
        .render_tools(model, messages, plan.tools.as_ref())
        .map_err(|e| e.naming(&[("messages", "input")]))?;
    Ok(Prompt {
        text: p.text,
        calls_constraint: p.constraint.filter(|_| plan.tools.is_some()),
        call_prefixes: p.call_prefixes,
    })
}

/// The prompt's tokens; with `truncation: auto`, the oldest turns (never the instructions or
/// the last message) are left out until the prompt leaves room for the answer.
pub fn prompt_tokens(plan: &Plan, host: &dyn Host) -> Result<(Prompt, Vec<u32>), Error> {
    let model = &plan.params.model;
    let info = host.describe_model(model)?;
    let room = plan
        .params
        .max_output_tokens
        .unwrap_or(256)
        .min(info.context_length / 2);
    let budget = info.context_length.saturating_sub(room) as usize;
    let tokens = |messages: &[Message]| -> Result<(Prompt, Vec<u32>), Error> {
        let prompt = render(plan, messages, host)?;
        let ids = host.tokenize(model, &prompt.text, true)?;
        Ok((prompt, ids))
    };
    let whole = tokens(&plan.messages)?;
    if whole.1.len() <= budget || !plan.params.truncation_auto {
        return Ok(whole);
    }
    // The fewest oldest turns to leave out, found by halving (a render per probe, not per
    // turn: a long history is thousands of turns). Instructions and the last message stay.
    let first = usize::from(
        plan.params.instructions.is_some() || plan.searched.as_ref().is_some_and(|s| s.in_prompt),
    );
    let most = plan.messages.len().saturating_sub(first + 1);
    let (mut lo, mut hi) = (1, most);
    let mut best = None;
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let cut = tokens(&without_oldest(&plan.messages, first, mid))?;
        if cut.1.len() <= budget {
            best = Some(cut);
            hi = mid - 1;
        } else {
            lo = mid + 1;
        }
    }
    // Nothing fits: the shortest prompt goes, and the engine says it is too long.
    match best {
        Some(fits) => Ok(fits),
        None => tokens(&without_oldest(&plan.messages, first, most)),
    }
}

/// `messages` without the `n` oldest after the first `keep`, and without tool results whose
/// calls went with them (a result without its call would confuse the template).
fn without_oldest(messages: &[Message], keep: usize, n: usize) -> Vec<Message> {
    let mut rest = messages[keep.min(messages.len())..]
        .iter()
        .skip(n)
        .peekable();
    while rest.peek().is_some_and(|m| m.role == "tool") {
        rest.next();
    }
    messages[..keep.min(messages.len())]
        .iter()
        .chain(rest)
        .cloned()
        .collect()
}

/// Serves `POST /v1/responses`.
pub fn create(request: Request, host: &dyn AgentHost) -> Result<(), Error> {
    run(request, host).map_err(|e| e.naming(&PARAMS))
}

fn run(request: Request, host: &dyn AgentHost) -> Result<(), Error> {
    let mut plan = Plan::build(&request, host)?;
    if plan.params.background {
        file_search::check_stores(&plan, host)?;
        return background::start(&request, &plan, host);
    }
    file_search::search(&mut plan, host)?;
    let p = &plan.params;
    let emit = Emitter::new(
        p.stream,
        p.logprobs.is_some(),
        response(&plan, "in_progress"),
        host,
    );
    match generate(&plan, emit, host) {
        Generated::Ready(emit) => {
            keep(&plan, emit.response(), host)?;
            let (response, _) = emit.end()?;
            if p.stream {
                Ok(())
            } else {
                host.respond_json(200, &response)
            }
        }
        // Once a stream has started, a failure is its last event, not an error body.
        Generated::Failed(emit, e) if p.stream => {
            let (failed, _) = emit.fail(&e.naming(&PARAMS))?;
            if p.store {
                let input = plan.input.clone();
                stored::save(
                    host,
                    &Stored {
                        response: failed,
                        input,
                    },
                )?;
            }
            Ok(())
        }
        Generated::Refused(_, e) | Generated::Failed(_, e) => Err(e),
        Generated::Cancelled(_) => Err(Error::Internal(
            "a response answered live was cancelled".into(),
        )),
    }
}

/// Keeps a finished live response: in its conversation, and stored when asked.
fn keep(plan: &Plan, response: &Response, host: &dyn Host) -> Result<(), Error> {
    append_to_conversation(plan, response, host)?;
    if plan.params.store {
        save(plan, response, host)?;
    }
    Ok(())
}

/// Stores `response` with the request's input items.
pub fn save(plan: &Plan, response: &Response, host: &dyn Host) -> Result<(), Error> {
    stored::save(
        host,
        &Stored {
            response: response.clone(),
            input: plan.input.clone(),
        },
    )
    .map(drop)
}

/// Adds the request's input and the response's output to the conversation it names.
pub fn append_to_conversation(
    plan: &Plan,
    response: &Response,
    host: &dyn Host,
) -> Result<(), Error> {
    if let Some(conversation) = &plan.params.conversation {
        let mut added = plan.input.clone();
        added.extend(response.output.iter().cloned());
        conversations::append(host, conversation, &added)?;
    }
    Ok(())
}

/// What became of a generation.
pub enum Generated<'h> {
    /// The answer is complete in the emitter (completed or incomplete), not yet said over.
    Ready(Emitter<'h>),
    /// A client cancelled the (background) response; the emitter has what was said.
    Cancelled(Emitter<'h>),
    /// It could not start (the prompt, the model): nothing was said yet.
    Refused(Emitter<'h>, Error),
    /// It failed after the response started.
    Failed(Emitter<'h>, Error),
}

/// Generates `plan`'s answer into `emit`.
pub fn generate<'h>(plan: &Plan, mut emit: Emitter<'h>, host: &'h dyn Host) -> Generated<'h> {
    let (prompt, ids, generation) = match begin(plan, host) {
        Ok(begun) => begun,
        Err(e) => return Generated::Refused(emit, e),
    };
    if let Err(e) = emit.start() {
        return Generated::Failed(emit, e);
    }
    if let Some(searched) = &plan.searched
        && let Err(e) = emit.file_search(searched)
    {
        return Generated::Failed(emit, e);
    }
    let hold = Hold::start(plan.tools.is_some(), prompt.calls_constraint.is_some());
    let outcome = match answer(plan, &prompt, hold, &*generation, &mut emit, host) {
        Ok(Some(outcome)) => outcome,
        Ok(None) => return Generated::Cancelled(emit),
        Err(e) => return Generated::Failed(emit, e),
    };
    let usage = Usage::new(ids.len() as u32, generation.cached_tokens(), outcome.tokens);
    drop(generation);
    match emit.complete(outcome.reason, usage) {
        Ok(()) => Generated::Ready(emit),
        Err(e) => Generated::Failed(emit, e),
    }
}

/// The prompt, its tokens, and the generation started on them.
type Begun = (Prompt, Vec<u32>, Box<dyn Generation>);

fn begin(plan: &Plan, host: &dyn Host) -> Result<Begun, Error> {
    let p = &plan.params;
    let (prompt, ids) = prompt_tokens(plan, host)?;
    let sampling = SamplingFields {
        temperature: p.temperature,
        top_p: p.top_p,
        ..SamplingFields::default()
    }
    .check()?;
    let generate = GenerateRequest {
        model: p.model.clone(),
        prompt: ids.clone(),
        max_tokens: p.max_output_tokens,
        sampling: sampling.into(),
        stop: Vec::new(),
        top_logprobs: p.logprobs,
    };
    let generation = match (&prompt.calls_constraint, &plan.constraint) {
        (Some(c), _) => host
            .generate_constrained(&generate, c)
            .map_err(|e| e.naming(&[("constraint", "tools")]))?,
        (None, Some(c)) => host.generate_constrained(&generate, c)?,
        (None, None) => host.generate(&generate)?,
    };
    Ok((prompt, ids, generation))
}

/// How the answer ended.
struct Outcome {
    /// `None`: it ended as asked (stop, or calls); `Some`: why it is incomplete.
    reason: Option<IncompleteDetails>,
    /// Tokens generated.
    tokens: u32,
}

/// Reads the generation to its end, handing text and calls to `emit`; `None` if a client
/// cancelled it first.
fn answer(
    plan: &Plan,
    prompt: &Prompt,
    mut hold: Hold,
    generation: &dyn Generation,
    emit: &mut Emitter,
    host: &dyn Host,
) -> Result<Option<Outcome>, Error> {
    let model = &plan.params.model;
    let mut tokens = 0u32;
    let mut length = false;
    // Logprobs of tokens whose text is still held back.
    let mut held_logprobs: Vec<Value> = Vec::new();
    loop {
        match generation.next()? {
            Some(Event::Delta(d)) => {
                tokens += d.tokens.len() as u32;
                if plan.params.logprobs.is_some() {
                    held_logprobs.extend(logprobs_of(&d));
                }
                let text = hold.take(d.text, &prompt.call_prefixes);
                // Text held back while it might be a call comes out with its tokens' logprobs.
                if !text.is_empty() {
                    emit.text(&text, std::mem::take(&mut held_logprobs))?;
                }
                let repeated = match hold.calls() {
                    Some(envelope) => calling::repeats(host, model, envelope, plan.tools.as_ref())?,
                    None => false,
                };
                if repeated {
                    break;
                }
                if emit.cancelled()? {
                    return Ok(None);
                }
            }
            Some(Event::Finished(f)) => {
                tokens = f.usage.completion_tokens;
                length = f.reason == FinishReason::Length;
                break;
            }
            None => {
                return Err(Error::Internal(
                    "the generation ended without finishing".into(),
                ));
            }
        }
    }
    // What was held back: a call envelope becomes calls; anything else was text.
    let (envelope, rest) = match hold {
        Hold::Calls(buf) => (buf, None),
        Hold::Undecided(buf) => (String::new(), Some(buf)),
        Hold::Stream => (String::new(), None),
    };
    let calls = match &plan.tools {
        Some(tools) if !envelope.trim().is_empty() => host
            .parse_tool_calls(model, &envelope, tools)?
            .map(|c| calling::until_repeat(c).0),
        _ => None,
    };
    match calls {
        Some(calls) => {
            for call in calls {
                emit.call(call)?;
            }
        }
        // A call envelope the limit cut before any call completed is neither calls nor text.
        None if length && !envelope.trim().is_empty() => {}
        None => {
            let text = rest.unwrap_or(envelope);
            if !text.is_empty() {
                emit.text(&text, held_logprobs)?;
            }
        }
    }
    // The limit was hit: incomplete, whatever was said before it (complete calls stay).
    let reason = length.then(|| IncompleteDetails {
        reason: "max_output_tokens".into(),
    });
    Ok(Some(Outcome { reason, tokens }))
}

fn logprobs_of(delta: &inference::Delta) -> Vec<Value> {
    delta
        .logprobs
        .iter()
        .map(|lp| {
            json!({
                "token": lp.sampled.text,
                "logprob": lp.sampled.logprob,
                "bytes": lp.sampled.bytes,
                "top_logprobs": lp.top.iter().map(|t| json!({
                    "token": t.text, "logprob": t.logprob, "bytes": t.bytes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// The `response` object of `plan`, with no output yet.
pub fn response(plan: &Plan, status: &str) -> Response {
    let p = &plan.params;
    Response {
        id: plan.id.clone(),
        object: "response".into(),
        created_at: cinder_sdk::unix_time(),
        status: status.into(),
        completed_at: None,
        error: None,
        incomplete_details: None,
        instructions: p.instructions.clone(),
        max_output_tokens: p.max_output_tokens,
        model: p.model.clone(),
        output: Vec::new(),
        parallel_tool_calls: p.parallel_tool_calls,
        previous_response_id: p.previous_response_id.clone(),
        conversation: p
            .conversation
            .clone()
            .map(|id| cinder_sdk::openai::responses::ConversationRef { id }),
        reasoning: p.reasoning.clone(),
        store: p.store,
        background: p.background,
        temperature: Some(p.temperature.unwrap_or(1.0)),
        top_p: Some(p.top_p.unwrap_or(1.0)),
        top_logprobs: p.top_logprobs,
        text: p.text_given.clone(),
        tool_choice: p.tool_choice_given.clone(),
        tools: p.tools_given.clone(),
        truncation: if p.truncation_auto {
            "auto"
        } else {
            "disabled"
        }
        .into(),
        usage: None,
        user: p.user.clone(),
        safety_identifier: p.safety_identifier.clone(),
        prompt_cache_key: p.prompt_cache_key.clone(),
        metadata: p.metadata.clone(),
    }
}
