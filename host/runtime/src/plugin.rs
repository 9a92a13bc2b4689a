//! Plugins on disk (`<dir>/<name>/plugin.toml` + `plugin.wasm`), compiled into `InstancePre`s,
//! and the route table that maps `method path` to a plugin.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::bindings::ChatPluginPre;
use crate::bindings::job_world::JobPluginPre;
use crate::bindings::tools_world::ToolsPluginPre;
use crate::cache::CompileCache;
use crate::failure::RuntimeError;
use crate::manifest::{Capability, Manifest, check_imports, valid_collection};
use crate::routing::{HOST_ROUTES, MatchedRoute, Route, overlaps, path_params, valid_route_id};
use crate::state::HostState;

/// The WIT minor a plugin must be built against (any 0.1.x).
const WIT_MINOR: &str = "0.1.";
/// The newest WIT this host implements (`wit/v0.1/worlds.wit`).
pub const WIT_SERVED: &str = "0.1.14";

/// A compiled plugin of one of the worlds this host serves.
pub(crate) enum Pre {
    /// `chat-plugin`, `embeddings-plugin`, `store-plugin`, `job-plugin` or `agent-plugin` (the
    /// world named): serves HTTP
    /// routes through `handler`. They differ in their imports only, which the linker provides
    /// for all.
    Handler(ChatPluginPre<HostState>, &'static str),
    /// `tools-plugin`: serves other plugins through `tools`.
    Tools(ToolsPluginPre<HostState>),
}

impl Pre {
    pub(crate) fn world(&self) -> &'static str {
        match self {
            Pre::Handler(_, world) => world,
            Pre::Tools(_) => "tools-plugin",
        }
    }

    pub(crate) fn instance_pre(&self) -> &wasmtime::component::InstancePre<HostState> {
        match self {
            Pre::Handler(p, _) => p.instance_pre(),
            Pre::Tools(p) => p.instance_pre(),
        }
    }

    /// Whether a started instance's exports have the world's types.
    pub(crate) fn check_exports(
        &self,
        store: &mut wasmtime::Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<()> {
        match self {
            Pre::Handler(..) => crate::bindings::ChatPlugin::new(store, instance).map(|_| ()),
            Pre::Tools(_) => {
                crate::bindings::tools_world::ToolsPlugin::new(store, instance).map(|_| ())
            }
        }
    }
}

/// The export that names a world's WIT version.
fn versioned_export(world: &str) -> Option<&'static str> {
    match world {
        "chat-plugin" | "embeddings-plugin" | "store-plugin" | "job-plugin" | "agent-plugin" => {
            Some("cinder:plugin/handler@")
        }
        "tools-plugin" => Some("cinder:plugin/tools@"),
        _ => None,
    }
}

/// Whether plugins of `world` export `job-runner` (and may declare job kinds).
fn runs_jobs(world: &str) -> bool {
    matches!(world, "job-plugin" | "agent-plugin")
}

/// What `/health` and the logs say about a loaded plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub id: String,
    pub version: String,
    /// The WIT version its handler export was built against, e.g. `0.1.0`.
    pub wit_version: String,
    /// `METHOD /path` for each route it owns.
    pub routes: Vec<String>,
    /// The world it implements (`chat-plugin`, `embeddings-plugin`, `tools-plugin`).
    pub world: String,
    /// The interfaces its component exports (`cinder:plugin/handler@0.1.6`): a plugin built
    /// with the SDK exports only what its world serves.
    pub exports: Vec<String>,
}

/// A compiled plugin, ready to instantiate.
pub struct Plugin {
    pub(crate) info: PluginInfo,
    pub(crate) pre: Pre,
    /// Each route's id (the manifest's, or `METHOD /pattern`), in the order of `info.routes`.
    pub(crate) route_ids: Vec<String>,
    /// Whether each route's body is a multipart form, in the order of `info.routes`.
    pub(crate) route_bodies: Vec<crate::routing::RouteBody>,
    /// The store collections its manifest names.
    pub(crate) collections: std::sync::Arc<[String]>,
    /// A `job-plugin`'s steps (its `job-runner` export) and the job kinds its manifest names.
    pub(crate) jobs: Option<(JobPluginPre<HostState>, std::sync::Arc<[String]>)>,
    /// What its manifest grants beyond the baseline.
    pub(crate) capabilities: Vec<Capability>,
    /// The folder it was loaded from.
    pub(crate) dir: PathBuf,
    /// Digest of manifest + wasm: an unchanged plugin is not compiled again on reload.
    digest: u64,
}

fn digest(manifest: &[u8], wasm: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    manifest.hash(&mut h);
    wasm.hash(&mut h);
    h.finish()
}

/// Digest of a plugin folder's two files, or `None` if they cannot be read as a pair.
fn digest_of(dir: &Path) -> Option<u64> {
    let (manifest, wasm) = read_pair(dir).ok()?;
    Some(digest(&manifest, &wasm))
}

/// Reads a folder's `plugin.toml` and `plugin.wasm` as one pair, so that a deploy replacing
/// them one after the other never gets a new manifest loaded with the old component (or the
/// reverse). The manifest is read before and after the component, and the component's size
/// and modification time taken before and after it is read; any change in between means a
/// writer is at work, so it reads again a little later.
fn read_pair(dir: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let stamp = || {
        let m = std::fs::metadata(dir.join("plugin.wasm")).ok()?;
        Some((m.len(), m.modified().ok()?))
    };
    read_pair_with(|name| std::fs::read(dir.join(name)), stamp)
}

fn read_pair_with<S: PartialEq>(
    mut read: impl FnMut(&str) -> std::io::Result<Vec<u8>>,
    mut stamp: impl FnMut() -> Option<S>,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    const ATTEMPTS: u32 = 5;
    let file = |name: &'static str| move |e: std::io::Error| format!("{name}: {e}");
    for attempt in 1..=ATTEMPTS {
        let manifest = read("plugin.toml").map_err(file("plugin.toml"))?;
        let before = stamp();
        let wasm = read("plugin.wasm").map_err(file("plugin.wasm"))?;
        let steady = before.is_some()
            && stamp() == before
            && read("plugin.toml").map_err(file("plugin.toml"))? == manifest;
        if steady {
            return Ok((manifest, wasm));
        }
        if attempt < ATTEMPTS {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Err(
        "plugin.toml and plugin.wasm kept changing while being read; the next change reloads it"
            .into(),
    )
}

impl Plugin {
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Reads, compiles and links one plugin folder.
    pub(crate) fn load(
        engine: &Engine,
        linker: &Linker<HostState>,
        cache: &CompileCache,
        dir: &Path,
    ) -> Result<Plugin, RuntimeError> {
        let fail = |reason: String| RuntimeError::Plugin {
            path: dir.display().to_string(),
            reason,
        };
        let (manifest_bytes, bytes) = read_pair(dir).map_err(fail)?;
        let manifest_text =
            String::from_utf8(manifest_bytes).map_err(|_| fail("plugin.toml: not UTF-8".into()))?;
        let manifest: Manifest =
            toml::from_str(&manifest_text).map_err(|e| fail(format!("plugin.toml: {e}")))?;
        // The id names the plugin's storage folder and its settings: a path (`../../x`) or a
        // name another plugin could shadow by spelling must never get that far.
        if !valid_id(&manifest.id) {
            return Err(fail(format!(
                "id `{}` is not allowed: ids are 1 to 64 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit",
                manifest.id
            )));
        }
        // The API's namespace: a plugin cannot claim `/health` or a path a proxy or the host
        // may give another meaning.
        if let Some(r) = manifest.routes.iter().find(|r| !r.path.starts_with("/v1/")) {
            return Err(fail(format!(
                "route {} {} is outside /v1/: plugins serve the API's routes only",
                r.method, r.path
            )));
        }
        let Some(export) = versioned_export(&manifest.world) else {
            return Err(fail(format!(
                "world `{}` is not one this host serves (chat-plugin, embeddings-plugin, store-plugin, job-plugin, agent-plugin, tools-plugin)",
                manifest.world
            )));
        };
        if let Some(r) = manifest
            .routes
            .iter()
            .find(|r| HOST_ROUTES.iter().any(|h| overlaps(h, &r.path)))
        {
            return Err(fail(format!(
                "route {} {} overlaps a route the host serves itself (/v1/models)",
                r.method, r.path
            )));
        }
        // The guest sees data/ through a capability-based directory handle that never
        // follows a link out of it; a data/ that is itself a link would aim that handle
        // anywhere.
        let data = dir.join("data");
        if manifest.capabilities.contains(&Capability::Filesystem)
            && std::fs::symlink_metadata(&data).is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(fail(
                "data/ is a symbolic link: the filesystem grant mounts a real folder only".into(),
            ));
        }
        let mut ids = Vec::new();
        for r in &manifest.routes {
            match &r.id {
                Some(id) if !valid_route_id(id) => {
                    return Err(fail(format!(
                        "route id `{id}` is not 1 to 64 lowercase letters, digits, `.`, `_` or `-`"
                    )));
                }
                Some(id) if ids.contains(&id) => {
                    return Err(fail(format!("two routes have the id `{id}`")));
                }
                Some(id) => ids.push(id),
                None => {}
            }
        }
        if let Some(c) = manifest.collections.iter().find(|c| !valid_collection(c)) {
            return Err(fail(format!(
                "collection `{c}` is not 1 to 64 lowercase letters, digits or `_`"
            )));
        }
        if let Some(k) = manifest.jobs.iter().find(|k| !valid_collection(k)) {
            return Err(fail(format!(
                "job kind `{k}` is not 1 to 64 lowercase letters, digits or `_`"
            )));
        }
        if !runs_jobs(&manifest.world) && !manifest.jobs.is_empty() {
            return Err(fail(format!(
                "a {} runs no jobs: `jobs` needs world = \"job-plugin\" (or \"agent-plugin\")",
                manifest.world
            )));
        }
        if manifest.world == "tools-plugin" && !manifest.routes.is_empty() {
            return Err(fail(
                "a tools plugin serves other plugins, not routes: its plugin.toml has `routes`"
                    .into(),
            ));
        }
        let component = cache
            .component(engine, &bytes)
            .map_err(|e| fail(format!("not a valid component for this host: {e}")))?;

        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let wit_version = ty
            .exports(engine)
            .find_map(|(name, _)| name.strip_prefix(export).map(str::to_owned))
            .ok_or_else(|| fail(format!("it does not export `{export}{WIT_MINOR}x`")))?;
        if !wit_version.starts_with(WIT_MINOR) {
            return Err(fail(format!(
                "it was built against cinder:plugin@{wit_version}; this host serves cinder:plugin@0.1.0 to @{WIT_SERVED} (0.1 is the first released minor, so there is no older one to serve)"
            )));
        }
        let imports: Vec<String> = ty
            .imports(engine)
            .filter(|(name, item)| !type_only(engine, name, &item.ty))
            .map(|(name, _)| name.to_owned())
            .collect();
        check_imports(imports.iter().map(String::as_str), &manifest.capabilities).map_err(fail)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| fail(format!("it cannot be linked: {e}")))?;
        let jobs = match runs_jobs(&manifest.world) {
            true => Some((
                JobPluginPre::new(pre.clone())
                    .map_err(|e| fail(format!("it does not implement {}: {e}", manifest.world)))?,
                manifest.jobs.clone().into(),
            )),
            false => None,
        };
        let pre = match manifest.world.as_str() {
            "tools-plugin" => ToolsPluginPre::new(pre).map(Pre::Tools),
            "embeddings-plugin" => {
                ChatPluginPre::new(pre).map(|p| Pre::Handler(p, "embeddings-plugin"))
            }
            "store-plugin" => ChatPluginPre::new(pre).map(|p| Pre::Handler(p, "store-plugin")),
            "job-plugin" => ChatPluginPre::new(pre).map(|p| Pre::Handler(p, "job-plugin")),
            "agent-plugin" => ChatPluginPre::new(pre).map(|p| Pre::Handler(p, "agent-plugin")),
            _ => ChatPluginPre::new(pre).map(|p| Pre::Handler(p, "chat-plugin")),
        }
        .map_err(|e| fail(format!("it does not implement {}: {e}", manifest.world)))?;
        let routes: Vec<String> = manifest
            .routes
            .iter()
            .map(|r| format!("{} {}", r.method.to_uppercase(), r.path))
            .collect();
        let route_ids = manifest
            .routes
            .iter()
            .zip(&routes)
            .map(|(r, named)| r.id.clone().unwrap_or_else(|| named.clone()))
            .collect();
        Ok(Plugin {
            info: PluginInfo {
                id: manifest.id,
                version: manifest.version,
                wit_version,
                exports,
                routes,
                world: manifest.world,
            },
            pre,
            route_ids,
            route_bodies: manifest.routes.iter().map(|r| r.body).collect(),
            collections: manifest.collections.into(),
            jobs,
            capabilities: manifest.capabilities,
            dir: dir.to_path_buf(),
            digest: digest(manifest_text.as_bytes(), &bytes),
        })
    }
}

/// An imported Cinder interface the component uses only for its types (every SDK plugin
/// exports `tools`, whose records name `inference.constraint`): nothing callable comes in, so
/// it needs no capability.
fn type_only(
    engine: &Engine,
    name: &str,
    item: &wasmtime::component::types::ComponentItem,
) -> bool {
    use wasmtime::component::types::ComponentItem;
    name.starts_with("cinder:plugin/")
        && matches!(item, ComponentItem::ComponentInstance(i)
            if !i.exports(engine).any(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_))))
}

/// The outcome of looking up a route.
pub enum RouteMatch {
    Found(Arc<Plugin>, MatchedRoute),
    /// The path exists, but not for this method.
    MethodNotAllowed,
    NotFound,
}

/// An immutable snapshot of loaded plugins; a reload builds a new one and swaps it in.
#[derive(Default, Clone)]
pub(crate) struct Registry {
    plugins: Vec<Arc<Plugin>>,
    routes: Vec<Route>,
    /// Plugin folders refused at the last (re)load, with the reason.
    pub(crate) failures: Vec<(String, String)>,
}

impl Registry {
    /// The job kinds the loaded job plugins run, as the store names them (`<plugin>/<kind>`).
    pub(crate) fn job_kinds(&self) -> Vec<String> {
        self.plugins
            .iter()
            .filter_map(|p| Some((&p.info.id, &p.jobs.as_ref()?.1)))
            .flat_map(|(id, kinds)| kinds.iter().map(move |k| format!("{id}/{k}")))
            .collect()
    }

    /// The loaded plugin `id`.
    pub(crate) fn plugin(&self, id: &str) -> Option<Arc<Plugin>> {
        self.plugins.iter().find(|p| p.info.id == id).cloned()
    }

    /// The loaded tools plugin, if any (at most one is loaded).
    pub(crate) fn tools(&self) -> Option<Arc<Plugin>> {
        self.plugins
            .iter()
            .find(|p| matches!(p.pre, Pre::Tools(_)))
            .cloned()
    }
}

impl Registry {
    /// Loads every plugin folder under `dir`. A folder that fails keeps its previous version
    /// from `previous` (if any) and is listed in `failures`; unchanged folders are reused
    /// without compiling.
    pub(crate) fn load_dir(
        dir: &Path,
        previous: &Registry,
        load: impl Fn(&Path) -> Result<Plugin, RuntimeError>,
    ) -> Result<Registry, RuntimeError> {
        let entries = std::fs::read_dir(dir).map_err(|e| RuntimeError::Plugin {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut dirs: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("plugin.toml").exists())
            .collect();
        // Folders already serving first, then new ones by name: a plugin added later cannot
        // take the id or the routes of one that is live.
        dirs.sort_by_key(|d| (!previous.plugins.iter().any(|p| &p.dir == d), d.clone()));
        let mut registry = Registry::default();
        for d in dirs {
            let old = previous.plugins.iter().find(|p| p.dir == d);
            let loaded = match old {
                Some(old) if digest_of(&d) == Some(old.digest) => Ok(old.clone()),
                _ => load(&d).map(Arc::new),
            };
            // Two folders may not share an id (it names storage and settings): the first
            // folder, in name order, keeps it and the other is refused.
            let result = loaded.and_then(|p| {
                match registry.plugins.iter().find(|o| o.info.id == p.info.id) {
                    Some(other) => Err(RuntimeError::Plugin {
                        path: d.display().to_string(),
                        reason: format!(
                            "id `{}` is already taken by the plugin in {}",
                            p.info.id,
                            other.dir.display()
                        ),
                    }),
                    None => registry.insert(p),
                }
            });
            if let Err(e) = result {
                let reason = match &e {
                    RuntimeError::Plugin { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                tracing::warn!(path = %d.display(), %reason, "plugin refused; its previous version (if any) keeps serving");
                registry.failures.push((d.display().to_string(), reason));
                if let Some(old) = old {
                    // The previous version's routes were valid beside the others before.
                    let _ = registry.insert(old.clone());
                }
            }
        }
        Ok(registry)
    }

    pub(crate) fn insert(&mut self, plugin: Arc<Plugin>) -> Result<(), RuntimeError> {
        // Replacing a plugin with the same id drops its old routes first.
        if let Some(old) = self
            .plugins
            .iter()
            .position(|p| p.info.id == plugin.info.id)
        {
            self.plugins.remove(old);
            self.routes.retain(|r| r.plugin != old);
            for r in &mut self.routes {
                if r.plugin > old {
                    r.plugin -= 1;
                }
            }
        }
        if let (Pre::Tools(_), Some(other)) = (&plugin.pre, self.tools()) {
            return Err(RuntimeError::Plugin {
                path: plugin.info.id.clone(),
                reason: format!(
                    "the tools plugin `{}` is already loaded; one serves at a time",
                    other.info.id
                ),
            });
        }
        let index = self.plugins.len();
        let mut new_routes = Vec::new();
        for ((route, id), body) in plugin
            .info
            .routes
            .iter()
            .zip(&plugin.route_ids)
            .zip(&plugin.route_bodies)
        {
            let (method, path) = route.split_once(' ').unwrap_or(("POST", route));
            // Routing takes the first match, so any path both patterns match would be
            // decided by load order: `/v1/{x}/completions` must not take chat's requests.
            if let Some(clash) = self
                .routes
                .iter()
                .find(|r| r.method == method && overlaps(&r.pattern, path))
            {
                return Err(RuntimeError::Plugin {
                    path: plugin.info.id.clone(),
                    reason: format!(
                        "route {route} overlaps {} {} of `{}`",
                        clash.method, clash.pattern, self.plugins[clash.plugin].info.id
                    ),
                });
            }
            new_routes.push(Route {
                method: method.to_owned(),
                pattern: path.to_owned(),
                id: id.clone(),
                body: *body,
                plugin: index,
            });
        }
        self.routes.extend(new_routes);
        self.plugins.push(plugin);
        Ok(())
    }

    pub(crate) fn infos(&self) -> Vec<PluginInfo> {
        self.plugins.iter().map(|p| p.info.clone()).collect()
    }

    pub(crate) fn route(&self, method: &str, path: &str) -> RouteMatch {
        let path = path.trim_end_matches('/');
        let mut path_known = false;
        for r in &self.routes {
            if let Some(params) = path_params(&r.pattern, path) {
                // Methods are case-sensitive (RFC 9110): `post` is not POST.
                if r.method == method {
                    let matched = MatchedRoute {
                        id: r.id.clone(),
                        params,
                        body: r.body,
                    };
                    return RouteMatch::Found(self.plugins[r.plugin].clone(), matched);
                }
                path_known = true;
            }
        }
        if path_known {
            RouteMatch::MethodNotAllowed
        } else {
            RouteMatch::NotFound
        }
    }
}

/// `[a-z0-9][a-z0-9_-]{0,63}`.
fn valid_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && id.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests;
