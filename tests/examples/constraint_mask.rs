//! What grammar-constrained decoding costs per token: the time to compute the mask of
//! allowed tokens (49,152 of them for SmolLM2) and to advance the matcher, for a JSON
//! schema, measured without the model (tokens are picked from the mask, not sampled).
//!
//! `cargo xtask fetch-models`, then `cargo run --release --example constraint_mask`.

// Test and benchmark code: a panic here is a failed run, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use cinder_core::{Constraint, Gguf, Grammars, Tokenizer};

fn main() {
    let path = common::smollm2_path();
    let gguf = Gguf::open(&path).expect("model file");
    let tokenizer = Tokenizer::from_gguf(&gguf).expect("tokenizer");

    let t = Instant::now();
    let grammars = Grammars::new(&tokenizer).expect("token trie");
    println!(
        "token trie for {} tokens: {:?}",
        tokenizer.vocab_size(),
        t.elapsed()
    );

    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "population_millions": {"type": "integer"},
            "kind": {"enum": ["capital", "town"]},
            "landmarks": {"type": "array", "items": {"type": "string"}, "maxItems": 3}
        },
        "required": ["city", "population_millions", "kind", "landmarks"],
        "additionalProperties": false
    });
    let mut compile = Vec::new();
    let mut per_token = Vec::new();
    for round in 0..20 {
        let t = Instant::now();
        let mut m = grammars
            .matcher(&Constraint::JsonSchema(schema.clone()))
            .expect("schema compiles");
        compile.push(t.elapsed());
        let mut logits = vec![0f32; tokenizer.vocab_size()];
        for step in 0..60 {
            let t = Instant::now();
            logits.iter_mut().for_each(|l| *l = 0.0);
            cinder_core::constraint_mask(&mut m, &mut logits).expect("mask");
            // A varying allowed token, so the walk explores the grammar.
            let allowed: Vec<usize> = (0..logits.len()).filter(|&i| logits[i] == 0.0).collect();
            let pick = allowed[(step * 7 + round) % allowed.len()] as u32;
            if tokenizer.is_eog(pick) {
                per_token.push(t.elapsed());
                break;
            }
            m.consume_token(pick).expect("consume");
            per_token.push(t.elapsed());
        }
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "schema compile median {:?}; mask + advance per token median {:?} over {} steps",
        median(compile),
        median(per_token.clone()),
        per_token.len()
    );
}
