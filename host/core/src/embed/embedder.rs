//! A sentence-transformers model folder as one embedder: its tokenizer (with the folder's
//! own truncation length, and no padding), the BERT encoder, the pooling its `1_Pooling`
//! config names, and L2 normalisation when `modules.json` lists a Normalize module.
//!
//! The folder's `tokenizer.json` may carry padding and truncation settings of its own
//! (all-MiniLM-L6-v2's says pad to 128, truncate at 128); sentence-transformers ignores them
//! in favour of `sentence_bert_config.json`'s `max_seq_length` (256), and so does this.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use serde::Deserialize;

use crate::error::CoreError;
use crate::models::backend::{BackendKind, BackendPreference, Target, select};
use crate::models::bert::{Bert, BertConfig};
use crate::models::cpu_bert::CpuBert;

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// The encoder, on burn (GPUs, the flex cross-check) or on the CPU's own path.
enum Encoder {
    Burn(Box<Bert>),
    Cpu(Box<CpuBert>),
}

impl Encoder {
    fn config(&self) -> &BertConfig {
        match self {
            Encoder::Burn(b) => b.config(),
            Encoder::Cpu(b) => b.config(),
        }
    }
}

/// A loaded sentence embedder.
pub struct Embedder {
    bert: Encoder,
    tokenizer: tokenizers::Tokenizer,
    /// Tokens per input, special tokens included.
    max_tokens: usize,
    normalize: bool,
}

fn read_json<T: serde::de::DeserializeOwned>(path: PathBuf) -> Result<T, CoreError> {
    let bytes =
        std::fs::read(&path).map_err(|e| CoreError::Weights(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CoreError::Weights(format!("{}: {e}", path.display())))
}

impl Embedder {
    /// Loads a sentence-transformers folder onto the backend `pref` selects: the CPU's own
    /// path on `threads` threads (all cores when `None`), or burn (`flex`, a GPU).
    pub fn load(
        dir: &Path,
        pref: BackendPreference,
        threads: Option<usize>,
    ) -> Result<(Self, BackendKind), CoreError> {
        let modules: Vec<Module> = read_json(dir.join("modules.json"))?;
        let mut normalize = false;
        let mut pooling_dir = None;
        for m in &modules {
            match m.kind.rsplit('.').next().unwrap_or_default() {
                "Transformer" => {}
                "Pooling" => pooling_dir = Some(dir.join(&m.path)),
                "Normalize" => normalize = true,
                other => {
                    return Err(CoreError::Weights(format!(
                        "sentence-transformers module `{other}` is not supported"
                    )));
                }
            }
        }
        let pooling: PoolingConfig = read_json(
            pooling_dir
                .ok_or_else(|| CoreError::Weights("modules.json lists no Pooling module".into()))?
                .join("config.json"),
        )?;
        if !pooling.pooling_mode_mean_tokens
            || pooling.pooling_mode_cls_token
            || pooling.pooling_mode_max_tokens
            || pooling.pooling_mode_mean_sqrt_len_tokens
        {
            return Err(CoreError::Weights(
                "only mean pooling over the tokens is supported".into(),
            ));
        }
        let (bert, kind) = match select(pref)? {
            Target::Cpu => {
                let threads = threads.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
                });
                (
                    Encoder::Cpu(Box::new(CpuBert::load(dir, threads)?)),
                    BackendKind::Cpu,
                )
            }
            Target::Burn(device, kind) => {
                (Encoder::Burn(Box::new(Bert::load(dir, &device)?)), kind)
            }
        };
        let st: SentenceBertConfig =
            read_json(dir.join("sentence_bert_config.json")).unwrap_or(SentenceBertConfig {
                max_seq_length: None,
            });
        let max_tokens = st
            .max_seq_length
            .unwrap_or(bert.config().max_position_embeddings)
            .min(bert.config().max_position_embeddings);
        let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| CoreError::Weights(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| CoreError::Weights(format!("tokenizer.json truncation: {e}")))?;
        Ok((
            Embedder {
                bert,
                tokenizer,
                max_tokens,
                normalize,
            },
            kind,
        ))
    }

    /// The vector length.
    pub fn dimensions(&self) -> usize {
        self.bert.config().hidden_size
    }

    /// Tokens per input (special tokens included); longer text is truncated to this.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// How many (padded) tokens one forward pass should take. The CPU path is fastest per
    /// token at a few hundred (measured: 32 sentences of 12 tokens ran 1.4× faster per
    /// sentence than 256); burn's backends, GPUs above all, want large batches.
    pub(crate) fn batch_tokens(&self) -> usize {
        match self.bert {
            Encoder::Cpu(_) => 512,
            Encoder::Burn(_) => 8192,
        }
    }

    /// Whether vectors come out with unit length (a Normalize module).
    pub fn normalized(&self) -> bool {
        self.normalize
    }

    /// The encoder's `model_type` (`bert`).
    pub fn architecture(&self) -> &str {
        &self.bert.config().model_type
    }

    /// Token ids the vocabulary has.
    pub fn vocab_size(&self) -> usize {
        self.bert.config().vocab_size
    }

    pub(crate) fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }

    /// `text`'s token ids with the model's special tokens, truncated to
    /// [`Embedder::max_tokens`], and whether it was truncated.
    pub fn tokenize(&self, text: &str) -> Result<(Vec<u32>, bool), CoreError> {
        tokenize(&self.tokenizer, text)
    }

    /// The counter its engine keeps its live requests in (a fresh one off the CPU path,
    /// where no background kernel work waits on it).
    pub(crate) fn own_live(&self) -> Arc<AtomicUsize> {
        match &self.bert {
            Encoder::Cpu(b) => b.own_live(),
            Encoder::Burn(_) => Arc::default(),
        }
    }

    /// One vector per input (token ids as [`Embedder::tokenize`] gives them), in one batch.
    pub fn embed(&self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, CoreError> {
        check_inputs(inputs, self.max_tokens, self.vocab_size())?;
        let mut out = match &self.bert {
            Encoder::Burn(b) => b.mean_pooled(inputs)?,
            Encoder::Cpu(b) => b.mean_pooled(inputs),
        };
        if self.normalize {
            for v in &mut out {
                *v = unit_length(v.iter().map(|x| f64::from(*x)));
            }
        }
        Ok(out)
    }
}

/// `v` scaled to unit length as sentence-transformers' `F.normalize` does: divided by
/// max(‖v‖, 1e-12), in f64.
pub(crate) fn unit_length(v: impl Iterator<Item = f64> + Clone) -> Vec<f32> {
    let inv = 1.0 / v.clone().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.map(|x| (x * inv) as f32).collect()
}

/// `text` through an embedder's tokenizer (special tokens added, truncation as configured).
pub(crate) fn tokenize(
    tokenizer: &tokenizers::Tokenizer,
    text: &str,
) -> Result<(Vec<u32>, bool), CoreError> {
    let enc = tokenizer
        .encode(text, true)
        .map_err(|e| CoreError::Tokenizer(e.to_string()))?;
    Ok((enc.get_ids().to_vec(), !enc.get_overflowing().is_empty()))
}

/// Each input has 1 to `max_tokens` ids, all inside the vocabulary: the caller's mistake
/// ([`CoreError::InputRejected`]) otherwise.
pub(crate) fn check_inputs(
    inputs: &[Vec<u32>],
    max_tokens: usize,
    vocab_size: usize,
) -> Result<(), CoreError> {
    for (i, input) in inputs.iter().enumerate() {
        if input.is_empty() || input.len() > max_tokens {
            return Err(CoreError::InputRejected {
                index: i,
                problem: format!(
                    "has {} tokens; this model takes 1 to {max_tokens}",
                    input.len()
                ),
                too_long: !input.is_empty(),
            });
        }
        if let Some(bad) = input.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(CoreError::InputRejected {
                index: i,
                problem: format!("has token id {bad}, outside the vocabulary"),
                too_long: false,
            });
        }
    }
    Ok(())
}
