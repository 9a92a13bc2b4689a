//! A chat model serving embeddings (`[[models]] embeddings = true`): mean-pooled,
//! final-normed hidden states of SmolLM2 against an independent float64 NumPy forward pass
//! over the same dequantized weights (`tests/fixtures/smollm2-embeddings`, made by its
//! `gen_embeddings.py` from token ids llama.cpp produced), on the CPU fast path and on
//! burn-flex. A 495-token input crosses the engine's 256-token chunks; a request of many
//! inputs equals each alone; a greedy generation running beside embeddings is unchanged.

use cinder_core::{BackendPreference, EmbedHandle, LoadedEmbedder, LoadedModel};

use crate::{floats, greedy_request, ids};

/// Our activations are f32 against the fixture's f64: logits agree within 5.3e-5 (golden.rs);
/// unit-length means agree more closely than that.
const TOLERANCE: f64 = 2e-5;

fn fixture() -> serde_json::Value {
    let path =
        std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo"))
            .join("fixtures/smollm2-embeddings/embeddings.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture JSON parses")
}

fn max_delta(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(g, w)| (f64::from(*g) - f64::from(*w)).abs())
        .fold(0.0, f64::max)
}

fn embed(handle: &EmbedHandle, inputs: Vec<Vec<u32>>) -> Vec<Vec<f32>> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(handle.embed(inputs))
        .expect("embeds")
}

fn golden(model: &LoadedModel) {
    let embedder = LoadedEmbedder::from_chat_model(model);
    let handle = &embedder.engine;
    let f = fixture();
    assert_eq!(
        embedder.info.dimensions as u64,
        f["dim"].as_u64().expect("dim")
    );
    assert!(embedder.info.normalized);
    let cases = f["cases"].as_array().expect("cases");
    let mut inputs = Vec::new();
    for c in cases {
        let name = c["name"].as_str().expect("name");
        let want_ids = ids(&c["ids"]);
        if let Some(text) = c["text"].as_str() {
            let (got, cut) = handle.tokenize(text).expect("tokenizes");
            assert_eq!(got, want_ids, "{name}: token ids against llama.cpp's");
            assert!(!cut);
        }
        let got = embed(handle, vec![want_ids.clone()]);
        let delta = max_delta(&got[0], &floats(&c["embedding"]));
        assert!(delta <= TOLERANCE, "{name}: max |Δ| {delta}");
        inputs.push(want_ids);
    }
    // Every case in one request: the short ones share passes, the long one runs in chunks.
    let together = embed(handle, inputs);
    assert_eq!(together.len(), cases.len());
    for (c, got) in cases.iter().zip(&together) {
        let delta = max_delta(got, &floats(&c["embedding"]));
        assert!(
            delta <= TOLERANCE,
            "{} in a batch: max |Δ| {delta}",
            c["name"]
        );
    }
}

#[test]
fn chat_model_embeddings_match_numpy_on_cpu() {
    golden(&crate::load_smollm2());
}

#[test]
fn chat_model_embeddings_match_numpy_on_flex() {
    golden(&crate::load_smollm2_on(BackendPreference::Flex));
}

#[test]
fn a_generation_beside_embeddings_is_unchanged() {
    let model = crate::load_smollm2();
    let embedder = LoadedEmbedder::from_chat_model(&model);
    let r = crate::read_json("smollm2/greedy.json");
    let max_new = r["max_new_tokens"].as_u64().expect("max_new_tokens") as u32;
    let (name, p) = r["transformers"]["prompts"]
        .as_object()
        .expect("prompts")
        .iter()
        .next()
        .expect("a prompt");
    let mut events = model
        .engine
        .submit(greedy_request(ids(&p["prompt_ids"]), max_new))
        .expect("submitted");
    // Embedding passes (a long input in chunks, a short one) interleave with its steps.
    let long: Vec<u32> = (0..600).map(|i| 1000 + i).collect();
    let vectors = embed(&embedder.engine, vec![long, vec![19556, 905]]);
    assert_eq!(vectors.len(), 2);
    let mut got = Vec::new();
    while let Some(event) = events.blocking_recv() {
        match event {
            cinder_core::GenEvent::Delta { tokens, .. } => got.extend(tokens),
            cinder_core::GenEvent::Finished { .. } => break,
            cinder_core::GenEvent::Failed(e) => panic!("{name}: {e}"),
        }
    }
    assert_eq!(got, ids(&p["ids"]), "{name}");
}
