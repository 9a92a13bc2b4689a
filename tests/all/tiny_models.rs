//! Tiny random-weight models of each architecture against llama.cpp's figures for them: token
//! ids, every last-position logit and 8 greedy tokens. Gemma 3 (`tests/fixtures/gemma3/
//! make_tiny.py`: 6 layers, a sliding window of 8 positions, heads wider than dim/heads, a
//! 400-piece SentencePiece vocabulary with tied scores) in F32, F16 and Q8_0; Qwen 2 (q/k/v
//! biases, an untied head), Qwen 3 (q/k norms, wide heads), Phi-3 (fused qkv and gate-up) and
//! Llama 3 (`rope_freqs` divisors) with a byte-level BPE vocabulary under the `qwen2` and
//! `llama-bpe` pre-tokenizers (`tests/fixtures/bpe/make_tiny.py`) in F32 and Q8_0.
//!
//! Each on the CPU path and on burn's (`flex`, and wgpu: Mesa lavapipe here), which
//! dequantize at load.
//!
//! The reference is llama.cpp on each file's weights as gguf dequantizes them, in F32 with an
//! F32 KV cache: the math the CPU path does (it keeps activations f32), so max |Δ| ≤ 1e-3 on
//! logits up to ~25 for every type and backend (Gemma's first prompt: 3e-6 to 7e-5 on the
//! CPU path; burn's largest, 4.8e-4, is Gemma F16's). llama.cpp running the file natively
//! rounds activations to f16 (F16 weights) or 8 bits (Q8_0) before each matmul: those figures
//! are held to the spread that costs (`native_tol`).

use std::path::PathBuf;

use cinder_core::{BackendKind, BackendPreference, Gguf, Llama, Tokenizer, argmax};

use crate::ids;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/gemma3")
        .join(name)
}

fn gemma(kind: &str, native_tol: f32) {
    let r = serde_json::from_str(include_str!("../fixtures/gemma3/tiny.json")).expect("json");
    check(&r, "gemma3", kind, native_tol);
}

fn bpe(kind: &str, native_tol: f32) {
    let r = serde_json::from_str(include_str!("../fixtures/bpe/tiny.json")).expect("json");
    check(&r, "bpe", kind, native_tol);
}

/// The model `kind` of the reference `r`, whose files are in `tests/fixtures/{dir}`.
fn check(r: &serde_json::Value, dir: &str, kind: &str, native_tol: f32) {
    let entry = &r["models"][kind];
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(dir)
        .join(entry["file"].as_str().expect("file"));
    check_at(entry, &path, kind, native_tol);
}

/// The model at `path` (a GGUF, or a Hugging Face folder of the same weights) against the
/// reference `entry`.
pub(crate) fn check_at(
    entry: &serde_json::Value,
    path: &std::path::Path,
    kind: &str,
    native_tol: f32,
) {
    let g = Gguf::open(path).expect("opens");
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    for case in entry["tokenize"].as_array().expect("cases") {
        let text = case["text"].as_str().expect("text");
        assert_eq!(
            tok.encode(text, false).expect("encodes"),
            ids(&case["ids"]),
            "{text:?}"
        );
        assert_eq!(
            tok.encode(text, true).expect("encodes"),
            ids(&case["ids_parse_special"]),
            "{text:?} parse_special"
        );
    }
    // The CPU path, then burn's: `flex` on the CPU, and wgpu (Mesa lavapipe here, a GPU
    // elsewhere).
    for (backend, runs_on) in [
        (BackendPreference::Cpu, BackendKind::Cpu),
        (BackendPreference::Flex, BackendKind::Flex),
        (BackendPreference::Wgpu, BackendKind::Wgpu),
    ] {
        let (model, kind_run) = Llama::load(&g, backend, 2, |_, _| {}).expect("loads");
        assert_eq!(kind_run, runs_on);
        prompts(entry, &model, &format!("{kind} {backend:?}"), native_tol);
    }
}

/// Every prompt of `entry` through `model`: last-position logits and greedy tokens.
fn prompts(entry: &serde_json::Value, model: &Llama, kind: &str, native_tol: f32) {
    for p in entry["prompts"].as_array().expect("prompts") {
        let name = p["name"].as_str().expect("name");
        let mut cache = model.new_cache();
        let logits = model.forward(&ids(&p["ids"]), &mut cache).expect("forward");
        let exact = worst(&logits, &p["logits"]);
        let native = worst(&logits, &p["native_logits"]);
        assert!(
            exact <= 1e-3,
            "{kind} {name}: max |Δ| {exact} from llama.cpp's f32 math"
        );
        assert!(
            native <= native_tol,
            "{kind} {name}: max |Δ| {native} from llama.cpp's native run"
        );
        let mut greedy = vec![argmax(&logits)];
        while greedy.len() < ids(&p["greedy"]).len() {
            let last = greedy[greedy.len() - 1];
            greedy.push(argmax(&model.forward(&[last], &mut cache).expect("step")));
        }
        assert_eq!(greedy, ids(&p["greedy"]), "{kind} {name}: greedy");
        // Natively llama.cpp's 8-bit activations may flip a near tie later on (Phi-3 Q8_0's
        // `short` prompt, third token): its first choice must agree.
        assert_eq!(
            greedy[0],
            ids(&p["native_greedy"])[0],
            "{kind} {name}: native first token"
        );
    }
}

/// The largest difference between `logits` and the reference's.
fn worst(logits: &[f32], reference: &serde_json::Value) -> f32 {
    let want = reference.as_array().expect("logits");
    assert_eq!(logits.len(), want.len());
    logits
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b.as_f64().expect("a logit") as f32).abs())
        .fold(0f32, f32::max)
}

#[test]
fn tiny_gemma3_f32_matches_llama_cpp() {
    gemma("F32", 1e-3);
}

#[test]
fn tiny_gemma3_f16_matches_llama_cpp() {
    gemma("F16", 2e-2);
}

#[test]
fn tiny_gemma3_q8_0_matches_llama_cpp() {
    gemma("Q8_0", 0.3);
}

#[test]
fn tiny_qwen2_matches_llama_cpp() {
    bpe("qwen2-F32", 1e-3);
    bpe("qwen2-Q8_0", 0.3);
}

#[test]
fn tiny_phi3_matches_llama_cpp() {
    bpe("phi3-F32", 1e-3);
    bpe("phi3-Q8_0", 0.3);
}

#[test]
fn tiny_llama3_matches_llama_cpp() {
    bpe("llama3-F32", 1e-3);
    bpe("llama3-Q8_0", 0.3);
}

#[test]
fn tiny_qwen3_matches_llama_cpp() {
    bpe("qwen3-F32", 1e-3);
    bpe("qwen3-Q8_0", 0.3);
}

/// A spec for the file (or folder) at `path`, called `id`, on the CPU path.
pub(crate) fn spec(id: &str, path: PathBuf) -> cinder_core::ModelSpec {
    cinder_core::ModelSpec {
        id: id.into(),
        path,
        backend: BackendPreference::Cpu,
        threads: Some(1),
        prefix_cache_mib: None,
        embeddings: false,
        raw_control_tokens: false,
        engine: cinder_core::EngineLimits::default(),
        q8_decode: false,
        q8_products: false,
        image: Default::default(),
    }
}

#[test]
fn a_model_that_cannot_load_leaves_the_others_serving() {
    // The tiny Gemma with its architecture renamed throughout: a `gemmaX` file.
    let bytes = std::fs::read(fixture("tiny-gemma3-F32.gguf")).expect("fixture");
    let mut renamed = bytes.clone();
    let (from, to) = (b"gemma3".as_slice(), b"gemmaX".as_slice());
    let mut i = 0;
    while i + from.len() <= renamed.len() {
        if &renamed[i..i + from.len()] == from {
            renamed[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    let odd = std::env::temp_dir().join(format!("cinder-gemmaX-{}.gguf", std::process::id()));
    std::fs::write(&odd, &renamed).expect("write");
    let registry = cinder_core::ModelRegistry::load_all(&[
        spec("odd", odd.clone()),
        spec("tiny", fixture("tiny-gemma3-F32.gguf")),
    ])
    .expect("the loadable model loads");
    assert!(registry.get("tiny").is_ok());
    let err = registry
        .get("odd")
        .err()
        .expect("odd did not load")
        .to_string();
    assert!(
        err.contains("`gemmaX`") && err.contains(&odd.display().to_string()),
        "{err}"
    );
    assert!(registry.failed().contains_key("odd"));
    // With nothing loadable, starting fails with the reason.
    let none = cinder_core::ModelRegistry::load_all(&[spec("odd", odd.clone())]);
    let _ = std::fs::remove_file(&odd);
    let err = none.err().expect("nothing loads").to_string();
    assert!(err.contains("`gemmaX`"), "{err}");
}

#[test]
fn rows_of_a_fused_matrix_past_its_end_are_refused_by_name() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/bpe/tiny-phi3-Q8_0.gguf");
    let g = Gguf::open(&path).expect("opens");
    let name = "blk.0.attn_qkv.weight";
    // 64 query rows and 32 each of keys and values: 128 rows in all.
    let last = cinder_core::quant::QMatrix::from_gguf_rows(&g, name, 96, 32).expect("the values");
    assert_eq!((last.rows(), last.cols()), (32, 64));
    let err = cinder_core::quant::QMatrix::from_gguf_rows(&g, name, 100, 32)
        .err()
        .expect("past the end")
        .to_string();
    assert!(
        err.contains(name) && err.contains("100..132 of 128"),
        "{err}"
    );
}
