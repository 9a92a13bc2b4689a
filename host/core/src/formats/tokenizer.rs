//! The tokenizer, built from GGUF metadata, and incremental detokenization that only ever
//! emits whole UTF-8 characters.
//!
//! Byte-level BPE (`tokenizer.ggml.model = gpt2`) runs on the `tokenizers` crate, with the
//! pre-tokenizer `tokenizer.ggml.pre` names read the way llama.cpp reads it; SentencePiece
//! vocabularies (`llama`) run on [`Spm`].

use std::collections::{HashMap, HashSet};

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer as HfTokenizer};

use crate::error::CoreError;
use crate::formats::gguf::{Gguf, Value};
use crate::formats::spm::{
    self, Spm, TYPE_CONTROL as TOKEN_TYPE_CONTROL, TYPE_USER_DEFINED as TOKEN_TYPE_USER_DEFINED,
};

/// llama.cpp's pre-tokenizer regex for `tokenizer.ggml.pre = qwen2`.
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's pre-tokenizer regex for `tokenizer.ggml.pre = llama-bpe` (Llama 3).
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Opens a span [`Tokenizer::encode`] reads as plain text even when it parses control tokens
/// elsewhere. Unicode noncharacters: reserved for a program's internal use, never meaningful
/// in interchanged text.
pub const PLAIN_OPEN: char = '\u{FDD0}';
/// Closes a span opened by [`PLAIN_OPEN`].
pub const PLAIN_CLOSE: char = '\u{FDD1}';

/// What turns text into ids.
enum Encoder {
    Bpe {
        /// Matches control-token text (`<|im_start|>`) as the control token.
        parse_special: Box<HfTokenizer>,
        /// Treats control-token text as plain text.
        plain: Box<HfTokenizer>,
    },
    Spm(Box<Spm>),
}

/// A model's tokenizer.
pub struct Tokenizer {
    encoder: Encoder,
    /// The raw bytes of every token; empty for control tokens, which never print.
    token_bytes: Vec<Vec<u8>>,
    /// The text of every control token, for templates that keep it out of user content.
    control_texts: Vec<String>,
    /// Ids that end a generation.
    pub eog_ids: Vec<u32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Whether a raw prompt starts with BOS (`tokenizer.ggml.add_bos_token`; SentencePiece
    /// models default to yes, as in llama.cpp).
    pub add_bos: bool,
}

fn tok_err(e: impl std::fmt::Display) -> CoreError {
    CoreError::Tokenizer(e.to_string())
}

/// GPT-2's reversible byte <-> printable-char table, inverted: char -> byte.
fn byte_level_decode_table() -> HashMap<char, u8> {
    let mut table = HashMap::with_capacity(256);
    let mut next_extra = 0u32;
    for b in 0u32..=255 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            next_extra += 1;
            255 + next_extra
        };
        if let Some(ch) = char::from_u32(c) {
            table.insert(ch, b as u8);
        }
    }
    table
}

/// Why Cinder cannot build the tokenizer of a GGUF whose `tokenizer.ggml.model` is `model`,
/// when it cannot.
pub(crate) fn model_refusal(model: &str) -> Option<String> {
    (!matches!(model, "gpt2" | "llama")).then(|| {
        format!(
            "tokenizer model `{model}` is not supported yet (byte-level BPE `gpt2` and \
             SentencePiece `llama` only)"
        )
    })
}

/// The vocabulary's pieces and their GGUF token types (normal when the file gives none).
pub(crate) fn vocabulary(gguf: &Gguf) -> Result<(Vec<String>, Vec<i64>), CoreError> {
    let tokens: Vec<String> = gguf
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .ok_or_else(|| tok_err("tokenizer.ggml.tokens is missing"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| tok_err("a token is not a string"))
        })
        .collect::<Result<_, _>>()?;
    let types: Vec<i64> = match gguf
        .get("tokenizer.ggml.token_type")
        .and_then(Value::as_array)
    {
        Some(a) => a
            .iter()
            .map(|v| v.as_u64().map(|x| x as i64).unwrap_or(1))
            .collect(),
        None => vec![1; tokens.len()],
    };
    Ok((tokens, types))
}

/// The ids that end a generation, sorted: EOS, EOT and EOM from the metadata, and the control
/// tokens llama.cpp treats as end of generation whatever the metadata says.
pub(crate) fn eog_ids(gguf: &Gguf, tokens: &[String], types: &[i64]) -> Vec<u32> {
    let id = |key: &str| gguf.get(key).and_then(Value::as_u64).map(|v| v as u32);
    let mut eog_ids: Vec<u32> = id("tokenizer.ggml.eos_token_id").into_iter().collect();
    eog_ids.extend(id("tokenizer.ggml.eot_token_id"));
    eog_ids.extend(id("tokenizer.ggml.eom_token_id"));
    for (i, (t, &ty)) in tokens.iter().zip(types).enumerate() {
        let eog_text = matches!(
            t.as_str(),
            "<|endoftext|>"
                | "<|im_end|>"
                | "<|eot_id|>"
                | "<|end|>"
                | "<end_of_turn>"
                | "<|eom_id|>"
                | "<reponame>"
        );
        if ty == TOKEN_TYPE_CONTROL && eog_text && !eog_ids.contains(&(i as u32)) {
            eog_ids.push(i as u32);
        }
    }
    eog_ids.sort_unstable();
    eog_ids
}

/// The special tokens that swallow the whitespace after them, as llama.cpp sets them by the
/// model's name (llama-vocab.cpp): for Phi-3 (`general.name` says "phi-3" or "phi3") every
/// control, user-defined and unknown token and `</s>`, but `<unk>`, `<s>` and
/// `<|endoftext|>`; for other models none.
fn rstrip_ids(gguf: &Gguf, tokens: &[String], types: &[i64]) -> HashSet<u32> {
    let name = gguf
        .get("general.name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_lowercase();
    if !(name.contains("phi-3") || name.contains("phi3")) {
        return HashSet::new();
    }
    tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (t, ty))| {
            let special = matches!(
                **ty,
                TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED | spm::TYPE_UNKNOWN
            );
            (special || t.as_str() == "</s>")
                && !matches!(t.as_str(), "<unk>" | "<s>" | "<|endoftext|>")
        })
        .map(|(i, _)| i as u32)
        .collect()
}

impl Tokenizer {
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, CoreError> {
        let model = gguf.get_str("tokenizer.ggml.model")?;
        if let Some(why) = model_refusal(model) {
            return Err(CoreError::Tokenizer(why));
        }
        let (tokens, types) = vocabulary(gguf)?;
        let rstrip = rstrip_ids(gguf, &tokens, &types);
        let (encoder, token_bytes) = if model == "llama" {
            spm_encoder(gguf, &tokens, &types, rstrip)?
        } else {
            bpe_encoder(gguf, &tokens, &types, &rstrip)?
        };

        let id = |key: &str| gguf.get(key).and_then(Value::as_u64).map(|v| v as u32);
        let eog_ids = eog_ids(gguf, &tokens, &types);

        let control_texts = tokens
            .iter()
            .zip(&types)
            .filter(|(_, ty)| **ty == TOKEN_TYPE_CONTROL)
            .map(|(t, _)| t.clone())
            .collect();
        let add_bos = gguf
            .get("tokenizer.ggml.add_bos_token")
            .and_then(Value::as_bool)
            .unwrap_or(model == "llama");
        Ok(Tokenizer {
            encoder,
            control_texts,
            token_bytes,
            eog_ids,
            bos_id: id("tokenizer.ggml.bos_token_id"),
            eos_id: id("tokenizer.ggml.eos_token_id"),
            add_bos,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// The text of every control token (`<|im_start|>`).
    pub fn control_texts(&self) -> &[String] {
        &self.control_texts
    }

    /// Text to ids. No BOS is added: templates write their own control tokens.
    ///
    /// With `parse_special`, control-token text becomes the control token, except between
    /// [`PLAIN_OPEN`] and [`PLAIN_CLOSE`]: a chat template puts user content that spells a
    /// control token there, so it stays text. The markers themselves never become tokens.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, CoreError> {
        let one = |text: &str, parse_special: bool| -> Result<Vec<u32>, CoreError> {
            match &self.encoder {
                Encoder::Bpe {
                    parse_special: special,
                    plain,
                } => {
                    let tok = if parse_special { special } else { plain };
                    Ok(tok.encode(text, false).map_err(tok_err)?.get_ids().to_vec())
                }
                Encoder::Spm(spm) => Ok(spm.encode(text, parse_special)),
            }
        };
        if !text.contains([PLAIN_OPEN, PLAIN_CLOSE]) {
            return one(text, parse_special);
        }
        let mut ids = Vec::new();
        let mut plain = false;
        for part in text.split_inclusive([PLAIN_OPEN, PLAIN_CLOSE]) {
            let (body, marker) = match part.chars().next_back() {
                Some(c @ (PLAIN_OPEN | PLAIN_CLOSE)) => {
                    (&part[..part.len() - c.len_utf8()], Some(c))
                }
                _ => (part, None),
            };
            if !body.is_empty() {
                ids.extend(one(body, parse_special && !plain)?);
            }
            if let Some(m) = marker {
                plain = m == PLAIN_OPEN;
            }
        }
        Ok(ids)
    }

    /// The raw bytes a token prints (empty for control tokens).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Ids to text; control tokens are skipped, invalid UTF-8 is replaced.
    pub fn decode(&self, ids: &[u32]) -> Result<String, CoreError> {
        if let Some(&token) = ids
            .iter()
            .find(|&&id| id as usize >= self.token_bytes.len())
        {
            return Err(CoreError::OutOfVocabulary { token });
        }
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id).iter().copied())
            .collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog_ids.binary_search(&id).is_ok()
    }
}

/// Byte-level BPE on the `tokenizers` crate, and the bytes each token prints.
fn bpe_encoder(
    gguf: &Gguf,
    tokens: &[String],
    types: &[i64],
    rstrip: &HashSet<u32>,
) -> Result<(Encoder, Vec<Vec<u8>>), CoreError> {
    let merges: Vec<(String, String)> = gguf
        .get("tokenizer.ggml.merges")
        .and_then(Value::as_array)
        .ok_or_else(|| tok_err("tokenizer.ggml.merges is missing"))?
        .iter()
        .map(|v| {
            v.as_str()
                .and_then(|s| s.split_once(' '))
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| tok_err("a merge is not `a b`"))
        })
        .collect::<Result<_, _>>()?;

    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let pre = gguf
        .get("tokenizer.ggml.pre")
        .and_then(Value::as_str)
        .unwrap_or("default");
    // Llama 3's tokenizer takes a pre-token that is itself a token whole, merges or not
    // (llama.cpp's `ignore_merges`).
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre.starts_with("llama"))
        .build()
        .map_err(tok_err)?;
    let mut hf = HfTokenizer::new(bpe);

    let byte_level = ByteLevel::new(false, true, true);
    let pre_tokenizer: PreTokenizerWrapper = match pre {
        // llama.cpp's `smollm` (and `default`, GPT-2's) is the GPT-2 regex; smollm also
        // splits every digit apart first.
        "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
        "default" | "gpt2" => byte_level.into(),
        // Qwen 2/2.5/3 and Llama 3: GPT-4-style regexes (single digits, or up to three), as
        // llama.cpp spells them (case-insensitive contractions written out), then bytes to
        // GPT-2's characters.
        "qwen2" | "deepseek-r1-qwen" | "llama-bpe" | "llama3" | "llama-v3" => {
            let regex = if pre.starts_with("llama") {
                LLAMA3_SPLIT
            } else {
                QWEN2_SPLIT
            };
            let split = Split::new(
                SplitPattern::Regex(regex.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(tok_err)?;
            Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])
            .into()
        }
        other => {
            return Err(CoreError::Tokenizer(format!(
                "pre-tokenizer `{other}` is not supported yet"
            )));
        }
    };
    hf.with_pre_tokenizer(Some(pre_tokenizer));
    hf.with_decoder(Some(ByteLevelDecoder::default()));

    let added: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (_, ty))| matches!(**ty, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
        .map(|(i, (t, ty))| {
            AddedToken::from(t.clone(), *ty == TOKEN_TYPE_CONTROL)
                .normalized(false)
                .rstrip(rstrip.contains(&(i as u32)))
        })
        .collect();
    hf.add_special_tokens(&added);

    let mut plain = hf.clone();
    plain.set_encode_special_tokens(true);

    let table = byte_level_decode_table();
    let token_bytes = tokens
        .iter()
        .zip(types)
        .map(|(t, &ty)| match ty {
            TOKEN_TYPE_CONTROL => Vec::new(),
            TOKEN_TYPE_USER_DEFINED => t.as_bytes().to_vec(),
            _ => t
                .chars()
                .map(|c| table.get(&c).copied().unwrap_or(b'?'))
                .collect(),
        })
        .collect();

    let encoder = Encoder::Bpe {
        parse_special: Box::new(hf),
        plain: Box::new(plain),
    };
    Ok((encoder, token_bytes))
}

/// A SentencePiece vocabulary with its scores, and the bytes each piece prints.
fn spm_encoder(
    gguf: &Gguf,
    tokens: &[String],
    types: &[i64],
    rstrip: HashSet<u32>,
) -> Result<(Encoder, Vec<Vec<u8>>), CoreError> {
    let scores: Vec<f32> = gguf
        .get("tokenizer.ggml.scores")
        .and_then(Value::as_array)
        .ok_or_else(|| tok_err("tokenizer.ggml.scores is missing"))?
        .iter()
        .map(|v| v.as_f64().unwrap_or(0.0) as f32)
        .collect();
    let add_space_prefix = gguf
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut spm = Spm::new(tokens, &scores, types, add_space_prefix)?;
    spm.set_rstrip(rstrip);
    let token_bytes = tokens
        .iter()
        .zip(types)
        .map(|(t, &ty)| spm::piece_bytes(t, ty))
        .collect();
    Ok((Encoder::Spm(Box::new(spm)), token_bytes))
}

/// Turns a stream of tokens into text, holding back the bytes of a character split across
/// tokens until it is complete.
#[derive(Default)]
pub struct IncrementalDecoder {
    pending: Vec<u8>,
}

impl IncrementalDecoder {
    /// Adds a token's bytes; returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // A byte sequence that can never become valid: replace it rather than stall.
            Err(_) => {
                let text = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return text;
            }
        };
        let rest = self.pending.split_off(valid);
        String::from_utf8(std::mem::replace(&mut self.pending, rest)).unwrap_or_default()
    }

    /// Whatever is left at the end, lossily.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_decoder_holds_split_characters() {
        let mut d = IncrementalDecoder::default();
        let e = "é".as_bytes();
        assert_eq!(d.push(b"caf"), "caf");
        assert_eq!(d.push(&e[..1]), "");
        assert_eq!(d.push(&e[1..]), "é");
        assert_eq!(d.push(&[0xf0, 0x9f]), "");
        assert_eq!(d.finish(), "\u{fffd}");
    }

    #[test]
    fn byte_table_is_a_bijection() {
        let t = byte_level_decode_table();
        assert_eq!(t.len(), 256);
        assert_eq!(t[&'Ġ'], b' ');
        assert_eq!(t[&'Ċ'], b'\n');
        assert_eq!(t[&'a'], b'a');
    }
}
