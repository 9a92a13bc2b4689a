//! A Hugging Face folder's tokenizer and chat template as GGUF metadata, read the way
//! llama.cpp's converter reads them: byte-level BPE from `tokenizer.json` (vocabulary, merges,
//! added tokens, the pre-tokenizer told by its regex), SentencePiece from `tokenizer.model`
//! (pieces, scores, types), special tokens and `add_bos_token` from `tokenizer_config.json`
//! (else `config.json`), the chat template from `tokenizer_config.json` or
//! `chat_template.jinja`.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as Json;

use super::gguf::Value;
use super::hf::read_json;
use super::spm::{TYPE_CONTROL, TYPE_NORMAL, TYPE_UNUSED, TYPE_USER_DEFINED};
use crate::error::CoreError;

/// More tokens than any vocabulary has: a larger id is a damaged file.
const MAX_TOKENS: u64 = 4_000_000;

/// A vocabulary's pieces by id (`None`: a gap to pad) and their GGUF token types.
pub(crate) type Pieces = (Vec<Option<String>>, Vec<i64>);

fn tok_err(path: &Path, why: impl std::fmt::Display) -> CoreError {
    CoreError::Tokenizer(format!("{}: {why}", path.display()))
}

/// Fills `m` with the tokenizer and template of the folder `dir`; `vocab_size` is the
/// model's (the embedding rows), which the vocabulary is padded to.
pub(crate) fn read(
    dir: &Path,
    config: &Json,
    vocab_size: Option<u64>,
    m: &mut HashMap<String, Value>,
) -> Result<(), CoreError> {
    let tc_path = dir.join("tokenizer_config.json");
    let tc = if tc_path.is_file() {
        read_json(&tc_path)?
    } else {
        Json::Null
    };
    let tj_path = dir.join("tokenizer.json");
    let tj = if tj_path.is_file() {
        read_json(&tj_path)?
    } else {
        Json::Null
    };
    let spm = dir.join("tokenizer.model");
    // SentencePiece where the model has one and tokenizer.json is not byte-level BPE
    // (Gemma, Phi-3), as llama.cpp's converters for those architectures do.
    let byte_level = tj["model"]["type"].as_str() == Some("BPE")
        && !tj["model"]["byte_fallback"].as_bool().unwrap_or(false);
    let (mut tokens, mut types) = if byte_level {
        bpe(&tj_path, &tj, m)?
    } else if spm.is_file() {
        super::hf_spm::read(&spm, m)?
    } else {
        return Err(tok_err(
            dir,
            "no byte-level BPE tokenizer.json and no tokenizer.model: the tokenizer is of a kind Cinder does not read",
        ));
    };
    // Added tokens (tokenizer.json, or tokenizer_config.json's added_tokens_decoder).
    let mut added: Vec<(u64, String, bool)> = tj["added_tokens"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        t["id"].as_u64()?,
                        t["content"].as_str()?.to_owned(),
                        t["special"].as_bool().unwrap_or(false),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(decoder) = tc["added_tokens_decoder"].as_object() {
        for (id, t) in decoder {
            if let (Ok(id), Some(content)) = (id.parse::<u64>(), t["content"].as_str()) {
                let special = t["special"].as_bool().unwrap_or(false);
                added.push((id, content.to_owned(), special));
            }
        }
    }
    if let Some((id, content, _)) = added.iter().find(|(id, ..)| *id >= MAX_TOKENS) {
        return Err(tok_err(
            &tj_path,
            format!("the added token {content:?} has the id {id}"),
        ));
    }
    let len = added
        .iter()
        .map(|(id, ..)| id + 1)
        .chain(vocab_size)
        .chain([tokens.len() as u64])
        .max()
        .unwrap_or(0);
    // The model's embedding table has `vocab_size` rows: a token past it has no embedding.
    if let Some(rows) = vocab_size.filter(|&rows| len > rows) {
        return Err(tok_err(
            &tj_path,
            format!("the tokenizer has {len} tokens; the model's vocab_size is {rows}"),
        ));
    }
    while (tokens.len() as u64) < len {
        tokens.push(None);
        types.push(TYPE_UNUSED);
    }
    for (id, content, special) in added {
        let i = id as usize;
        types[i] = if special || looks_special(&content) {
            TYPE_CONTROL
        } else {
            TYPE_USER_DEFINED
        };
        tokens[i] = Some(content);
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]")))
        .collect();
    // SentencePiece scores for the padding, as the converter gives it.
    if let Some(Value::Array(scores)) = m.get_mut("tokenizer.ggml.scores") {
        scores.resize(tokens.len(), Value::F32(-1000.0));
    }

    let id_of = |text: &str| tokens.iter().position(|t| t == text).map(|i| i as u64);
    let special = |key: &str| -> Option<u64> {
        let named = &tc[key];
        let text = named.as_str().or(named["content"].as_str());
        text.and_then(id_of).or_else(|| {
            let id = &config[format!("{key}_id")];
            id.as_u64().or(id[0].as_u64())
        })
    };
    for (key, gguf) in [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(id) = special(key) {
            m.insert(gguf.into(), Value::U64(id));
        }
    }
    // `add_bos_token` as tokenizer_config.json says, else whether tokenizer.json's
    // post-processor puts the BOS before a single text.
    let add_bos = tc["add_bos_token"].as_bool().unwrap_or_else(|| {
        let bos = tc["bos_token"]
            .as_str()
            .or(tc["bos_token"]["content"].as_str());
        let single = &tj["post_processor"]["single"];
        let lists = [single, &tj["post_processor"]["processors"]];
        bos.is_some_and(|bos| {
            lists
                .iter()
                .any(|l| l.to_string().contains(&format!("\"{bos}\"")))
        })
    });
    m.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos));
    m.insert(
        "tokenizer.ggml.tokens".into(),
        Value::Array(tokens.into_iter().map(Value::String).collect()),
    );
    m.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(types.into_iter().map(|t| Value::I32(t as i32)).collect()),
    );
    if let Some(template) = chat_template(dir, &tc)? {
        m.insert("tokenizer.chat_template".into(), Value::String(template));
    }
    Ok(())
}

/// What llama.cpp's converter also counts as a control token though the file does not mark
/// it special.
fn looks_special(t: &str) -> bool {
    (t.starts_with("<|") && t.ends_with("|>"))
        || matches!(
            t,
            "<s>" | "</s>" | "<unk>" | "<pad>" | "<mask>" | "<bos>" | "<eos>"
        )
}

/// Byte-level BPE from `tokenizer.json`: tokens by id (gaps `None`), their types, and the
/// merges and pre-tokenizer in `m`.
fn bpe(path: &Path, tj: &Json, m: &mut HashMap<String, Value>) -> Result<Pieces, CoreError> {
    let vocab = tj["model"]["vocab"]
        .as_object()
        .ok_or_else(|| tok_err(path, "model.vocab is missing"))?;
    let len = vocab
        .values()
        .filter_map(Json::as_u64)
        .max()
        .map_or(0, |m| m.saturating_add(1));
    if len > MAX_TOKENS {
        return Err(tok_err(path, format!("a vocabulary of {len} tokens")));
    }
    let mut tokens = vec![None; len as usize];
    for (t, id) in vocab {
        if let Some(id) = id.as_u64() {
            tokens[id as usize] = Some(t.clone());
        }
    }
    let types = tokens
        .iter()
        .map(|t| {
            if t.is_some() {
                TYPE_NORMAL
            } else {
                TYPE_UNUSED
            }
        })
        .collect();
    // Merges as `a b` strings, or (newer files) as pairs.
    let merges = tj["model"]["merges"]
        .as_array()
        .ok_or_else(|| tok_err(path, "model.merges is missing"))?
        .iter()
        .map(|v| match v {
            Json::String(s) => Some(s.clone()),
            Json::Array(p) => Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?)),
            _ => None,
        })
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| tok_err(path, "a merge is neither `a b` nor a pair"))?;
    m.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    m.insert(
        "tokenizer.ggml.pre".into(),
        Value::String(pre_tokenizer(path, tj)?.into()),
    );
    m.insert(
        "tokenizer.ggml.merges".into(),
        Value::Array(merges.into_iter().map(Value::String).collect()),
    );
    Ok((tokens, types))
}

/// The llama.cpp pre-tokenizer `tokenizer.json`'s pre-tokenizer is: GPT-2's byte-level
/// regex alone (`gpt2`), digits split apart first (`smollm`), or a split by a GPT-4-style
/// regex told apart by how many digits it groups (`llama-bpe`: up to three; `qwen2`: one).
fn pre_tokenizer(path: &Path, tj: &Json) -> Result<&'static str, CoreError> {
    let pre = &tj["pre_tokenizer"];
    let parts: Vec<&Json> = match pre["type"].as_str() {
        Some("Sequence") => pre["pretokenizers"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        Some(_) => vec![pre],
        None => Vec::new(),
    };
    let kinds: Vec<&str> = parts.iter().filter_map(|p| p["type"].as_str()).collect();
    let found = match kinds.as_slice() {
        ["ByteLevel"] => Some("gpt2"),
        ["Digits", "ByteLevel"] if parts[0]["individual_digits"].as_bool() == Some(true) => {
            Some("smollm")
        }
        ["Split", "ByteLevel"] => {
            let regex = parts[0]["pattern"]["Regex"].as_str().unwrap_or_default();
            if regex.contains(r"\p{N}{1,3}") {
                Some("llama-bpe")
            } else if regex.contains(r"\p{N}") {
                Some("qwen2")
            } else {
                None
            }
        }
        _ => None,
    };
    found.ok_or_else(|| {
        tok_err(
            path,
            format!("the pre-tokenizer {pre} is not one Cinder reads yet (GPT-2, SmolLM, Llama 3, Qwen 2)"),
        )
    })
}

/// The chat template: `tokenizer_config.json`'s `chat_template` (a string, or named
/// templates of which `default`), else `chat_template.jinja` beside it.
fn chat_template(dir: &Path, tc: &Json) -> Result<Option<String>, CoreError> {
    match &tc["chat_template"] {
        Json::String(t) => return Ok(Some(t.clone())),
        Json::Array(named) => {
            let default = named
                .iter()
                .find(|t| t["name"].as_str() == Some("default"))
                .and_then(|t| t["template"].as_str());
            if let Some(t) = default {
                return Ok(Some(t.to_owned()));
            }
        }
        _ => {}
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja)
            .map_err(|e| CoreError::Tokenizer(format!("{}: {e}", jinja.display())))?;
        return Ok(Some(text));
    }
    Ok(None)
}
