//! The first-party chat pipeline: template, tokenize, generate n choices, then stream chunks
//! or aggregate one response. [`super::Chat`]'s hooks are called on the way.

use cinder_sdk::host::{Generation, Host};
use cinder_sdk::inference::{self, Event, GenerateRequest};
use cinder_sdk::openai::chat::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, ChoiceLogprobs, ChunkChoice,
    Delta, TokenLogprob, TopLogprob, Usage,
};
use cinder_sdk::{Error, Request};

use super::calls::{self, Ending};
use super::{Chat, Plan};
use crate::fan_in::FanIn;
use cinder_sdk::calling::Hold;

/// The host's names for what a chat request became, as chat's request parameters.
const CHAT_PARAMS: [(&str, &str); 4] = [
    ("prompt", "messages"),
    ("max-tokens", "max_completion_tokens"),
    ("top-logprobs", "top_logprobs"),
    ("constraint", "response_format"),
];

/// Runs one chat request the way the first-party plugin does, against `host` (the real one in
/// a plugin, a fake in native unit tests).
pub fn complete<C: Chat + ?Sized>(
    chat: &C,
    request: Request,
    host: &dyn Host,
) -> Result<(), Error> {
    run(chat, request, host).map_err(|e| e.naming(&CHAT_PARAMS).naming(&crate::SAMPLING_PARAMS))
}

fn run<C: Chat + ?Sized>(chat: &C, request: Request, host: &dyn Host) -> Result<(), Error> {
    if request.method != "POST" {
        return Err(cinder_sdk::invalid_request(
            "Only POST is allowed here",
            None,
        ));
    }
    let plan = chat.prepare(Plan::parse(&request.body)?)?;
    let cap = crate::limits::max_sequences(host);
    if plan.n > cap {
        return Err(cinder_sdk::invalid_request(
            &format!("n is {}; at most {cap} per request", plan.n),
            Some("n"),
        ));
    }
    let info = host.describe_model(&plan.model)?;
    let (prompt, calling) = render(&plan, host)?;
    let prompt_ids = host.tokenize(&plan.model, &prompt, true)?;
    crate::limits::check_prompt_tokens(host, prompt_ids.len() as u64, "messages")?;
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
        cinder_sdk::debug(&format!("request {} for user {user}", request.request_id));
    }
    let meta = Meta {
        id: format!("chatcmpl-{}", request.request_id),
        created: cinder_sdk::unix_time(),
        model: plan.model.clone(),
        fingerprint: info.fingerprint,
        service_tier: plan.service_tier.clone(),
    };
    let prompt_tokens = prompt_ids.len() as u32;
    answer(
        chat,
        (&plan, &calling, &meta),
        prompt_tokens,
        generations,
        host,
    )
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
    e.naming(&[("constraint", "tools")])
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

    /// One `chat.completion.chunk` for choice `index`. With `include_usage` every chunk
    /// carries `usage: null`, and one last chunk the numbers.
    fn chunk(
        &self,
        plan: &Plan,
        index: u32,
        delta: Delta,
        logprobs: Option<ChoiceLogprobs>,
        finish: Option<String>,
    ) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: self.fingerprint.clone(),
            service_tier: self.service_tier.clone(),
            choices: vec![ChunkChoice {
                index,
                delta,
                logprobs,
                finish_reason: finish,
            }],
            usage: plan.include_usage.then_some(None),
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

/// One choice while it runs: its generation (dropped to stop it), what it has said, and
/// where its text goes while it may be a call.
struct Running {
    index: u32,
    generation: Box<dyn Generation>,
    hold: Hold,
    /// Everything it said (after `rewrite`).
    text: String,
    /// Tokens generated, for the usage of an answer chat stops itself.
    tokens: u32,
    /// Each sampled token's logprob, when the request asked for them.
    logprobs: Vec<TokenLogprob>,
}

impl Running {
    fn new(index: u32, generation: Box<dyn Generation>, plan: &Plan, calling: &Calling) -> Self {
        let hold = Hold::start(plan.tools.is_some(), calling.constraint.is_some());
        Running {
            index,
            generation,
            hold,
            text: String::new(),
            tokens: 0,
            logprobs: Vec::new(),
        }
    }

    /// Takes a delta's (rewritten) text; returns what may be streamed now, and whether the
    /// answer must end here because the model repeated a call.
    fn take(
        &mut self,
        text: String,
        tokens: usize,
        plan: &Plan,
        calling: &Calling,
        host: &dyn Host,
    ) -> Result<(String, bool), Error> {
        self.tokens += tokens as u32;
        self.text.push_str(&text);
        let out = self.hold.take(text, &calling.prefixes);
        let repeated = match self.hold.calls() {
            Some(envelope) => calls::repeats(plan, envelope, host)?,
            None => false,
        };
        Ok((out, repeated))
    }

    /// `total` with this choice's usage added, when chat stopped it itself (no `finished`
    /// event comes for it): the tokens it saw generated.
    fn add_stopped_usage(&self, total: Usage, prompt_tokens: u32) -> Usage {
        let own = cinder_sdk::types::Usage {
            prompt_tokens,
            completion_tokens: self.tokens,
        };
        add_usage(total, own, &*self.generation)
    }
}

/// Adds a choice's usage: the prompt is read once, whatever n is; completions add up. The
/// first choice's prompt is the one that counts as read, cached or not.
/// How a generation ended when the engine ended it: its reason, with its usage added.
fn engine_end(
    event: Option<Event>,
    usage: &mut Usage,
    generation: &dyn Generation,
) -> Result<Ending, Error> {
    match event {
        Some(Event::Finished(f)) => {
            *usage = add_usage(*usage, f.usage, generation);
            Ok(Ending::Engine(f.reason))
        }
        _ => Err(Error::Internal(
            "the generation ended without finishing".into(),
        )),
    }
}

fn add_usage(total: Usage, u: cinder_sdk::types::Usage, generation: &dyn Generation) -> Usage {
    let cached = match total.prompt_tokens_details {
        Some(d) => d.cached_tokens,
        None => generation.cached_tokens(),
    };
    Usage::new(
        u.prompt_tokens,
        total.completion_tokens + u.completion_tokens,
    )
    .with_cached(cached)
}

/// The one pipeline: every choice's events are read as they come (whichever first, so all run
/// side by side), streamed as chunks when the request streams, and always folded into the
/// `chat.completion` that is answered (not streaming) and stored (`store`). A streamed answer
/// and a whole one are the same answer, usage, finish reasons and stored record included.
fn answer<C: Chat + ?Sized>(
    chat: &C,
    (plan, calling, meta): (&Plan, &Calling, &Meta),
    prompt_tokens: u32,
    generations: Vec<Box<dyn Generation>>,
    host: &dyn Host,
) -> Result<(), Error> {
    let send =
        |index: u32, delta: Delta, logprobs: Option<ChoiceLogprobs>, finish: Option<String>| {
            host.send_json(&meta.chunk(plan, index, delta, logprobs, finish))
        };
    if plan.stream {
        for index in 0..generations.len() as u32 {
            // OpenAI starts a choice that may turn out to be calls with no content at all.
            let first = Delta {
                role: Some("assistant".into()),
                content: plan.tools.is_none().then(String::new),
                tool_calls: None,
                function_call: None,
            };
            send(index, first, None, None)?;
        }
    }
    let mut done: Vec<Option<Choice>> = vec![None; generations.len()];
    let mut usage = Usage::default();
    let mut running: Vec<Running> = (0u32..)
        .zip(generations)
        .map(|(i, g)| Running::new(i, g, plan, calling))
        .collect();
    let mut fan = FanIn::default();
    while !running.is_empty() {
        let (at, event) = fan.next(host, &running, |c| &*c.generation);
        let choice = &mut running[at];
        let index = choice.index;
        let ending = match event? {
            Some(Event::Delta(d)) => {
                let logprobs = plan.top_logprobs.map(|_| logprobs_of(&d));
                let text = chat.rewrite(index, d.text);
                let (text, repeated) = choice.take(text, d.tokens.len(), plan, calling, host)?;
                if plan.stream
                    && (!text.is_empty() || logprobs.as_ref().is_some_and(|l| !l.is_empty()))
                {
                    let logprobs = logprobs.clone().map(|content| ChoiceLogprobs {
                        content,
                        refusal: None,
                    });
                    send(index, text_delta(text), logprobs, None)?;
                }
                choice.logprobs.extend(logprobs.unwrap_or_default());
                if !repeated {
                    continue;
                }
                usage = choice.add_stopped_usage(usage, prompt_tokens);
                Ending::Repeat
            }
            other => engine_end(other, &mut usage, &*choice.generation)?,
        };
        let choice = running.remove(at);
        fan.removed(at);
        // Dropping the generation stops it in the core (a repeat); it has finished otherwise.
        let Running {
            generation,
            hold,
            text,
            logprobs,
            ..
        } = choice;
        drop(generation);
        let prefix = format!("{}_{index}", meta.id.trim_start_matches("chatcmpl-"));
        // What was held back is settled: a call envelope becomes calls, anything else was text.
        let (settled, rest) = match hold {
            Hold::Calls(buf) => {
                let settled = calls::settle(plan, buf.clone(), ending, &prefix, host)?;
                let rest = if settled.envelope { String::new() } else { buf };
                (settled, rest)
            }
            Hold::Undecided(buf) => (
                calls::settle(plan, String::new(), ending, &prefix, host)?,
                buf,
            ),
            Hold::Stream => (
                calls::settle(plan, String::new(), ending, &prefix, host)?,
                String::new(),
            ),
        };
        if plan.stream {
            if !rest.is_empty() {
                send(index, text_delta(rest), None, None)?;
            }
            for (i, call) in (0u32..).zip(&settled.calls) {
                for piece in calls::call_deltas(i, call, plan.legacy_functions) {
                    send(index, piece, None, None)?;
                }
            }
            send(index, Delta::default(), None, Some(settled.finish.clone()))?;
        }
        let content = if settled.envelope {
            String::new()
        } else {
            text
        };
        done[index as usize] = Some(folded(plan, index, settled, content, logprobs));
    }
    let completion = meta.completion(done.into_iter().flatten().collect(), usage);
    if plan.stream && plan.include_usage {
        let mut last = meta.chunk(plan, 0, Delta::default(), None, None);
        last.choices.clear();
        last.usage = Some(Some(usage));
        host.send_json(&last)?;
    }
    if plan.store {
        super::stored::save(host, &completion, plan.metadata.as_ref(), &plan.messages)?;
    }
    if plan.stream {
        Ok(())
    } else {
        host.respond_json(200, &completion)
    }
}

/// One choice of the `chat.completion`, once it has ended.
fn folded(
    plan: &Plan,
    index: u32,
    settled: calls::Settled,
    content: String,
    logprobs: Vec<TokenLogprob>,
) -> Choice {
    let calls = (!settled.calls.is_empty()).then_some(settled.calls);
    let (tool_calls, function_call) = match calls {
        Some(c) if plan.legacy_functions => (None, c.into_iter().next().map(|c| c.function)),
        other => (other, None),
    };
    let has_calls = tool_calls.is_some() || function_call.is_some();
    Choice {
        index,
        message: AssistantMessage {
            role: "assistant".into(),
            content: (!has_calls).then_some(content),
            refusal: None,
            tool_calls,
            function_call,
        },
        logprobs: plan.top_logprobs.map(|_| ChoiceLogprobs {
            content: logprobs,
            refusal: None,
        }),
        finish_reason: Some(settled.finish),
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
