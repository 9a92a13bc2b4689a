//! Hugging Face model folders (`tests/fixtures/hf/make_hf.py`: the tiny GGUF fixtures written
//! back the way Hugging Face keeps them) read as the GGUF llama.cpp's converter would make:
//! the same token ids, every last-position logit and greedy tokens as llama.cpp computed for
//! the GGUF (Qwen 2 with its biases; Qwen 3 sharded in two with an index; Phi-3's fused
//! matrices with its template in `chat_template.jinja`; Gemma 3 in f16 with a SentencePiece
//! `tokenizer.model`; Qwen 2 in bf16 against the GGUF of the same values), Llama's q and k rows permuted back into GGUF's layout and Llama 3.1's
//! `rope_scaling` turned into the factors the converter writes; and folders Cinder cannot
//! read refused with the reason.

use std::path::{Path, PathBuf};

use cinder_core::{BackendPreference, Gguf, Llama, Tokenizer};

use crate::tiny_models::check_at;

fn folder(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hf")
        .join(name)
}

fn bpe(name: &str, kind: &str) {
    let r: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/bpe/tiny.json")).expect("json");
    check_at(&r["models"][kind], &folder(name), kind, 1e-3);
}

#[test]
fn a_qwen2_folder_gives_llama_cpps_figures() {
    bpe("qwen2", "qwen2-F32");
}

#[test]
fn a_sharded_qwen3_folder_gives_llama_cpps_figures() {
    bpe("qwen3", "qwen3-F32");
}

#[test]
fn a_phi3_folder_gives_llama_cpps_figures() {
    bpe("fused-qkv", "phi3-F32");
}

#[test]
fn an_f16_gemma3_folder_with_a_sentencepiece_model_gives_llama_cpps_figures() {
    let r: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/gemma3/tiny.json")).expect("json");
    check_at(&r["models"]["F16"], &folder("gemma3-F16"), "F16", 2e-2);
}

/// The metadata keys a folder must give as its GGUF does (integers of any width).
fn same_metadata(folder: &Gguf, file: &Gguf, keys: &[&str]) {
    use cinder_core::gguf::Value;
    let norm = |v: Option<&Value>| v.map(|v| v.as_u64().map_or_else(|| v.clone(), Value::U64));
    for key in keys {
        let (a, b) = (norm(folder.get(key)), norm(file.get(key)));
        assert!(a.is_some() && a == b, "{key}: {a:?} vs {b:?}");
    }
}

#[test]
fn a_folder_reads_as_its_gguf_does() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let pairs = [
        ("qwen2", "bpe/tiny-qwen2-F32.gguf"),
        ("gemma3-F16", "gemma3/tiny-gemma3-F16.gguf"),
    ];
    for (name, file) in pairs {
        let (f, g) = (
            Gguf::open(&folder(name)).expect("folder"),
            Gguf::open(&fixtures.join(file)).expect("file"),
        );
        same_metadata(
            &f,
            &g,
            &[
                "general.architecture",
                "tokenizer.ggml.model",
                "tokenizer.ggml.tokens",
                "tokenizer.ggml.token_type",
                "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.add_bos_token",
            ],
        );
        let mut names: Vec<_> = f.tensors.keys().collect();
        let mut want: Vec<_> = g.tensors.keys().collect();
        names.sort();
        want.sort();
        assert_eq!(names, want, "{name}: tensor names");
        for (n, t) in &g.tensors {
            assert_eq!(f.tensors[n].dims, t.dims, "{name}: {n}");
            assert_eq!(
                f.dequantize(n).expect("folder tensor"),
                g.dequantize(n).expect("file tensor"),
                "{name}: {n}"
            );
        }
    }
    let gemma = Gguf::open(&folder("gemma3-F16")).expect("folder");
    let file = Gguf::open(&fixtures.join("gemma3/tiny-gemma3-F16.gguf")).expect("file");
    same_metadata(
        &gemma,
        &file,
        &[
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.add_space_prefix",
        ],
    );
    let scores = |g: &Gguf| {
        g.get("tokenizer.ggml.scores")
            .and_then(|v| v.as_array())
            .expect("scores")
            .iter()
            .map(|v| v.as_f64().expect("a score"))
            .collect::<Vec<_>>()
    };
    assert_eq!(scores(&gemma), scores(&file));
    // The template: tokenizer_config.json's, or chat_template.jinja's.
    for name in ["qwen2", "fused-qkv"] {
        let g = Gguf::open(&folder(name)).expect("folder");
        let t = g.get_str("tokenizer.chat_template").expect("a template");
        assert!(t.contains("<|im_start|>"), "{name}: {t}");
    }
}

/// Last-position logits of `ids` on the model at `path`.
fn logits(path: &Path, ids: &[u32]) -> Vec<f32> {
    let g = Gguf::open(path).expect("opens");
    let (model, _) = Llama::load(&g, BackendPreference::Cpu, 1, |_, _| {}).expect("loads");
    let mut cache = model.new_cache();
    model.forward(ids, &mut cache).expect("forward")
}

#[test]
fn a_llama3_folder_equals_the_gguf_its_converter_writes() {
    let twin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hf/tiny-llama3-twin.gguf");
    let (f, g) = (
        Gguf::open(&folder("llama3")).expect("folder"),
        Gguf::open(&twin).expect("twin"),
    );
    // rope_scaling {llama3, factor 8, original context 64} as the converter's factors.
    let (ours, theirs) = (
        f.dequantize("rope_freqs.weight")
            .expect("made from the config"),
        g.dequantize("rope_freqs.weight").expect("the twin's"),
    );
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a - b).abs() <= 1e-6 * b.abs(), "{ours:?} vs {theirs:?}");
    }
    assert!(theirs.contains(&8.0) && theirs.contains(&1.0));
    // q and k rows back in GGUF's pairs layout.
    for n in ["blk.1.attn_q.weight", "blk.2.attn_k.weight"] {
        assert_eq!(
            f.dequantize(n).expect("folder"),
            g.dequantize(n).expect("twin"),
            "{n}"
        );
    }
    let r: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/bpe/tiny.json")).expect("json");
    let (ft, gt) = (
        Tokenizer::from_gguf(&f).expect("folder tokenizer"),
        Tokenizer::from_gguf(&g).expect("twin tokenizer"),
    );
    for case in r["models"]["llama3-F32"]["tokenize"]
        .as_array()
        .expect("cases")
    {
        let text = case["text"].as_str().expect("text");
        assert_eq!(
            ft.encode(text, true).expect("encodes"),
            crate::ids(&case["ids_parse_special"]),
            "{text:?}"
        );
        assert_eq!(
            ft.encode(text, false).expect("encodes"),
            gt.encode(text, false).expect("encodes")
        );
    }
    let ids: Vec<u32> = (0..40).map(|i| (i * 7 + 3) % 300).collect();
    let (a, b) = (logits(&folder("llama3"), &ids), logits(&twin, &ids));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-4, "max |Δ| {worst}");
}

/// A copy of the fixture folder `name` with `edit` applied to it.
fn edited(name: &str, tag: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cinder-hf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    for e in std::fs::read_dir(folder(name)).expect("fixture") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dir.join(e.file_name())).expect("copy");
    }
    edit(&dir);
    dir
}

fn open_error(dir: &Path) -> String {
    let err = match Gguf::open(dir) {
        Ok(g) => Tokenizer::from_gguf(&g)
            .err()
            .map(|e| e.to_string())
            .or_else(|| {
                Llama::load(&g, BackendPreference::Cpu, 1, |_, _| {})
                    .err()
                    .map(|e| e.to_string())
            })
            .expect("refused"),
        Err(e) => e.to_string(),
    };
    let _ = std::fs::remove_dir_all(dir);
    err
}

fn rewrite_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    edit(&mut v);
    std::fs::write(path, v.to_string()).expect("write");
}

/// A change made to a copy of a fixture folder.
type Edit = Box<dyn FnOnce(&Path)>;

#[test]
fn folders_cinder_cannot_read_are_refused_with_the_reason() {
    let cases: [(&str, Edit, &str); 8] = [
        (
            "hugeid",
            Box::new(|d| {
                rewrite_json(&d.join("tokenizer.json"), |t| {
                    t["added_tokens"][0]["id"] = serde_json::json!(u64::MAX)
                })
            }),
            "18446744073709551615",
        ),
        (
            "shortvocab",
            Box::new(|d| rewrite_json(&d.join("config.json"), |c| c["vocab_size"] = 100.into())),
            "vocab_size is 100",
        ),
        (
            "arch",
            Box::new(|d| {
                rewrite_json(&d.join("config.json"), |c| {
                    c["architectures"][0] = "MambaForCausalLM".into()
                })
            }),
            "MambaForCausalLM",
        ),
        (
            "scaling",
            Box::new(|d| {
                rewrite_json(&d.join("config.json"), |c| {
                    c["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0})
                })
            }),
            "yarn",
        ),
        (
            "pretok",
            Box::new(|d| {
                rewrite_json(&d.join("tokenizer.json"), |t| {
                    t["pre_tokenizer"] = serde_json::json!({"type": "Whitespace"})
                })
            }),
            "pre-tokenizer",
        ),
        (
            "notok",
            Box::new(|d| std::fs::remove_file(d.join("tokenizer.json")).expect("rm")),
            "tokenizer",
        ),
        (
            "noweights",
            Box::new(|d| std::fs::remove_file(d.join("model.safetensors")).expect("rm")),
            "model.safetensors",
        ),
        (
            "stranger",
            Box::new(|d| {
                // A tensor no qwen2 model has, in a shard of its own.
                let header = br#"{"model.layers.0.mlp.experts.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
                let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
                bytes.extend(header);
                bytes.extend([0u8; 8]);
                std::fs::write(d.join("extra.safetensors"), bytes).expect("shard");
                let index = serde_json::json!({"weight_map": {"model.layers.0.mlp.experts.weight": "extra.safetensors"}});
                std::fs::write(d.join("model.safetensors.index.json"), index.to_string())
                    .expect("index");
            }),
            "model.layers.0.mlp.experts.weight",
        ),
    ];
    for (tag, edit, named) in cases {
        let err = open_error(&edited("qwen2", tag, edit));
        assert!(err.contains(named), "{tag}: {err}");
    }
    // An index may not reach outside its folder.
    let dir = edited("qwen2", "escape", |d| {
        let index = serde_json::json!({"weight_map": {"lm_head.weight": "../model.safetensors"}});
        std::fs::write(d.join("model.safetensors.index.json"), index.to_string()).expect("index");
    });
    let err = open_error(&dir);
    assert!(err.contains("../model.safetensors"), "{err}");
    // An integer dtype is named.
    let dir = edited("qwen2", "int8", |d| {
        let header = br#"{"model.norm.weight":{"dtype":"I8","shape":[64],"data_offsets":[0,64]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header);
        bytes.extend([0u8; 64]);
        std::fs::write(d.join("model.safetensors"), bytes).expect("weights");
    });
    let err = open_error(&dir);
    assert!(err.contains("I8"), "{err}");
}

#[test]
fn a_folder_serves_and_inspects_like_a_file() {
    let summary = cinder_core::summarize(&folder("qwen3")).expect("summary");
    assert_eq!(summary.architecture, "qwen3");
    assert_eq!(summary.layers, Some(3));
    assert!(
        summary.cannot_serve.is_empty(),
        "{:?}",
        summary.cannot_serve
    );
    assert!(
        summary.file_bytes > 100_000,
        "both shards: {}",
        summary.file_bytes
    );
    assert!(summary.chat_template.is_some());
    // Its load reports progress, tensor by tensor, up to all of them.
    let seen = std::sync::Mutex::new(Vec::new());
    let registry = cinder_core::ModelRegistry::load_all_reporting(
        &[crate::tiny_models::spec("folder", folder("gemma3-F16"))],
        &|model, done, total| seen.lock().unwrap().push((model.to_owned(), done, total)),
    )
    .expect("loads");
    let seen = seen.into_inner().unwrap();
    assert!(seen.windows(2).all(|w| w[0].1 <= w[1].1), "{seen:?}");
    let (model, done, total) = seen.last().expect("reported").clone();
    assert_eq!((model.as_str(), done), ("folder", total));
    assert!(total > 6, "one step per layer and more: {total}");
    let model = registry.get("folder").expect("served");
    assert_eq!(model.info.architecture, "gemma3");
    // Gemma's built-in template, as for its GGUF (the folder has none).
    let prompt = model
        .template
        .render(
            &[cinder_core::TemplateMessage {
                role: "user".into(),
                content: "Hi".into(),
            }],
            true,
        )
        .expect("renders");
    assert!(prompt.contains("<start_of_turn>user"), "{prompt}");
}

#[test]
fn a_bf16_folder_equals_the_gguf_of_the_same_values() {
    let twin =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hf/tiny-qwen2-BF16-twin.gguf");
    let (f, g) = (
        Gguf::open(&folder("qwen2-BF16")).expect("folder"),
        Gguf::open(&twin).expect("twin"),
    );
    let matrix = "blk.0.ffn_up.weight";
    assert_eq!(
        f.tensor(matrix).expect("folder").ty,
        cinder_core::GgmlType::BF16
    );
    assert_eq!(
        g.tensor(matrix).expect("twin").ty,
        cinder_core::GgmlType::BF16
    );
    for (n, t) in &g.tensors {
        assert_eq!(f.tensors[n].dims, t.dims, "{n}");
        assert_eq!(
            f.dequantize(n).expect("folder"),
            g.dequantize(n).expect("twin"),
            "{n}"
        );
    }
    let ids: Vec<u32> = (0..24).map(|i| (i * 11 + 5) % 300).collect();
    let (a, b) = (logits(&folder("qwen2-BF16"), &ids), logits(&twin, &ids));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-5, "max |Δ| {worst}");
}
