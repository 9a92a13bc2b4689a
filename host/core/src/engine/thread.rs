//! The engine: one OS thread per loaded model that owns the weights and every running
//! sequence's KV cache, and talks to requests over channels.
//!
//! Each loop turn admits new sequences, then runs one step: one forward over every running
//! sequence at once (continuous batching): each decoding sequence contributes its last token,
//! and waiting prompts contribute chunks under a token budget (chunked prefill), so a long
//! prompt never stalls the streams already running and new requests join between steps.
//! A full event channel pauses a sequence; a closed one (client gone) cancels it at once and
//! frees its KV cache.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::engine::admission::{EngineLimits, Queue, Waiting};
use crate::engine::constraint::LazyGrammars;
use crate::engine::request::{GenEvent, GenerateRequest};
use crate::engine::sequence::Sequence;
use crate::error::{CoreError, catch_panic, contain, panic_message};
use crate::formats::tokenizer::Tokenizer;
use crate::kernels::pools::{LiveRequest, as_background, live_pass, preemptible};
use crate::models::kv_blocks::PrefixCache;
use crate::models::llama_embed::EmbedWork;
use crate::models::{KvCache, Llama};
use llguidance::Matcher;

mod score;
use score::ScoreJob;

/// Events buffered per request before the engine pauses that sequence.
const EVENT_BUFFER: usize = 32;
/// Alternatives per token the engine reports at most.
const MAX_ALTERNATIVES: u32 = 20;
/// Stop strings one sequence matches at most (each is checked after every token).
const MAX_STOPS: usize = 4;

pub(crate) struct Submission {
    pub(crate) request: GenerateRequest,
    pub(crate) events: mpsc::Sender<GenEvent>,
    matcher: Option<Matcher>,
    /// A live request, counted until its first token: other models' batches sleep meanwhile.
    live: Option<LiveRequest>,
}

/// What the engine thread is asked to do.
enum Job {
    Generate(Box<Submission>),
    Score(ScoreJob),
    Embed(EmbedWork),
}

/// Prompt tokens one step may take across all waiting prompts (chunked prefill): bounds how
/// long one step keeps the decoding sequences waiting.
const PREFILL_BUDGET: usize = 256;

/// The part of it background prompts (a batch's) may take: a live request that arrives while
/// one is read waits for a smaller step.
const BACKGROUND_PREFILL_BUDGET: usize = 64;

/// Where the vectors of [`EngineHandle::embed`] arrive.
pub(crate) type EmbedReceiver = tokio::sync::oneshot::Receiver<Result<Vec<Vec<f32>>, CoreError>>;

/// A cheap, cloneable way to reach a model's engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    tx: std_mpsc::Sender<Job>,
    tokenizer: Arc<Tokenizer>,
    context_length: usize,
    /// The model's hyper-parameters: what a request's adapter must fit, checked once at
    /// submission rather than at every step.
    config: Arc<crate::models::llama::LlamaConfig>,
    /// The vocabulary compiled for grammars, built by the first constrained request.
    grammars: Arc<LazyGrammars>,
    limits: EngineLimits,
    /// Sequences submitted and not admitted yet.
    waiting: Waiting,
    /// Set when live work is submitted: a background step running stops between layers.
    live_arrived: Arc<AtomicBool>,
    /// Background steps stopped so far.
    preemptions: Arc<AtomicU64>,
    /// This model's live requests before their first output ([`LiveRequest`]).
    own_live: Arc<AtomicUsize>,
}

impl EngineHandle {
    /// Starts the engine thread for `model`, keeping up to `prefix_bytes` of KV blocks for
    /// prompts that start like earlier ones (CPU path).
    pub fn spawn(
        name: &str,
        model: Llama,
        tokenizer: Arc<Tokenizer>,
        prefix_bytes: usize,
        limits: EngineLimits,
    ) -> Result<Self, CoreError> {
        let (tx, rx) = std_mpsc::channel();
        let context_length = model.config().context_length;
        let config = Arc::new(model.config().clone());
        let prefix = match &model {
            Llama::Cpu(m) if prefix_bytes > 0 => {
                Some(PrefixCache::new(m.cache_shape(), prefix_bytes))
            }
            _ => None,
        };
        let waiting = Waiting::default();
        let own_live = model.own_live();
        let live_arrived = Arc::new(AtomicBool::new(false));
        let preemptions = Arc::new(AtomicU64::new(0));
        let queue = Queue::new(model.config());
        let engine = Engine {
            prefix,
            model,
            tokenizer: tokenizer.clone(),
            running: Vec::new(),
            embeds: VecDeque::new(),
            queue,
            limits,
            waiting: waiting.clone(),
            trim: Default::default(),
            live_arrived: live_arrived.clone(),
            preempted: false,
            preemptions: preemptions.clone(),
            logits: Vec::new(),
        };
        std::thread::Builder::new()
            .name(format!("engine-{name}"))
            .spawn(move || engine.serve(&rx))
            .map_err(|e| CoreError::Backend(format!("cannot start the engine thread: {e}")))?;
        Ok(EngineHandle {
            tx,
            tokenizer,
            context_length,
            config,
            grammars: Arc::new(LazyGrammars::new(limits.grammar)),
            limits,
            waiting,
            live_arrived,
            preemptions,
            own_live,
        })
    }

    /// Counts a live request of this model until the returned guard is dropped.
    pub(crate) fn live_request(&self) -> LiveRequest {
        LiveRequest::new(&self.own_live)
    }

    /// Live requests of this model that have not had their first token (or vectors) yet:
    /// while there are any, other models' background kernel work sleeps.
    pub fn live_waiting(&self) -> usize {
        self.own_live.load(Ordering::Relaxed)
    }

    /// How many background steps have stopped for live work so far.
    pub fn preemptions(&self) -> u64 {
        self.preemptions.load(Ordering::Relaxed)
    }

    /// `prompt` is not empty, in the vocabulary, and leaves `room` positions of the context.
    fn check_prompt(&self, prompt: &[u32], room: usize) -> Result<(), CoreError> {
        if prompt.is_empty() {
            return Err(CoreError::EmptyPrompt);
        }
        let vocab = self.tokenizer.vocab_size();
        if let Some(&token) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(CoreError::OutOfVocabulary { token });
        }
        if prompt.len() + room > self.context_length {
            return Err(CoreError::ContextOverflow {
                tokens: prompt.len(),
                limit: self.context_length,
            });
        }
        Ok(())
    }

    /// Queues a generation. Events arrive on the returned channel; dropping it cancels.
    pub fn submit(
        &self,
        mut request: GenerateRequest,
    ) -> Result<mpsc::Receiver<GenEvent>, CoreError> {
        request.sampling.validate(self.tokenizer.vocab_size())?;
        if let Some(adapter) = &request.adapter {
            adapter.check_shapes(&self.config)?;
        }
        // Room for at least one generated token.
        self.check_prompt(&request.prompt, 1)?;
        if request.max_tokens == Some(0) {
            return Err(CoreError::NoTokensAllowed);
        }
        if let Some(asked) = request.top_logprobs.filter(|&k| k > MAX_ALTERNATIVES) {
            return Err(CoreError::TooManyAlternatives {
                asked,
                max: MAX_ALTERNATIVES,
            });
        }
        // An empty stop string would match everywhere and end every answer before it began:
        // it stops nothing (llama.cpp and vLLM ignore it too), so the sequence never sees it.
        request.stop.retain(|s| !s.is_empty());
        if request.stop.len() > MAX_STOPS {
            return Err(CoreError::TooManyStops {
                count: request.stop.len(),
                max: MAX_STOPS,
            });
        }
        // Compiled here, on the caller's thread: a schema the engine cannot support is the
        // client's 400 before anything runs, and the engine thread never waits on it.
        let matcher = match &request.constraint {
            Some(c) => Some(self.grammars.get(&self.tokenizer)?.matcher(c)?),
            None => None,
        };
        let (events, rx) = mpsc::channel(EVENT_BUFFER);
        let live = !request.background;
        let submission = Submission {
            live: live.then(|| self.live_request()),
            request,
            events,
            matcher,
        };
        self.waiting.enter(self.limits.max_waiting, || {
            self.tx.send(Job::Generate(Box::new(submission))).is_ok()
        })?;
        if live {
            self.live_arrived.store(true, Ordering::Relaxed);
        }
        Ok(rx)
    }

    /// Queues embedding `inputs` (each non-empty, in the vocabulary and within the context:
    /// checked by the caller): one mean-pooled, unit-length vector per input, in order.
    pub(crate) fn embed(&self, inputs: Vec<Vec<u32>>) -> Result<EmbedReceiver, CoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Job::Embed(EmbedWork::new(inputs, reply)))
            .map_err(|_| CoreError::EngineStopped)?;
        self.live_arrived.store(true, Ordering::Relaxed);
        Ok(rx)
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// The model's context length in tokens.
    pub fn context_length(&self) -> usize {
        self.context_length
    }
}

struct Engine {
    model: Llama,
    /// KV blocks of earlier sequences, by prefix (CPU path).
    prefix: Option<PrefixCache>,
    tokenizer: Arc<Tokenizer>,
    running: Vec<Sequence>,
    /// Embedding requests, served one forward pass per loop turn, oldest first.
    embeds: VecDeque<EmbedWork>,
    /// Sequences submitted but not admitted: they hold no cache yet.
    queue: Queue,
    limits: EngineLimits,
    waiting: Waiting,
    trim: crate::engine::memory::IdleTrim,
    /// The handles' [`EngineHandle::live_arrived`].
    live_arrived: Arc<AtomicBool>,
    /// The last background step was stopped: the next one runs to its end, so a steady
    /// stream of live requests cannot starve a batch.
    preempted: bool,
    preemptions: Arc<AtomicU64>,
    /// The last step's logits, one vocabulary row per sequence: kept from step to step
    /// (a large vocabulary's rows are megabytes), released when work stops.
    logits: Vec<f32>,
}

impl Engine {
    /// Runs the loop until every handle is dropped. A panic that escapes the per-sequence
    /// guards (a bug in admission, batching, the prefix cache) fails the work in flight and
    /// starts the loop again with the same weights, instead of leaving the model dead until a
    /// restart.
    fn serve(mut self, rx: &std_mpsc::Receiver<Job>) {
        loop {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(rx))) {
                Ok(()) => return,
                Err(panic) => {
                    let what = panic_message(&*panic);
                    tracing::error!(panic = %what, running = self.running.len(), "the engine loop panicked; failing the work in flight and starting again");
                    self.recover(&what);
                }
            }
        }
    }

    /// Fails every sequence and embedding in flight and forgets shared state a panic may
    /// have left half-updated.
    fn recover(&mut self, what: &str) {
        let error = || {
            CoreError::Backend(format!(
                "the engine restarted after an internal error: {what}"
            ))
        };
        for seq in self.running.drain(..) {
            let _ = seq.events.try_send(GenEvent::Failed(error()));
        }
        for work in self.embeds.drain(..) {
            work.fail(error());
        }
        if let Some(prefix) = &mut self.prefix {
            prefix.clear();
        }
    }

    fn run(&mut self, rx: &std_mpsc::Receiver<Job>) {
        loop {
            if self.running.is_empty() && self.embeds.is_empty() && self.queue.is_empty() {
                self.logits = Vec::new();
                self.trim.idle();
                match rx.recv() {
                    Ok(job) => self.take(job),
                    Err(_) => return, // every handle dropped: shutdown
                }
            }
            // Cleared before the channel is read: live work sent after this stops the next
            // background step, live work sent before it is taken below.
            self.live_arrived.store(false, Ordering::Relaxed);
            while let Ok(job) = rx.try_recv() {
                self.take(job);
            }
            self.admit_waiting();
            self.trim.worked();
            let progressed = self.step();
            self.queue.note_progress(progressed);
            self.share_blocks();
            self.running.retain(|s| !s.done);
            let embedded = self.embed_pass();
            if !progressed && !embedded {
                // Every client is slow: wait a little instead of spinning on full channels.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }

    /// Offers the blocks sequences filled in the last step to the prefix cache.
    fn share_blocks(&mut self) {
        let Some(prefix) = &mut self.prefix else {
            return;
        };
        for seq in &mut self.running {
            if let KvCache::Cpu(c) = &mut seq.cache {
                let adapted = seq.request.adapter.is_some();
                for block in c.take_fresh() {
                    // An adapted sequence's keys and values are not the base model's.
                    if !adapted {
                        prefix.insert(block);
                    }
                }
            }
        }
    }

    fn take(&mut self, job: Job) {
        match job {
            Job::Generate(s) => self.queue.push(*s),
            // Scoring runs to the end at once: running sequences wait one prefill's time.
            Job::Score(job) => {
                let result = catch_panic(|| self.score(&job.tokens, job.top));
                let _ = job.reply.send(result);
            }
            Job::Embed(work) => self.embeds.push_back(work),
        }
    }

    /// One forward pass of the oldest embedding request; false if there is none.
    fn embed_pass(&mut self) -> bool {
        let Some(work) = self.embeds.front_mut() else {
            return false;
        };
        if work.pass(&self.model) {
            self.embeds.pop_front();
        }
        true
    }

    /// Admits waiting sequences while they fit under the limits.
    fn admit_waiting(&mut self) {
        while let Some(s) = self.queue.next(&self.running, &self.limits, &self.waiting) {
            self.admit(s);
        }
    }

    fn admit(&mut self, s: Submission) {
        #[cfg(feature = "fault-injection")]
        if s.request
            .stop
            .iter()
            .any(|x| x == crate::FAULT_IN_ADMISSION)
        {
            panic!("fault injected in admission");
        }
        let ctx = self.model.config().context_length;
        let room = ctx.saturating_sub(s.request.prompt.len()) as u32;
        let max_tokens = s.request.max_tokens.map_or(room, |m| m.min(room));
        let (cache, reused) = match self
            .prefix
            .as_mut()
            .filter(|_| s.request.adapter.is_none())
            .and_then(|p| p.lookup(&s.request.prompt))
        {
            Some(r) => (KvCache::Cpu(r.cache), r.positions),
            None => (self.model.new_cache(), 0),
        };
        debug!(
            request = %s.request.label,
            prompt_tokens = s.request.prompt.len(),
            reused, max_tokens, "sequence admitted"
        );
        let reserved = self.queue.reserve(&s.request);
        let mut seq = Sequence::start(
            s.request, s.events, s.matcher, cache, reused, max_tokens, reserved,
        );
        seq.live = s.live;
        self.running.push(seq);
    }

    /// Advances every sequence that is not paused (one token, or a chunk of its prompt) in
    /// one batched forward; false if none could move.
    fn step(&mut self) -> bool {
        // Who runs: every decoding sequence, then prompt chunks while the budget lasts.
        let mut plan: Vec<(usize, Input)> = Vec::new();
        let mut waiting = Vec::new();
        for (i, seq) in self.running.iter_mut().enumerate() {
            seq.flush();
            if seq.done || !seq.outbox.is_empty() {
                continue;
            }
            if seq.events.is_closed() {
                debug!(request = %seq.request.label, "client gone; sequence cancelled");
                seq.done = true;
                continue;
            }
            if seq.last.is_some() {
                plan.push((i, Input::Decode));
            } else {
                waiting.push(i);
            }
        }
        // A live prompt being read pauses background sequences for that step: its time to
        // first token does not pay for a batch's work.
        let live_prompt = waiting.iter().any(|&i| !self.running[i].request.background);
        if live_prompt {
            plan.retain(|(i, _)| !self.running[*i].request.background);
            waiting.retain(|&i| !self.running[i].request.background);
        }
        let mut budget = PREFILL_BUDGET;
        let mut background_budget = BACKGROUND_PREFILL_BUDGET;
        for i in waiting {
            let seq = &self.running[i];
            let background = seq.request.background;
            let mut n = (seq.request.prompt.len() - seq.prefilled).min(budget);
            if background {
                n = n.min(background_budget);
                background_budget -= n;
            }
            if n == 0 {
                if budget == 0 {
                    break;
                }
                continue;
            }
            budget -= n;
            plan.push((i, Input::Prompt(seq.prefilled..seq.prefilled + n)));
        }
        if plan.is_empty() {
            return false;
        }
        plan.sort_by_key(|(i, _)| *i);
        // A step only a batch waits on runs on the niced kernel threads.
        let background = plan
            .iter()
            .all(|(i, _)| self.running[*i].request.background);
        let live_arrived = self.live_arrived.clone();
        let preemptible_step = background && !self.preempted;

        let result = {
            let mut items: Vec<(&[u32], &mut KvCache)> = Vec::with_capacity(plan.len());
            let mut adapters = Vec::with_capacity(plan.len());
            let mut next = plan.iter().peekable();
            for (i, seq) in self.running.iter_mut().enumerate() {
                let Some((j, input)) = next.peek() else { break };
                if *j != i {
                    continue;
                }
                let Sequence {
                    request,
                    cache,
                    last,
                    ..
                } = seq;
                let tokens: &[u32] = match (input, last) {
                    (Input::Decode, Some(t)) => std::slice::from_ref(t),
                    (Input::Prompt(r), _) => &request.prompt[r.clone()],
                    (Input::Decode, None) => &[],
                };
                items.push((tokens, cache));
                adapters.push(request.adapter.as_deref());
                next.next();
            }
            // A bug in a kernel must fail this step's requests, not stop the engine for
            // every later one; the failed sequences (and their caches) are dropped below.
            catch_panic(|| {
                let logits = &mut self.logits;
                // Without adapters, the plain path (no per-item bookkeeping).
                if adapters.iter().all(Option::is_none) {
                    adapters.clear();
                }
                let forward = || {
                    self.model
                        .forward_adapted_into(&mut items, &adapters, logits)
                };
                match (background, preemptible_step) {
                    // Stops between layers for a live request that comes in meanwhile.
                    (true, true) => as_background(true, || preemptible(&live_arrived, forward)),
                    (true, false) => as_background(true, forward),
                    (false, _) => live_pass(forward),
                }
            })
        };
        let ctx = self.model.config().context_length;
        match result {
            // Nothing changed: the step runs again once the live work has gone first.
            Err(CoreError::Preempted) => {
                self.preempted = true;
                self.preemptions.fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => {
                if background {
                    self.preempted = false;
                }
                let vocab = self.logits.len() / plan.len().max(1);
                let rows = self.logits.chunks_exact_mut(vocab.max(1));
                for ((i, input), logits) in plan.into_iter().zip(rows) {
                    let seq = &mut self.running[i];
                    if let Input::Prompt(r) = input {
                        seq.prefilled = r.end;
                        if r.end < seq.request.prompt.len() {
                            continue; // more prompt to go: these logits are not needed
                        }
                    }
                    // Masking, sampling, detokenizing, stop matching: a bug there fails this
                    // sequence only.
                    let advanced = contain("generating a token", || {
                        seq.advance(logits, &self.tokenizer, ctx);
                        Ok(())
                    });
                    // Its first token is out: other models' batches may go on.
                    seq.live = None;
                    if let Err(e) = advanced {
                        seq.outbox.push_back(GenEvent::Failed(e));
                        seq.finished = true;
                    }
                    seq.flush();
                }
            }
            Err(e) => {
                warn!(error = %e, sequences = plan.len(), "forward failed");
                for (i, _) in plan {
                    let seq = &mut self.running[i];
                    seq.outbox.push_back(GenEvent::Failed(e.clone()));
                    seq.finished = true;
                    seq.flush();
                }
            }
        }
        true
    }
}

/// What a sequence feeds in one step.
enum Input {
    /// Its last sampled token.
    Decode,
    /// These positions of its prompt.
    Prompt(std::ops::Range<usize>),
}
