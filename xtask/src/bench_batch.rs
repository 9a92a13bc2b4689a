//! `cargo xtask bench --batch [--count N]`: starts Cinder on a fresh storage folder and drives
//! the Batch API (`xtask/bench/batch.py`): an N-request embeddings batch (default 1,000) from
//! upload to completed, next to the same requests sent live by as many concurrent clients as
//! the batch runs at once; then a live chat request's time to first token when idle and while
//! a chat batch runs.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::start_cinder;
use crate::bench_files::fresh_config;
use crate::{build_host, build_plugins, models, root, run, target_dir, venv_dir};

pub fn bench(args: &[String]) -> Result<()> {
    let mut count = "1000".to_owned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--batch" => {}
            "--count" => count = it.next().context("--count needs a value")?.clone(),
            other => bail!("unknown option for the batch bench: `{other}`"),
        }
    }
    crate::setup_test_machine()?;
    models::fetch()?;
    let plugins = build_plugins()?;
    let cinder_bin = build_host()?;
    let config = fresh_config("batch", &[])?;
    let (cinder, port) = start_cinder(&mut Command::new(&cinder_bin), &config, &plugins)?;
    let out = target_dir().join("bench/batch.json");
    run(Command::new(venv_dir().join("bin/python"))
        .arg(root().join("xtask/bench/batch.py"))
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["--count", &count])
        .arg("--json")
        .arg(&out))?;
    drop(cinder);
    eprintln!("xtask: results in {}", out.display());
    Ok(())
}
