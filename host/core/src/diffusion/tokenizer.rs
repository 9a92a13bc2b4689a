//! The CLIP tokenizer of a pipeline (`tokenizer/tokenizer.json`, read by the `tokenizers`
//! crate; a folder with only CLIP's `vocab.json` and `merges.txt`, as SD 1.x checkpoints ship,
//! gets the same tokenizer built the way transformers' converter builds it), with what the
//! pipeline does around it: start and end tokens, truncation to the model's length keeping
//! the end token, padding with the pad token.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::CoreError;

/// `tokenizer_config.json`'s fields this reads (a token is a string or an `AddedToken`
/// object with its `content`).
#[derive(Debug, Deserialize)]
struct TokenizerConfig {
    #[serde(default = "default_max")]
    model_max_length: usize,
    #[serde(default)]
    pad_token: Value,
    #[serde(default)]
    eos_token: Value,
}

fn token_text(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v["content"].as_str())
}

const START: &str = "<|startoftext|>";
const END: &str = "<|endoftext|>";

/// CLIP's tokenizer from `vocab.json` and `merges.txt`, as transformers' `CLIPConverter`
/// writes it: NFC, whitespace runs to one space, lowercase; CLIP's split then byte-level
/// pieces; BPE with `</w>` ending a word; start and end tokens around.
fn from_vocab(dir: &Path) -> Result<tokenizers::Tokenizer, CoreError> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| CoreError::Tokenizer(format!("{}: {e}", dir.join(name).display())))
    };
    let vocab: serde_json::Map<String, Value> = serde_json::from_str(&read("vocab.json")?)
        .map_err(|e| CoreError::Tokenizer(format!("vocab.json: {e}")))?;
    let merges_text = read("merges.txt")?;
    let merges: Vec<&str> = merges_text
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
        .collect();
    let id = |t: &str| {
        vocab
            .get(t)
            .and_then(Value::as_u64)
            .ok_or_else(|| CoreError::Tokenizer(format!("vocab.json has no {t}")))
    };
    let (start, end) = (id(START)?, id(END)?);
    let special = |t: &str, i: u64| {
        json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
               "normalized": true, "special": true})
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(START, start), special(END, end)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex":
                "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
             "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
        "post_processor": {"type": "RobertaProcessing", "sep": [END, end], "cls": [START, start],
                           "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": END,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    });
    spec.to_string()
        .parse::<tokenizers::Tokenizer>()
        .map_err(|e| CoreError::Tokenizer(format!("CLIP tokenizer from vocab.json: {e}")))
}

fn default_max() -> usize {
    77
}

/// A pipeline's prompt tokenizer.
pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    length: usize,
    eos: u32,
    pad: u32,
}

impl ClipTokenizer {
    /// Loads `tokenizer.json` and `tokenizer_config.json` from a pipeline's `tokenizer/`.
    pub fn load(dir: &Path) -> Result<Self, CoreError> {
        let inner = match dir.join("tokenizer.json").exists() {
            true => tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
                .map_err(|e| CoreError::Tokenizer(format!("tokenizer.json: {e}")))?,
            false => from_vocab(dir)?,
        };
        let path = dir.join("tokenizer_config.json");
        let text = std::fs::read(&path)
            .map_err(|e| CoreError::Tokenizer(format!("{}: {e}", path.display())))?;
        let config: TokenizerConfig = serde_json::from_slice(&text)
            .map_err(|e| CoreError::Tokenizer(format!("{}: {e}", path.display())))?;
        let id = |token: Option<&str>, what: &str| {
            let token = token.unwrap_or(END);
            inner.token_to_id(token).ok_or_else(|| {
                CoreError::Tokenizer(format!("the {what} token {token} is not in the vocabulary"))
            })
        };
        let eos = id(token_text(&config.eos_token), "end")?;
        let pad = id(token_text(&config.pad_token), "pad")?;
        if config.model_max_length < 2 {
            return Err(CoreError::Tokenizer(
                "model_max_length is too short for the start and end tokens".into(),
            ));
        }
        Ok(ClipTokenizer {
            inner,
            length: config.model_max_length,
            eos,
            pad,
        })
    }

    /// The length every prompt is cut or padded to.
    pub fn length(&self) -> usize {
        self.length
    }

    /// `prompt` as the pipeline feeds it: start token, its tokens (cut so that the end token
    /// still fits), the end token, pad tokens up to [`Self::length`]. Also how many of its
    /// tokens were cut.
    pub fn encode(&self, prompt: &str) -> Result<(Vec<u32>, usize), CoreError> {
        let encoding = self
            .inner
            .encode(prompt, true)
            .map_err(|e| CoreError::Tokenizer(format!("tokenizing a prompt: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        let mut cut = 0;
        if ids.len() > self.length {
            cut = ids.len() - self.length;
            ids.truncate(self.length - 1);
            ids.push(self.eos);
        }
        ids.resize(self.length, self.pad);
        Ok((ids, cut))
    }

    /// How many tokens of `prompt` the text encoder reads (start and end tokens included,
    /// padding not): what a request is billed for as its input.
    pub fn count(&self, prompt: &str) -> Result<usize, CoreError> {
        let encoding = self
            .inner
            .encode(prompt, true)
            .map_err(|e| CoreError::Tokenizer(format!("tokenizing a prompt: {e}")))?;
        // A longer prompt is cut to the encoder's length (its end token kept).
        Ok(encoding.get_ids().len().min(self.length))
    }
}
