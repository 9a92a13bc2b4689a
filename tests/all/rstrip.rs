//! llama.cpp's Phi-3 rule: for a model named Phi-3, the whitespace after a control or
//! user-defined token is dropped when special tokens are parsed (not after <unk>, <s> or
//! <|endoftext|>). Tiny Phi-3-named models with a byte-level BPE and a SentencePiece
//! vocabulary, against the ids llama.cpp's server gives (`tests/fixtures/rstrip/make_rstrip.py`).

use std::path::PathBuf;

use cinder_core::{Gguf, Tokenizer};

use crate::ids;

#[test]
fn phi3_named_models_tokenize_their_turns_as_llama_cpp_does() {
    let r: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/rstrip/rstrip.json")).expect("json");
    for (kind, case) in r["cases"].as_object().expect("cases") {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/rstrip")
            .join(case["file"].as_str().expect("file"));
        let tok = Tokenizer::from_gguf(&Gguf::open(&path).expect("opens")).expect("tokenizer");
        for t in case["tokenize"].as_array().expect("texts") {
            let text = t["text"].as_str().expect("text");
            assert_eq!(
                tok.encode(text, true).expect("encodes"),
                ids(&t["ids"]),
                "{kind}: {text:?}"
            );
        }
    }
}

#[test]
fn other_models_keep_the_whitespace_after_a_special_token() {
    // The tiny Phi-3 of ../bpe is not named Phi-3: its `<|im_start|>` keeps the newline.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/bpe/tiny-phi3-Q8_0.gguf");
    let tok = Tokenizer::from_gguf(&Gguf::open(&path).expect("opens")).expect("tokenizer");
    let with = tok.encode("<|im_start|>\nx", true).expect("encodes");
    let without = tok.encode("<|im_start|>x", true).expect("encodes");
    assert_eq!(with.len(), without.len() + 1, "{with:?} vs {without:?}");
}
