//! `cargo xtask bench --files [--size-mb N] [--count N]`: starts Cinder on a fresh storage folder
//! (embedded SQLite) and drives the Files API (`xtask/bench/files.py`): upload and download of an
//! N MB file (default 200) with the server's peak RSS during each, then list latency with
//! `--count` files stored (default 10,000). `limits.max_file_bytes` is raised to fit the file.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::start_cinder;
use crate::{build_host, build_plugins, models, root, run, target_dir, venv_dir};

/// A copy of the example config for the bench `name` with its state in a fresh folder under
/// the target dir, and `edits` ({old: new}, each `old` must be in the file); its path.
pub fn fresh_config(name: &str, edits: &[(&str, String)]) -> Result<PathBuf> {
    let state = target_dir().join(format!("bench/{name}-state"));
    if state.exists() {
        std::fs::remove_dir_all(&state)?;
    }
    let mut text = std::fs::read_to_string(root().join("cinder.example.toml"))?;
    let default_dir = "dir = \"~/.local/share/cinder/documents\"";
    let state_dir = format!("dir = \"{}\"", state.display());
    for (old, new) in std::iter::once((default_dir, state_dir)).chain(edits.iter().cloned()) {
        if !text.contains(old) {
            bail!("cinder.example.toml has no line `{old}`");
        }
        text = text.replace(old, &new);
    }
    let config = target_dir().join(format!("bench/cinder-{name}.toml"));
    std::fs::create_dir_all(config.parent().context("bench dir")?)?;
    std::fs::write(&config, text)?;
    Ok(config)
}

pub fn bench(args: &[String]) -> Result<()> {
    let (mut size_mb, mut count) = ("200".to_owned(), "10000".to_owned());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--files" => {}
            "--size-mb" => size_mb = it.next().context("--size-mb needs a value")?.clone(),
            "--count" => count = it.next().context("--count needs a value")?.clone(),
            other => bail!("unknown option for the files bench: `{other}`"),
        }
    }
    crate::setup_test_machine()?;
    models::fetch()?;
    let plugins = build_plugins()?;
    let cinder_bin = build_host()?;

    // Room for the file, past the default limit when asked for a bigger one.
    let wanted: u64 = size_mb.parse().context("--size-mb")?;
    let room = (wanted + 16) << 20;
    let config = fresh_config(
        "files",
        &[(
            "max_file_bytes = 536870912",
            format!("max_file_bytes = {}", room.max(512 << 20)),
        )],
    )?;

    let (cinder, port) = start_cinder(&mut Command::new(&cinder_bin), &config, &plugins)?;
    let out = target_dir().join("bench/files.json");
    run(Command::new(venv_dir().join("bin/python"))
        .arg(root().join("xtask/bench/files.py"))
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["--pid", &cinder.0.id().to_string()])
        .args(["--size-mb", &size_mb, "--files", &count])
        .arg("--json")
        .arg(&out))?;
    drop(cinder);
    eprintln!("xtask: results in {}", out.display());
    Ok(())
}
