//! What the server holds for an embedding model ([`EmbedHandle`]), whichever kind serves it:
//!
//! - a sentence-transformers model gets one thread that batches concurrent requests: every
//!   input waiting when the thread comes round goes into the next forward passes, sorted by
//!   length and cut into batches under a padded-token budget (so one long input does not pad
//!   a hundred short ones), and each request gets its vectors back in its own order; live
//!   requests are served before the background ones (a batch's) that arrived with them;
//! - a chat model declared an embedder hands its requests to its own engine thread
//!   (`llama_embed.rs`), which interleaves them with generation.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc as std_mpsc;

use tracing::{debug, warn};

use crate::embed::embedder::Embedder;
use crate::engine::thread::EngineHandle;
use crate::error::{CoreError, catch_panic};
use crate::kernels::pools::{LiveRequest, as_background, live_pass};

type Reply = tokio::sync::oneshot::Sender<Result<Vec<Vec<f32>>, CoreError>>;

struct Job {
    inputs: Vec<Vec<u32>>,
    reply: Reply,
    /// A batch's request: embedded after the live ones that arrived with it.
    background: bool,
}

/// Where an embedding model's requests go.
#[derive(Clone)]
enum Route {
    /// The batching thread of a sentence-transformers model.
    Encoder {
        tx: std_mpsc::Sender<Job>,
        tokenizer: Arc<tokenizers::Tokenizer>,
        /// The same tokenizer without truncation: where every token of a whole text lies.
        spans: Arc<tokenizers::Tokenizer>,
        /// The model's live requests in flight ([`LiveRequest`]).
        own_live: Arc<AtomicUsize>,
    },
    /// A chat model's engine thread.
    Chat(EngineHandle),
}

/// What the rest of the server holds for an embedding model.
#[derive(Clone)]
pub struct EmbedHandle {
    route: Route,
    /// Tokens per input, special tokens included.
    max_tokens: usize,
    vocab_size: usize,
}

impl EmbedHandle {
    /// Starts the thread that owns `embedder`.
    pub fn spawn(name: &str, embedder: Embedder) -> Result<Self, CoreError> {
        let (tx, rx) = std_mpsc::channel::<Job>();
        let mut spans = embedder.tokenizer().clone();
        spans.with_truncation(None).map_err(|e| {
            CoreError::Tokenizer(format!("cannot turn the tokenizer's truncation off: {e}"))
        })?;
        let handle = EmbedHandle {
            route: Route::Encoder {
                tx,
                tokenizer: Arc::new(embedder.tokenizer().clone()),
                spans: Arc::new(spans),
                own_live: embedder.own_live(),
            },
            max_tokens: embedder.max_tokens(),
            vocab_size: embedder.vocab_size(),
        };
        std::thread::Builder::new()
            .name(format!("embed-{name}"))
            .spawn(move || run(&embedder, &rx))
            .map_err(|e| CoreError::Backend(format!("cannot start the embedding thread: {e}")))?;
        Ok(handle)
    }

    /// Embeddings from a chat model: mean-pooled, final-normed hidden states, any input up
    /// to the context length, run on the model's engine thread.
    pub fn for_chat_model(engine: EngineHandle) -> Self {
        EmbedHandle {
            max_tokens: engine.context_length(),
            vocab_size: engine.tokenizer().vocab_size(),
            route: Route::Chat(engine),
        }
    }

    /// `text`'s ids with the model's special tokens, truncated to [`EmbedHandle::max_tokens`],
    /// and whether it was truncated.
    pub fn tokenize(&self, text: &str) -> Result<(Vec<u32>, bool), CoreError> {
        match &self.route {
            Route::Encoder { tokenizer, .. } => crate::embed::embedder::tokenize(tokenizer, text),
            Route::Chat(engine) => {
                // Plain text: control-token text is not special, as in a user message.
                let mut ids = engine.tokenizer().encode(text, false)?;
                let cut = ids.len() > self.max_tokens;
                ids.truncate(self.max_tokens);
                Ok((ids, cut))
            }
        }
    }

    /// Where each token of `text` lies in it (byte ranges, in order; no special tokens, no
    /// truncation): how a family cuts a long text into chunks of so many tokens, each a
    /// slice of the original. Only sentence-transformers models keep their tokens' places.
    pub fn token_spans(&self, text: &str) -> Result<Vec<(u32, u32)>, CoreError> {
        match &self.route {
            Route::Encoder { spans, .. } => {
                let enc = spans
                    .encode(text, false)
                    .map_err(|e| CoreError::Tokenizer(e.to_string()))?;
                Ok(enc
                    .get_offsets()
                    .iter()
                    .map(|&(a, b)| (a as u32, b as u32))
                    .collect())
            }
            Route::Chat(_) => Err(CoreError::Tokenizer(
                "token spans come from a sentence-transformers model's tokenizer, and this \
                 embedder is a chat model"
                    .into(),
            )),
        }
    }

    /// One vector per input, in order. Requests arriving together share forward passes, so
    /// each request's inputs are checked here: one bad input must not fail its neighbours.
    pub async fn embed(&self, inputs: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>, CoreError> {
        self.embed_as(inputs, false).await
    }

    /// [`EmbedHandle::embed`] for background work (a batch's request) when `background`:
    /// the batching thread serves the live requests waiting beside it first.
    pub async fn embed_as(
        &self,
        inputs: Vec<Vec<u32>>,
        background: bool,
    ) -> Result<Vec<Vec<f32>>, CoreError> {
        crate::embed::embedder::check_inputs(&inputs, self.max_tokens, self.vocab_size)?;
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        // Other models' batches sleep while a live request waits for its vectors.
        let _live = (!background).then(|| match &self.route {
            Route::Encoder { own_live, .. } => LiveRequest::new(own_live),
            Route::Chat(engine) => engine.live_request(),
        });
        match &self.route {
            Route::Encoder { tx, .. } => {
                let (reply, rx) = tokio::sync::oneshot::channel();
                tx.send(Job {
                    inputs,
                    reply,
                    background,
                })
                .map_err(|_| stopped())?;
                rx.await.map_err(|_| stopped())?
            }
            Route::Chat(engine) => engine.embed(inputs)?.await.map_err(|_| stopped())?,
        }
    }
}

fn stopped() -> CoreError {
    CoreError::Backend("the embedding engine for this model has stopped".into())
}

fn run(embedder: &Embedder, rx: &std_mpsc::Receiver<Job>) {
    let mut trim = crate::engine::memory::IdleTrim::default();
    // Background requests that arrived while background work was running.
    let mut deferred: Vec<Job> = Vec::new();
    loop {
        let mut jobs = std::mem::take(&mut deferred);
        if jobs.is_empty() {
            let first = match rx.try_recv() {
                Ok(job) => job,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
                Err(std_mpsc::TryRecvError::Empty) => {
                    // Out of work: a batch of 2048 inputs left large activations freed.
                    trim.idle();
                    match rx.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    }
                }
            };
            jobs.push(first);
        }
        while let Ok(job) = rx.try_recv() {
            jobs.push(job);
        }
        // Requesters that went away while waiting need no vectors.
        jobs.retain(|job| !job.reply.is_closed());
        let (background, live): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.background);
        if !live.is_empty() {
            serve(embedder, live, &mut || {});
        }
        if !background.is_empty() {
            // Between two of a batch's forward passes, live requests that came in are served
            // at once: a live request waits for one pass of background work at most.
            serve(embedder, background, &mut || {
                let mut live = Vec::new();
                while let Ok(job) = rx.try_recv() {
                    if job.background {
                        deferred.push(job);
                    } else if !job.reply.is_closed() {
                        live.push(job);
                    }
                }
                if !live.is_empty() {
                    serve(embedder, live, &mut || {});
                }
            });
        }
        trim.worked();
    }
}

/// Embeds every input of `jobs` in as few padded batches as the budget allows, calling
/// `between` before every forward pass but the first.
fn serve(embedder: &Embedder, jobs: Vec<Job>, between: &mut dyn FnMut()) {
    // (job, index in job, input), shortest first.
    let mut all: Vec<(usize, usize, &[u32])> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| {
            job.inputs
                .iter()
                .enumerate()
                .map(move |(i, v)| (j, i, &v[..]))
        })
        .collect();
    all.sort_by_key(|(_, _, v)| v.len());
    let mut results: Vec<Vec<Option<Vec<f32>>>> =
        jobs.iter().map(|j| vec![None; j.inputs.len()]).collect();
    let mut failed: Vec<Option<CoreError>> = vec![None; jobs.len()];
    let budget = embedder.batch_tokens();
    // A batch's requests only: the niced kernel threads.
    let background = jobs.iter().all(|j| j.background);
    let mut start = 0;
    while start < all.len() {
        if start > 0 {
            between();
        }
        // Grow the batch while its padded size (count × longest, the last one) fits.
        let mut end = start + 1;
        while end < all.len() && (end + 1 - start) * all[end].2.len() <= budget {
            end += 1;
        }
        let batch: Vec<Vec<u32>> = all[start..end].iter().map(|(_, _, v)| v.to_vec()).collect();
        debug!(
            inputs = batch.len(),
            longest = batch.last().map_or(0, Vec::len),
            "embedding batch"
        );
        let out = catch_panic(|| {
            if background {
                as_background(true, || embedder.embed(&batch))
            } else {
                live_pass(|| embedder.embed(&batch))
            }
        });
        match out {
            Ok(vectors) => {
                for ((j, i, _), v) in all[start..end].iter().zip(vectors) {
                    results[*j][*i] = Some(v);
                }
            }
            Err(e) => {
                warn!(error = %e, "embedding batch failed");
                for (j, _, _) in &all[start..end] {
                    failed[*j] = Some(e.clone());
                }
            }
        }
        start = end;
    }
    for ((job, result), failure) in jobs.into_iter().zip(results).zip(failed) {
        let answer = match failure {
            Some(e) => Err(e),
            None => Ok(result.into_iter().map(Option::unwrap_or_default).collect()),
        };
        // A requester that went away needs no answer.
        let _ = job.reply.send(answer);
    }
}
