//! `plugin.toml`, and the check that a component imports nothing its manifest did not ask for.
//!
//! A manifest is a promise an operator can read before dropping a plugin in: which routes it
//! takes over and what it may reach. The host holds the component to it by comparing the
//! interfaces it actually imports with the capabilities it declares.

use serde::Deserialize;

use crate::routing::RouteBody;

/// `plugin.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub(crate) id: String,
    pub(crate) version: String,
    pub(crate) world: String,
    /// The routes it owns (none for a tools plugin, which serves other plugins).
    #[serde(default)]
    pub(crate) routes: Vec<RouteSpec>,
    /// What the plugin may reach beyond the baseline; see [`Capability`].
    #[serde(default)]
    pub(crate) capabilities: Vec<Capability>,
    /// The store collections it may read and write (WIT `store`, with `storage`).
    #[serde(default)]
    pub(crate) collections: Vec<String>,
    /// The kinds of background job it queues and runs (WIT `jobs`, world `job-plugin`).
    #[serde(default)]
    pub(crate) jobs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteSpec {
    /// What the plugin calls this route (`chat.create`): the guest gets it with the request
    /// (`cinder:plugin/route`), so it dispatches on data. Optional: without it the route is
    /// named `METHOD /pattern`.
    #[serde(default)]
    pub(crate) id: Option<String>,
    pub(crate) method: String,
    pub(crate) path: String,
    /// How the host reads the request body: `json` (the default: whole, as text),
    /// `multipart` (parsed by the host, read by the plugin a part at a time) or
    /// `json-or-multipart` (either, as the request's `Content-Type` says).
    #[serde(default)]
    pub(crate) body: RouteBody,
}

/// A collection name as a manifest may write it: `[a-z0-9_]{1,64}`.
pub(crate) fn valid_collection(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A capability a manifest may ask for.
///
/// Every plugin gets, without asking: `cinder:plugin/types` and `sink` (a handler cannot answer
/// without them), `config` (its own settings) and the WASI interfaces Rust's standard library links in (clocks, random,
/// stdio, exit, environment, filesystem types). Those are inert by default: no environment
/// variables, no preopened directories, no network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// `cinder:plugin/inference` (tokenize, templates, generation),
    /// `cinder:plugin/embeddings` and `cinder:plugin/images`.
    Inference,
    /// `cinder:plugin/log`: structured log records.
    Log,
    /// `wasi:sockets`: outbound TCP/UDP and name lookup.
    Network,
    /// A read-only view of the plugin's own `data/` folder, mounted at `/data`.
    Filesystem,
    /// Durable state kept by the host: documents (`cinder:plugin/documents`) and the store's
    /// objects and blobs (`cinder:plugin/store`, in the collections the manifest names).
    /// Every plugin may import both; without this grant each call fails.
    Storage,
}

impl Capability {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Capability::Inference => "inference",
            Capability::Log => "log",
            Capability::Network => "network",
            Capability::Filesystem => "filesystem",
            Capability::Storage => "storage",
        }
    }
}

/// The capability an import needs, `Ok(None)` for the baseline, `Err` for an interface this
/// host never provides.
fn needed(import: &str) -> Result<Option<Capability>, ()> {
    let (package, _version) = import.split_once('@').unwrap_or((import, ""));
    match package {
        // `documents` is linked into every SDK plugin (the host trait is a vtable), so the
        // import is baseline and the grant is checked per call, like WASI files and preopens.
        "cinder:plugin/types"
        | "cinder:plugin/sink"
        | "cinder:plugin/config"
        | "cinder:plugin/documents"
        // Like `documents`: linked into every SDK plugin; each call checks the grant.
        | "cinder:plugin/store"
        | "cinder:plugin/multipart"
        | "cinder:plugin/vectors"
        // `jobs` needs `storage` (checked per call); `dispatch` works only inside a job step,
        // and the calls it makes are held to their own plugins' grants.
        | "cinder:plugin/jobs"
        | "cinder:plugin/dispatch"
        | "cinder:plugin/route"
        // Calls into the tools plugin: it can reach no more than the caller could.
        | "cinder:plugin/tools" => Ok(None),
        "cinder:plugin/inference" | "cinder:plugin/embeddings" | "cinder:plugin/images" => {
            Ok(Some(Capability::Inference))
        }
        "cinder:plugin/log" => Ok(Some(Capability::Log)),
        p if p.starts_with("wasi:sockets/") => Ok(Some(Capability::Network)),
        p if p.starts_with("wasi:io/")
            || p.starts_with("wasi:clocks/")
            || p.starts_with("wasi:random/")
            || p.starts_with("wasi:cli/")
            || p.starts_with("wasi:filesystem/") =>
        {
            Ok(None)
        }
        _ => Err(()),
    }
}

/// Checks a component's imports against its manifest.
pub(crate) fn check_imports<'a>(
    imports: impl Iterator<Item = &'a str>,
    granted: &[Capability],
) -> Result<(), String> {
    for import in imports {
        match needed(import) {
            Ok(None) => {}
            Ok(Some(cap)) if granted.contains(&cap) => {}
            Ok(Some(cap)) => {
                return Err(format!(
                    "it imports `{import}`, which needs the capability `{}`; its plugin.toml does not ask for it (capabilities = [..., \"{}\"])",
                    cap.name(),
                    cap.name()
                ));
            }
            Err(()) => {
                return Err(format!(
                    "it imports `{import}`, which this host does not provide"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_held_to_the_manifest() {
        let chat = [
            "wasi:io/streams@0.2.6",
            "wasi:cli/stderr@0.2.6",
            "cinder:plugin/types@0.1.0",
            "cinder:plugin/inference@0.1.0",
        ];
        assert!(check_imports(chat.into_iter(), &[Capability::Inference]).is_ok());
        let e = check_imports(chat.into_iter(), &[]).unwrap_err();
        assert!(e.contains("`inference`"), "{e}");
        let e =
            check_imports(["wasi:sockets/tcp@0.2.6"].into_iter(), &[Capability::Log]).unwrap_err();
        assert!(e.contains("`network`"), "{e}");
        let e = check_imports(["wasi:http/outgoing-handler@0.2.6"].into_iter(), &[]).unwrap_err();
        assert!(e.contains("does not provide"), "{e}");
    }

    #[test]
    fn unknown_capabilities_are_refused() {
        let e = toml::from_str::<Manifest>(
            "id='x'\nversion='1'\nworld='chat-plugin'\nroutes=[]\ncapabilities=['root']",
        )
        .unwrap_err();
        assert!(e.to_string().contains("root"), "{e}");
    }
}
