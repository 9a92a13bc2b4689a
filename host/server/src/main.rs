#![doc = include_str!("../README.md")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use clap::Parser;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod auth;
mod cli_models;
mod config_watch;
mod cors;
mod error;
mod guard;
mod links;
mod load_progress;
mod multipart;
mod routes;
mod serve;
mod sse;

/// Command-line arguments; they override the config file.
#[derive(Debug, Parser)]
#[command(
    name = "cinder",
    version,
    about = "An OpenAI-compatible server for local models"
)]
struct Args {
    /// The TOML config file.
    #[arg(long, default_value = "cinder.toml")]
    config: PathBuf,
    /// Address to bind (overrides `server.host`).
    #[arg(long)]
    host: Option<String>,
    /// Port to bind; 0 picks a free one (overrides `server.port`).
    #[arg(long)]
    port: Option<u16>,
    /// Plugin folder (overrides `plugins.dir`).
    #[arg(long)]
    plugins: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Without a command, `cinder` serves.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The configured models: list, inspect, alias.
    Models {
        #[command(subcommand)]
        verb: ModelsVerb,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ModelsVerb {
    /// Every `[[models]]` entry: id, path, backend, aliases, and what the file holds.
    List,
    /// Architecture, quantization, context, layers, vocabulary and chat template of a model
    /// (a configured id or alias, or a GGUF path).
    Inspect {
        model: String,
        /// Print the whole chat template.
        #[arg(long)]
        template: bool,
    },
    /// Adds aliases to a model in the config file (a running server applies them at once).
    Alias {
        /// The model id.
        id: String,
        /// The aliases to add (or remove).
        #[arg(required = true)]
        aliases: Vec<String>,
        /// Remove these aliases instead.
        #[arg(long)]
        remove: bool,
    },
}

/// Runs a `cinder models ...` verb; its output is the command's result, on stdout.
fn models_verb(config_path: &std::path::Path, verb: ModelsVerb) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match verb {
        ModelsVerb::List => cli_models::list(&cinder_config::Config::load(config_path)?, &mut out),
        ModelsVerb::Inspect { model, template } => {
            // A file or folder needs no config: `cinder models inspect FILE` works anywhere.
            let config = match cinder_config::Config::load(config_path) {
                Ok(c) => Some(c),
                Err(_) if std::path::Path::new(&model).exists() => None,
                Err(e) => return Err(e.into()),
            };
            let models = config.as_ref().map_or(&[][..], |c| &c.models[..]);
            cli_models::inspect(models, &model, template, &mut out)
        }
        ModelsVerb::Alias {
            id,
            aliases,
            remove,
        } => {
            let now = cli_models::alias(config_path, &id, &aliases, remove)?;
            use std::io::Write;
            writeln!(out, "{id}: aliases = {now:?}")?;
            Ok(())
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Command::Models { verb }) = args.command {
        return models_verb(&args.config, verb);
    }
    let config = config_watch::load(&args.config)?;
    // RUST_LOG wins over server.log, and then config edits leave the filter alone.
    let (filter, from_env) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, true),
        Err(_) => (EnvFilter::try_new(&config.server.log)?, false),
    };
    let (filter, log_handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    // What an AVX2-only machine runs, on this one: for benchmarks (`cargo xtask bench
    // --avx2`), never needed to serve.
    if std::env::var("CINDER_AVX2_ONLY").is_ok_and(|v| v == "1") {
        cinder_core::quant::avx2_only(true);
        tracing::warn!("CINDER_AVX2_ONLY=1: the CPU kernels use only AVX2 and FMA");
    }

    let specs: Vec<cinder_core::ModelSpec> = config
        .models
        .iter()
        .map(|m| cinder_core::ModelSpec {
            id: m.id.clone(),
            path: m.path.clone(),
            backend: match m.backend {
                cinder_config::Backend::Auto => cinder_core::BackendPreference::Auto,
                cinder_config::Backend::Cpu => cinder_core::BackendPreference::Cpu,
                cinder_config::Backend::Flex => cinder_core::BackendPreference::Flex,
                cinder_config::Backend::Wgpu => cinder_core::BackendPreference::Wgpu,
            },
            threads: m.threads,
            prefix_cache_mib: m.prefix_cache_mib,
            embeddings: m.embeddings,
            raw_control_tokens: m.raw_control_tokens,
            q8_decode: m.decode_activations == cinder_config::Activations::Q8,
            q8_products: m.activations == cinder_config::Activations::Q8,
            image: image_settings(&m.image),
            engine: cinder_core::EngineLimits {
                max_running: config.limits.max_running_sequences as usize,
                max_kv_bytes: usize::try_from(config.limits.max_kv_mib << 20).unwrap_or(usize::MAX),
                max_waiting: config.limits.max_waiting_sequences as usize,
                grammar: grammar_limits(&config.limits.grammar),
            },
        })
        .collect();
    // Background-only inference runs on kernel threads scheduled like the job threads.
    let background = cinder_core::Background {
        nice: config.jobs.nice as i32,
        idle_class: config.jobs.idle_class,
    };
    cinder_core::set_background(background);
    let progress = load_progress::LoadProgress::new();
    let models = cinder_core::ModelRegistry::load_all_reporting(&specs, &|model, done, total| {
        progress.report(model, done, total)
    })
    .context("loading models");
    progress.finish();
    let models = Arc::new(models?);
    models
        .set_aliases(config_watch::aliases(&config, &models))
        .context("model aliases")?;
    // An adapter that does not load (its folder, its fit to the base) is left out, as a
    // model that does not load is: the rest serve.
    for a in &config.adapters {
        match models.load_adapter_folder(&a.id, &a.base, &a.path) {
            Ok(_) => tracing::info!(adapter = %a.id, base = %a.base, "adapter ready"),
            Err(e) => tracing::error!(adapter = %a.id, path = %a.path.display(), error = %e,
                "the adapter did not load; the rest serve"),
        }
    }

    let runtime = cinder_runtime::Runtime::new(
        models.clone(),
        config_watch::limits(&config),
        Some(config.plugins.cache_dir.clone()),
    )?;
    let plugin_dir = args
        .plugins
        .or(config.plugins.dir.clone())
        .context("no plugin folder: set plugins.dir or pass --plugins")?;
    // Built before the store: its connection pool lives on the runtime that serves.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store = tokio.block_on(async {
        let store = cinder_store::Store::open(&config.storage.dir, config.storage.url.as_deref())
            .await
            .context("opening the store")?;
        let moved = cinder_runtime::migrate_document_logs(&config.storage.dir, &store)
            .await
            .map_err(anyhow::Error::msg)
            .context("moving document logs into the store")?;
        info!(backend = ?store.backend(), moved, "store open");
        anyhow::Ok(store)
    })?;
    runtime.set_store(store.clone());
    runtime.set_plugin_settings(config_watch::plugin_settings(&config));
    runtime.set_network_grants(config.plugins.network_grants()?);
    for p in runtime.load_dir(&plugin_dir)? {
        info!(plugin = %p.id, version = %p.version, wit = %p.wit_version, routes = ?p.routes, "plugin loaded");
    }
    runtime.watch(&plugin_dir)?;
    {
        let j = &config.jobs;
        runtime
            .start_jobs(cinder_runtime::JobSettings {
                workers: j.workers as usize,
                lease: std::time::Duration::from_secs(j.lease_secs),
                poll: std::time::Duration::from_secs(j.poll_secs),
                max_attempts: j.max_attempts,
                step_retries: j.step_retries,
                dispatch_concurrency: j.dispatch_concurrency as usize,
                background,
            })
            .context("cannot start the job workers")?;
    }

    let settings = Arc::new(ArcSwap::from_pointee(config_watch::settings(&config)));
    let live = Arc::new(config_watch::Live {
        path: args.config.clone(),
        running: std::sync::Mutex::new(config.clone()),
        settings: settings.clone(),
        runtime: runtime.clone(),
        models: models.clone(),
        log: (!from_env).then_some(log_handle),
    });
    let _config_watcher = config_watch::watch(live).context("watching the config file")?;

    let connection_limits = serve::ConnectionLimits {
        header_read_timeout: std::time::Duration::from_secs(config.server.header_read_timeout_secs),
        max_connections: config.server.max_connections,
    };
    let host = args.host.unwrap_or(config.server.host.clone());
    let port = args.port.unwrap_or(config.server.port);
    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind((host.as_str(), port))
            .await
            .with_context(|| format!("binding {host}:{port}"))?;
        let addr: SocketAddr = listener.local_addr()?;
        let bound_loopback = addr.ip().is_loopback();
        if !bound_loopback && settings.load().api_keys.is_empty() {
            warn!(
                %addr,
                "LISTENING BEYOND THIS MACHINE WITH NO API KEYS: anyone who can reach {addr} can run models and read stored data; set server.api_keys"
            );
        }
        let app = routes::router(routes::AppState {
            models,
            runtime,
            store: Some(store),
            settings,
            bound_loopback,
        });
        info!("listening on http://{addr}");
        serve::serve(listener, app, connection_limits, shutdown_signal()).await?;
        info!("shut down");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// `[limits.grammar]` as the core takes it.
fn grammar_limits(g: &cinder_config::GrammarLimits) -> cinder_core::GrammarLimits {
    // Validated against bounds far below usize::MAX.
    let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    cinder_core::GrammarLimits {
        max_nodes: n(g.max_nodes),
        max_depth: n(g.max_depth),
        max_refs: n(g.max_refs),
        max_definitions: n(g.max_definitions),
        max_properties: n(g.max_properties),
        max_text_bytes: n(g.max_text_kib).saturating_mul(1024),
    }
}

/// `[models.image]` in the core's terms (the config checked every value when it loaded).
fn image_settings(c: &cinder_config::ImageModelConfig) -> cinder_core::ImageSettings {
    let defaults = cinder_core::ImageSettings::default();
    cinder_core::ImageSettings {
        sizes: c.parsed_sizes().unwrap_or_default(),
        steps: c.steps.map(|s| s as usize),
        guidance: c.guidance,
        scheduler: c
            .scheduler
            .as_deref()
            .and_then(cinder_core::SchedulerKind::from_name),
        max_waiting: c.max_waiting.map_or(defaults.max_waiting, |w| w as usize),
    }
}

#[cfg(test)]
mod tests {
    /// The config crate knows nothing of the core; this pins its defaults to the core's.
    #[test]
    fn the_configs_grammar_defaults_are_the_cores() {
        assert_eq!(
            super::grammar_limits(&cinder_config::GrammarLimits::default()),
            cinder_core::GrammarLimits::default()
        );
        let engine = cinder_core::EngineLimits::default();
        let limits = cinder_config::Limits::default();
        assert_eq!(limits.max_running_sequences as usize, engine.max_running);
        assert_eq!((limits.max_kv_mib << 20) as usize, engine.max_kv_bytes);
        assert_eq!(limits.max_waiting_sequences as usize, engine.max_waiting);
    }
}
