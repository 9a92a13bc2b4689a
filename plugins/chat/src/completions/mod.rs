//! Legacy text completions (`POST /v1/completions`), served by the chat family: a `Chat`
//! plugin whose manifest also routes `/v1/completions` gets this pipeline through
//! [`crate::chat::Chat::complete_legacy`], with its `rewrite` hook applied to generated text.
//!
//! Prompts are strings, lists of strings, token ids or lists of them; each gets `n` choices
//! (index `prompt * n + choice`), or `best_of` candidates of which the `n` with the best mean
//! token logprob return. `suffix` is fill-in-the-middle, available when the model's tokenizer
//! has the `<fim_prefix>`, `<fim_suffix>` and `<fim_middle>` control tokens.

mod plan;

pub use plan::{LegacyPlan, PromptInput};

use std::collections::BTreeMap;

use crate::chat::Chat;
use crate::fan_in::FanIn;
use cinder_sdk::host::{Generation, Host};
use cinder_sdk::inference::{Delta, Event, GenerateRequest};
use cinder_sdk::openai::chat::Usage;
use cinder_sdk::openai::completions::{Completion, CompletionChoice, LegacyLogprobs};
use cinder_sdk::{Error, Request, invalid_request};

const FIM: [&str; 3] = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"];

/// Whether each FIM marker is one control token of the model (and not plain text).
fn has_fim(host: &dyn Host, model: &str) -> Result<bool, Error> {
    for marker in FIM {
        let special = host.tokenize(model, marker, true)?;
        if special.len() != 1 || special == host.tokenize(model, marker, false)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One running choice.
struct Job {
    prompt: usize,
    /// `None` with `max_tokens: 0`: the prompt is only echoed (and scored).
    generation: Option<Box<dyn Generation>>,
    /// Its text so far (echoed prompt included), in characters: the next token's offset.
    chars: u32,
    text: String,
    logprobs: LegacyLogprobs,
    logprob_sum: f64,
    finish: Option<String>,
    completion_tokens: u32,
}

impl Job {
    /// Folds a delta in; returns the rewritten text and this delta's logprobs.
    fn absorb<C: Chat + ?Sized>(
        &mut self,
        chat: &C,
        index: u32,
        d: Delta,
        top_k: Option<u32>,
    ) -> (String, LegacyLogprobs) {
        let mut lp = LegacyLogprobs::default();
        for t in &d.logprobs {
            self.logprob_sum += f64::from(t.sampled.logprob);
            if top_k.is_some() {
                lp.tokens.push(t.sampled.text.clone());
                lp.token_logprobs.push(Some(t.sampled.logprob));
                lp.top_logprobs.push(Some(
                    t.top
                        .iter()
                        .map(|a| (a.text.clone(), a.logprob))
                        .collect::<BTreeMap<_, _>>(),
                ));
                lp.text_offset.push(self.chars);
                self.chars += t.sampled.text.chars().count() as u32;
            }
        }
        let text = chat.rewrite(index, d.text);
        self.text.push_str(&text);
        if top_k.is_some() {
            self.logprobs.tokens.extend(lp.tokens.iter().cloned());
            self.logprobs.token_logprobs.extend(&lp.token_logprobs);
            self.logprobs
                .top_logprobs
                .extend(lp.top_logprobs.iter().cloned());
            self.logprobs.text_offset.extend(&lp.text_offset);
        }
        (text, lp)
    }

    fn mean_logprob(&self) -> f64 {
        self.logprob_sum / f64::from(self.completion_tokens.max(1))
    }
}

/// The legacy logprobs of a prompt's own tokens: the first has none (nothing precedes it).
fn prompt_logprobs(
    host: &dyn Host,
    model: &str,
    ids: &[u32],
    k: u32,
) -> Result<LegacyLogprobs, Error> {
    let mut lp = LegacyLogprobs::default();
    let Some(&first) = ids.first() else {
        return Ok(lp);
    };
    let first = host.detokenize(model, &[first])?;
    let mut chars = first.chars().count() as u32;
    lp.tokens.push(first);
    lp.token_logprobs.push(None);
    lp.top_logprobs.push(None);
    lp.text_offset.push(0);
    for t in host.score(model, ids, k)? {
        lp.text_offset.push(chars);
        chars += t.sampled.text.chars().count() as u32;
        lp.tokens.push(t.sampled.text);
        lp.token_logprobs.push(Some(t.sampled.logprob));
        lp.top_logprobs.push(Some(
            t.top.into_iter().map(|a| (a.text, a.logprob)).collect(),
        ));
    }
    Ok(lp)
}

/// The host's names for what a legacy request became, as its request parameters (a prompt
/// is `prompt` here, whether the host called it `prompt` or scored it as `tokens`).
const LEGACY_PARAMS: [(&str, &str); 3] = [
    ("tokens", "prompt"),
    ("max-tokens", "max_tokens"),
    ("top-logprobs", "logprobs"),
];

/// Runs one legacy completion request the way the first-party plugin does.
pub fn complete<C: Chat + ?Sized>(
    chat: &C,
    request: Request,
    host: &dyn Host,
) -> Result<(), Error> {
    run(chat, request, host).map_err(|e| e.naming(&LEGACY_PARAMS).naming(&crate::SAMPLING_PARAMS))
}

fn run<C: Chat + ?Sized>(chat: &C, request: Request, host: &dyn Host) -> Result<(), Error> {
    if request.method != "POST" {
        return Err(invalid_request("Only POST is allowed here", None));
    }
    let plan = LegacyPlan::parse(&request.body)?;
    let cap = crate::limits::max_sequences(host);
    let sequences = plan.prompts.len() as u64 * u64::from(plan.best_of);
    if sequences > u64::from(cap) {
        return Err(invalid_request(
            &format!(
                "{} prompts × best_of {} is {sequences} sequences; at most {cap} per request",
                plan.prompts.len(),
                plan.best_of
            ),
            Some(if plan.prompts.len() > 1 {
                "prompt"
            } else {
                "best_of"
            }),
        ));
    }
    let info = host.describe_model(&plan.model)?;
    if plan.suffix.is_some() && !has_fim(host, &plan.model)? {
        return Err(invalid_request(
            &format!(
                "suffix needs fill-in-the-middle, and the tokenizer of `{}` has no <fim_prefix>/<fim_suffix>/<fim_middle> tokens",
                plan.model
            ),
            Some("suffix"),
        ));
    }
    let mut prompts = Vec::with_capacity(plan.prompts.len());
    let mut total = 0u64;
    // A text prompt starts with the model's BOS when its tokenizer adds one (Gemma, Llama 3),
    // as llama.cpp's server does; token-id prompts are taken as given.
    let prefix = host.prompt_prefix(&plan.model)?;
    let start = |ids: Vec<u32>| {
        if prefix.is_empty() || ids.starts_with(&prefix) {
            ids
        } else {
            [prefix.as_slice(), &ids].concat()
        }
    };
    for p in &plan.prompts {
        let (ids, text) = match (p, &plan.suffix) {
            (PromptInput::Text(t), Some(suffix)) => {
                let fim = format!("<fim_prefix>{t}<fim_suffix>{suffix}<fim_middle>");
                (start(host.tokenize(&plan.model, &fim, true)?), t.clone())
            }
            (PromptInput::Ids(_), Some(_)) => {
                return Err(invalid_request(
                    "suffix needs the prompt as text",
                    Some("suffix"),
                ));
            }
            (PromptInput::Text(t), None) => {
                (start(host.tokenize(&plan.model, t, true)?), t.clone())
            }
            (PromptInput::Ids(ids), None) => {
                let text = if plan.echo {
                    host.detokenize(&plan.model, ids)?
                } else {
                    String::new()
                };
                (ids.clone(), text)
            }
        };
        total += ids.len() as u64;
        crate::limits::check_prompt_tokens(host, total, "prompt")?;
        prompts.push((ids, text));
    }
    // best_of ranks by mean logprob, so it needs the sampled tokens' logprobs.
    let top_logprobs = plan.logprobs.or((plan.best_of > plan.n).then_some(0));
    let mut jobs = Vec::new();
    for (p, (ids, text)) in prompts.iter().enumerate() {
        // With echo and logprobs, the prompt's own tokens come first in the logprobs.
        let echoed_logprobs = match plan.logprobs {
            Some(k) if plan.echo => prompt_logprobs(host, &plan.model, ids, k)?,
            _ => LegacyLogprobs::default(),
        };
        for j in 0..plan.best_of {
            let k = p as u64 * u64::from(plan.best_of) + u64::from(j);
            let mut sampling = plan.sampling.clone();
            sampling.seed = sampling.seed.map(|s| s.wrapping_add(k));
            let generation = if plan.max_tokens == 0 {
                None
            } else {
                Some(host.generate(&GenerateRequest {
                    model: plan.model.clone(),
                    prompt: ids.clone(),
                    max_tokens: Some(plan.max_tokens),
                    sampling,
                    stop: plan.stop.clone(),
                    top_logprobs,
                })?)
            };
            let echoed = if plan.echo {
                text.clone()
            } else {
                String::new()
            };
            // Offsets of generated tokens follow the echoed text, however its tokens split.
            jobs.push(Job {
                prompt: p,
                generation,
                chars: echoed.chars().count() as u32,
                text: echoed,
                logprobs: echoed_logprobs.clone(),
                logprob_sum: 0.0,
                finish: None,
                completion_tokens: 0,
            });
        }
    }
    if let Some(user) = &plan.user {
        cinder_sdk::debug(&format!("request {} for user {user}", request.request_id));
    }
    let prompt_tokens = prompts.iter().map(|(ids, _)| ids.len() as u32).sum();
    let shell = Completion {
        id: format!("cmpl-{}", request.request_id),
        object: "text_completion".into(),
        created: cinder_sdk::unix_time(),
        model: plan.model.clone(),
        system_fingerprint: info.fingerprint,
        choices: Vec::new(),
        usage: None,
    };
    if plan.stream {
        stream(chat, &plan, shell, jobs, prompt_tokens, host)
    } else {
        aggregate(chat, &plan, shell, jobs, prompt_tokens, host)
    }
}

fn aggregate<C: Chat + ?Sized>(
    chat: &C,
    plan: &LegacyPlan,
    mut response: Completion,
    mut jobs: Vec<Job>,
    prompt_tokens: u32,
    host: &dyn Host,
) -> Result<(), Error> {
    // Every job is read as its events come (whichever first), so all run side by side.
    let mut running: Vec<(usize, Box<dyn Generation>)> = Vec::new();
    for (k, job) in jobs.iter_mut().enumerate() {
        match job.generation.take() {
            Some(g) => running.push((k, g)),
            // max_tokens 0: nothing to generate.
            None => job.finish = Some("length".into()),
        }
    }
    let mut fan = FanIn::default();
    while !running.is_empty() {
        let (at, event) = fan.next(host, &running, |(_, g)| &**g);
        let k = running[at].0;
        let job = &mut jobs[k];
        match event? {
            Some(Event::Delta(d)) => {
                job.absorb(chat, k as u32, d, plan.logprobs);
                continue;
            }
            Some(Event::Finished(f)) => {
                job.finish = Some(crate::finish_reason(f.reason));
                job.completion_tokens = f.usage.completion_tokens;
            }
            None => {
                return Err(Error::Internal(
                    "the generation ended without finishing".into(),
                ));
            }
        }
        running.remove(at);
        fan.removed(at);
    }
    let completion_tokens = jobs.iter().map(|j| j.completion_tokens).sum();
    for p in 0..plan.prompts.len() {
        let mut candidates: Vec<&Job> = jobs.iter().filter(|j| j.prompt == p).collect();
        if plan.best_of > plan.n {
            candidates.sort_by(|a, b| b.mean_logprob().total_cmp(&a.mean_logprob()));
        }
        for (rank, job) in candidates.into_iter().take(plan.n as usize).enumerate() {
            response.choices.push(CompletionChoice {
                text: job.text.clone(),
                index: p as u32 * plan.n + rank as u32,
                logprobs: plan.logprobs.map(|_| job.logprobs.clone()),
                finish_reason: job.finish.clone(),
            });
        }
    }
    response.usage = Some(Some(Usage::new(prompt_tokens, completion_tokens)));
    host.respond_json(200, &response)
}

fn stream<C: Chat + ?Sized>(
    chat: &C,
    plan: &LegacyPlan,
    shell: Completion,
    mut jobs: Vec<Job>,
    prompt_tokens: u32,
    host: &dyn Host,
) -> Result<(), Error> {
    // With include_usage every chunk carries `usage: null`, and one last chunk the numbers.
    let usage_field = plan.include_usage.then_some(None);
    let chunk = |index: u32, text: String, logprobs, finish| Completion {
        choices: vec![CompletionChoice {
            text,
            index,
            logprobs,
            finish_reason: finish,
        }],
        usage: usage_field,
        ..shell.clone()
    };
    // best_of == n here (checked in the plan), so job k is choice k.
    if plan.echo {
        for (k, job) in jobs.iter().enumerate() {
            let logprobs = plan.logprobs.map(|_| job.logprobs.clone());
            host.send_json(&chunk(k as u32, job.text.clone(), logprobs, None))?;
        }
    }
    // Whichever job has an event is streamed next: the choices stream side by side.
    let mut running: Vec<(usize, Box<dyn Generation>)> = Vec::new();
    for (k, job) in jobs.iter_mut().enumerate() {
        match job.generation.take() {
            Some(g) => running.push((k, g)),
            // max_tokens 0: nothing to generate.
            None => host.send_json(&chunk(k as u32, String::new(), None, Some("length".into())))?,
        }
    }
    let mut fan = FanIn::default();
    while !running.is_empty() {
        let (at, event) = fan.next(host, &running, |(_, g)| &**g);
        let k = running[at].0;
        let index = k as u32;
        let job = &mut jobs[k];
        match event? {
            Some(Event::Delta(d)) => {
                let (text, lp) = job.absorb(chat, index, d, plan.logprobs);
                if !text.is_empty() || !lp.tokens.is_empty() {
                    host.send_json(&chunk(index, text, plan.logprobs.map(|_| lp), None))?;
                }
                continue;
            }
            Some(Event::Finished(f)) => {
                job.completion_tokens = f.usage.completion_tokens;
                host.send_json(&chunk(
                    index,
                    String::new(),
                    None,
                    Some(crate::finish_reason(f.reason)),
                ))?;
            }
            None => {
                return Err(Error::Internal(
                    "the generation ended without finishing".into(),
                ));
            }
        }
        running.remove(at);
        fan.removed(at);
    }
    if plan.include_usage {
        let completion_tokens = jobs.iter().map(|j| j.completion_tokens).sum();
        let last = Completion {
            usage: Some(Some(Usage::new(prompt_tokens, completion_tokens))),
            ..shell
        };
        host.send_json(&last)?;
    }
    Ok(())
}
