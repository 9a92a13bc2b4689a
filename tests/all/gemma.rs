//! The real Gemma 3 270M Q4_K_M file (fetched by `cargo xtask test`): its tensors of each type
//! as the CPU path keeps them, row by row against llama.cpp's `gguf` package
//! (`tests/fixtures/gemma3/make_rows.py`), and what `cinder models inspect` says of it.

use std::path::PathBuf;

use cinder_core::quant::QMatrix;
use cinder_core::{Gguf, summarize};

fn gemma_path() -> PathBuf {
    let path = crate::models_dir().join("gemma3/gemma-3-270m-q4_k_m.gguf");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask fetch-models --test-models`",
        path.display()
    );
    path
}

#[test]
fn each_tensor_type_of_gemma3_270m_loads_as_llama_cpp_dequantizes_it() {
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/gemma3/rows.json")).expect("rows.json");
    let g = Gguf::open(&gemma_path()).expect("the file opens");
    let mut types = Vec::new();
    for (name, t) in reference.as_object().expect("tensors") {
        types.push(t["type"].as_str().expect("type").to_owned());
        let m = QMatrix::from_gguf(&g, name).expect("the matrix loads");
        let cols = t["cols"].as_u64().expect("cols") as usize;
        assert_eq!(m.cols(), cols, "{name}");
        let mut row = vec![f32::NAN; cols];
        for (r, want) in t["rows"].as_object().expect("rows") {
            m.dequantize_row(r.parse().expect("row number"), &mut row);
            for (i, (got, want)) in row.iter().zip(want.as_array().expect("values")).enumerate() {
                let want = want.as_f64().expect("a number") as f32;
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
                    "{name} row {r} value {i}: {got} vs {want}"
                );
            }
        }
    }
    types.sort();
    types.dedup();
    assert_eq!(types, ["Q4_K", "Q5_0", "Q6_K", "Q8_0"]);
}

#[test]
fn inspect_reads_gemma3_and_says_why_it_does_not_serve_yet() {
    let s = summarize(&gemma_path()).expect("summary");
    assert_eq!(s.architecture, "gemma3");
    assert_eq!(
        (s.layers, s.embedding, s.heads, s.kv_heads),
        (Some(18), Some(640), Some(4), Some(1))
    );
    assert_eq!(s.vocab_size, 262_144);
    let count = |t: &str| s.tensor_types.get(t).copied();
    assert_eq!(
        [
            count("F32"),
            count("Q5_0"),
            count("Q4_K"),
            count("Q8_0"),
            count("Q6_K")
        ],
        [Some(109), Some(81), Some(27), Some(10), Some(9)]
    );
    assert!(
        s.cannot_serve.iter().any(|r| r.contains("`gemma3`")),
        "{:?}",
        s.cannot_serve
    );
}
