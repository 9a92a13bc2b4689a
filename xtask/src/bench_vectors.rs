//! `cargo xtask bench --vector-stores [--mb N]`: starts Cinder on a fresh storage folder and
//! drives the vector stores (`xtask/bench/vector_stores.py`): a generated text file of about
//! N MB (default 2) ingested into a store (chunks per second, the count read from the fresh
//! database), then search latency through the SDK at that size. The index's own search at
//! 100k chunks is `cargo run --release -p cinder-store --example vector_search`.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::start_cinder;
use crate::bench_files::fresh_config;
use crate::{build_host, build_plugins, models, root, run, target_dir, venv_dir};

pub fn bench(args: &[String]) -> Result<()> {
    let mut mb = "2".to_owned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--vector-stores" => {}
            "--mb" => mb = it.next().context("--mb needs a value")?.clone(),
            other => bail!("unknown option for the vector stores bench: `{other}`"),
        }
    }
    crate::setup_test_machine()?;
    models::fetch()?;
    let plugins = build_plugins()?;
    let cinder_bin = build_host()?;
    let config = fresh_config("vector-stores", &[])?;
    let db = target_dir().join("bench/vector-stores-state/cinder.db");
    let (cinder, port) = start_cinder(&mut Command::new(&cinder_bin), &config, &plugins)?;
    let out = target_dir().join("bench/vector_stores.json");
    run(Command::new(venv_dir().join("bin/python"))
        .arg(root().join("xtask/bench/vector_stores.py"))
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["--pid", &cinder.0.id().to_string()])
        .arg("--db")
        .arg(&db)
        .args(["--mb", &mb])
        .arg("--json")
        .arg(&out))?;
    drop(cinder);
    eprintln!("xtask: results in {}", out.display());
    Ok(())
}
