#![doc = include_str!("../README.md")]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

mod bench;
mod bench_batch;
mod bench_embed;
mod bench_files;
mod bench_retrieval;
mod bench_vectors;
mod cross;
mod models;
mod train_image;

const USAGE: &str = "usage: cargo xtask <serve [-- cinder args] | test | bench [--compare llama-server [--llama-cpp-avx2]] [--model FILE] [--activations q8] [--avx2] [--embeddings [--compare sentence-transformers]] [--files [--size-mb N] [--count N]] [--batch [--count N]] [--vector-stores [--mb N]] [--retrieval] | plugins | fetch-models [--test-models] | train-image-model [--steps N] [--batch B] [--seed S] | setup | cross-test>";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .map(|(c, r)| (c.as_str(), r))
        .unwrap_or(("", &[]));
    let rest: Vec<String> = rest.iter().skip_while(|a| *a == "--").cloned().collect();
    match cmd {
        "serve" => serve(&rest),
        "test" => test(),
        "bench" => bench::bench(&rest),
        "train-image-model" => train_image::train_image_model(&rest),
        "plugins" => build_plugins().map(|_| ()),
        "fetch-models" if rest.iter().any(|a| a == "--test-models") => models::fetch()
            .and_then(|_| models::fetch_test_models())
            .map(|_| ()),
        "fetch-models" => models::fetch().map(|_| ()),
        "setup" => setup_test_machine(),
        "cross-test" => setup_test_machine().and_then(|()| cross::aarch64_tests(true)),
        _ => bail!("{USAGE}"),
    }
}

/// The workspace root (the parent of `xtask/`).
///
/// Read at run time: clones share one `CARGO_TARGET_DIR`, and cargo may reuse an xtask binary
/// built in another clone, whose compiled-in path would point at the wrong tree.
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` or `<root>/target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cache_dir() -> PathBuf {
    std::env::var_os("CINDER_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cinder")))
        .unwrap_or_else(|| root().join(".cache"))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// `rustup target add wasm32-wasip2` unless it is there already.
fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .current_dir(root())
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2") =>
        {
            Ok(())
        }
        _ => {
            run(Command::new("rustup")
                .current_dir(root())
                .args(["target", "add", "wasm32-wasip2"]))
        }
    }
}

/// Builds every plugin (release, wasm32-wasip2) and lays them out as the host loads them:
/// `<target>/cinder-plugins/<id>/{plugin.toml, plugin.wasm}`. Returns that folder.
fn build_plugins() -> Result<PathBuf> {
    ensure_wasm_target()?;
    build_wasm(
        "cinder-plugins",
        &[
            ("chat", "plugins/chat", "cinder_plugin_chat"),
            ("tools", "plugins/tools", "cinder_plugin_tools"),
            (
                "embeddings",
                "plugins/embeddings",
                "cinder_plugin_embeddings",
            ),
            ("files", "plugins/files", "cinder_plugin_files"),
            ("batches", "plugins/batches", "cinder_plugin_batches"),
            ("responses", "plugins/responses", "cinder_plugin_responses"),
            (
                "assistants",
                "plugins/assistants",
                "cinder_plugin_assistants",
            ),
            (
                "vector-stores",
                "plugins/vector-stores",
                "cinder_plugin_vector_stores",
            ),
            ("images", "plugins/images", "cinder_plugin_images"),
            ("videos", "plugins/videos", "cinder_plugin_videos"),
        ],
    )
}

/// Fixture plugins for the runtime tests, laid out like real ones; returns their folder.
fn build_fixtures() -> Result<PathBuf> {
    build_wasm(
        "cinder-fixtures",
        &[
            (
                "misbehave",
                "tests/fixtures/misbehave",
                "cinder_fixture_misbehave",
            ),
            (
                "future-wit",
                "tests/fixtures/future-wit",
                "cinder_fixture_future_wit",
            ),
            (
                "frozen-v0.1",
                "tests/fixtures/frozen-v0.1",
                "cinder_fixture_frozen_v0_1",
            ),
            (
                "wrong-world",
                "tests/fixtures/wrong-world",
                "cinder_fixture_wrong_world",
            ),
        ],
    )
}

/// Builds `(name, source folder, library name)` crates and copies each `plugin.toml` and wasm
/// into `<target>/<dist>/<name>/`.
fn build_wasm(dist: &str, crates: &[(&str, &str, &str)]) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--profile", "plugin", "--target", "wasm32-wasip2"]);
    for (_, _, lib) in crates {
        cmd.args(["-p", &lib.replace('_', "-")]);
    }
    run(&mut cmd)?;
    let dist = target_dir().join(dist);
    for (p, src, lib) in crates {
        let wasm = target_dir()
            .join("wasm32-wasip2/plugin")
            .join(format!("{lib}.wasm"));
        install(&dist.join(p), &root().join(src), &wasm)?;
    }
    Ok(dist)
}

/// Lays out one plugin as the host loads it: `<dir>/{plugin.toml, plugin.wasm}`.
fn install(dir: &Path, src: &Path, wasm: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::copy(src.join("plugin.toml"), dir.join("plugin.toml"))?;
    // Copy then rename, so a watching server never sees half a file.
    let tmp = dir.join("plugin.wasm.tmp");
    std::fs::copy(wasm, &tmp).with_context(|| wasm.display().to_string())?;
    std::fs::rename(&tmp, dir.join("plugin.wasm"))?;
    Ok(())
}

/// Third-party example plugins: `(folder under examples/plugins, library name)`.
const EXAMPLES: &[(&str, &str)] = &[
    ("chat-redact", "chat_redact"),
    ("shout", "shout"),
    ("summarize", "summarize"),
    ("tools-terse", "tools_terse"),
];

/// Builds each example as its author would: from its own folder, outside Cinder's workspace,
/// its `.cargo/config.toml` choosing wasm32-wasip2. Its unit tests run natively first. Returns
/// `<target>/cinder-examples`, one plugin folder per example.
fn build_examples() -> Result<PathBuf> {
    let dist = target_dir().join("cinder-examples");
    let host = host_triple()?;
    for (name, lib) in EXAMPLES {
        let src = root().join("examples/plugins").join(name);
        let cargo_here = || {
            let mut c = cargo();
            c.current_dir(&src).env("CARGO_TARGET_DIR", target_dir());
            c
        };
        run(cargo_here().args(["fmt", "--check"]))?;
        run(cargo_here().args(["test", "--locked", "--target", &host]))?;
        run(cargo_here().args(["build", "--release", "--locked"]))?;
        let wasm = target_dir()
            .join("wasm32-wasip2/release")
            .join(format!("{lib}.wasm"));
        install(&dist.join(name), &src, &wasm)?;
    }
    Ok(dist)
}

/// The triple of this machine, for running an example's unit tests natively.
fn host_triple() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV names no host")
}

fn build_host() -> Result<PathBuf> {
    // The whole default workspace, not `-p cinder-server`: the same package set as the test
    // build resolves the same features, so dependencies are compiled once.
    run(cargo().args(["build", "--release"]))?;
    Ok(target_dir().join("release/cinder"))
}

fn serve(args: &[String]) -> Result<()> {
    models::fetch()?;
    let plugins = build_plugins()?;
    let cinder = build_host()?;
    let mut cmd = Command::new(cinder);
    cmd.arg("--config")
        .arg(root().join("cinder.example.toml"))
        .arg("--plugins")
        .arg(plugins)
        .args(args);
    run(&mut cmd)
}

/// Debian packages, the wasm target and the Python venv the tests need.
fn setup_test_machine() -> Result<()> {
    ensure_wasm_target()?;
    let have_lavapipe = Path::new("/usr/share/vulkan/icd.d/lvp_icd.x86_64.json").exists()
        && Command::new("sh")
            .args(["-c", "ldconfig -p | grep -q libvulkan.so.1"])
            .status()
            .is_ok_and(|s| s.success());
    // The store's suite and the replica tests start throwaway PostgreSQL clusters.
    let have_postgres = std::fs::read_dir("/usr/lib/postgresql")
        .is_ok_and(|d| d.flatten().any(|v| v.path().join("bin/initdb").exists()));
    let mut packages = Vec::new();
    if !have_lavapipe {
        packages.extend(["mesa-vulkan-drivers", "libvulkan1"]);
    }
    if !have_postgres {
        packages.push("postgresql");
    }
    // The aarch64 kernel tests (`cross.rs`): a cross linker and user-mode qemu.
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("aarch64-linux-gnu-gcc") {
        packages.push("gcc-aarch64-linux-gnu");
    }
    if !have("qemu-aarch64") {
        packages.push("qemu-user");
    }
    // The videos e2e tests decode the MP4s Cinder makes with an independent decoder.
    if !have("ffprobe") {
        packages.push("ffmpeg");
    }
    if !packages.is_empty() {
        let sudo = if Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"))
        {
            ""
        } else {
            "sudo "
        };
        run(Command::new("sh").args([
            "-c",
            &format!(
                "{sudo}apt-get update -q && DEBIAN_FRONTEND=noninteractive {sudo}apt-get install -y -q {}",
                packages.join(" ")
            ),
        ]))?;
    }
    let venv = venv_dir();
    if !venv.join("bin/python").exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "-r"])
        .arg(root().join("tests/e2e/requirements.txt")))
}

fn venv_dir() -> PathBuf {
    cache_dir().join("venv")
}

fn test() -> Result<()> {
    setup_test_machine()?;
    let models = models::fetch()?;
    models::fetch_test_models()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    let plugins = build_plugins()?;
    let fixtures = build_fixtures()?;
    let examples = build_examples()?;
    run(cargo().args([
        "clippy",
        "--release",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The SDK and the first-party plugins compile natively too: each plugin's pipeline is
    // tested against the SDK's fake host.
    let native = [
        "-p",
        "cinder-sdk",
        "-p",
        "cinder-plugin-chat",
        "-p",
        "cinder-plugin-tools",
        "-p",
        "cinder-plugin-embeddings",
        "-p",
        "cinder-plugin-files",
        "-p",
        "cinder-plugin-batches",
        "-p",
        "cinder-plugin-responses",
        "-p",
        "cinder-plugin-assistants",
        "-p",
        "cinder-plugin-vector-stores",
        "-p",
        "cinder-file-search",
        "-p",
        "cinder-plugin-images",
        "-p",
        "cinder-pictures",
        "-p",
        "cinder-plugin-videos",
        "--features",
        "cinder-sdk/testing",
    ];
    run(cargo()
        .args(["clippy"])
        .args(native)
        .args(["--all-targets", "--", "-D", "warnings"]))?;
    run(cargo().arg("test").args(native))?;
    run(cargo()
        .args(["test", "--release"])
        .env("CINDER_MODELS", &models)
        .env("CINDER_FIXTURES", &fixtures)
        .env("CINDER_REFERENCE", root().join("../shared/reference")))?;
    cross::aarch64_tests(false)?;
    let cinder = build_host()?;
    run(Command::new(venv_dir().join("bin/python"))
        .args(["-m", "pytest", "-q", "tests/e2e"])
        .current_dir(root())
        .env("CINDER_BIN", cinder)
        .env("CINDER_PLUGINS", &plugins)
        .env("CINDER_EXAMPLES", &examples)
        .env("CINDER_MODELS", &models)
        .env("CINDER_REFERENCE", root().join("../shared/reference"))
        .env("CINDER_CL100K", cl100k_ranks()?)
        .env("CINDER_CONFIG", root().join("cinder.example.toml")))
}

/// OpenAI's cl100k_base ranks file as the tiktoken-rs crate ships it: the e2e tests hand it
/// to Python's tiktoken (which would download the same file, checked by the same sha256),
/// so LangChain's default `OpenAIEmbeddings` runs offline.
fn cl100k_ranks() -> Result<PathBuf> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--locked"])
        .output()
        .context("cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let manifest = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "tiktoken-rs")
        .and_then(|p| p["manifest_path"].as_str())
        .context("tiktoken-rs is not in the dependency graph")?;
    let ranks = Path::new(manifest)
        .parent()
        .context("tiktoken-rs manifest path")?
        .join("assets/cl100k_base.tiktoken");
    if !ranks.exists() {
        bail!("{} is missing", ranks.display());
    }
    Ok(ranks)
}
