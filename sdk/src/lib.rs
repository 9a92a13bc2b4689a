#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

/// Generated WIT bindings (`cinder:plugin@0.1.14`). The imports every family shares are
/// generated once, from the export-less world `plugin-imports`; each family's world is
/// generated beside them with its imports mapped onto those, so that a plugin exports only
/// what its family serves (the export macros in [`export`] pick the world).
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.1",
        world: "plugin-imports",
    });

    /// The export of the worlds that serve routes (`chat-plugin`, `embeddings-plugin`):
    /// `handler`. Both export the same interface, so its glue is generated once (from
    /// `chat-plugin`); what an embeddings plugin imports comes from the shared imports.
    pub mod handler {
        wit_bindgen::generate!({
            path: "../wit/v0.1",
            world: "chat-plugin",
            with: {
                "cinder:plugin/types@0.1.14": crate::bindings::cinder::plugin::types,
                "cinder:plugin/log@0.1.14": crate::bindings::cinder::plugin::log,
                "cinder:plugin/inference@0.1.14": crate::bindings::cinder::plugin::inference,
                "cinder:plugin/sink@0.1.14": crate::bindings::cinder::plugin::sink,
                "cinder:plugin/config@0.1.14": crate::bindings::cinder::plugin::config,
                "cinder:plugin/documents@0.1.14": crate::bindings::cinder::plugin::documents,
                "cinder:plugin/tools@0.1.14": crate::bindings::cinder::plugin::tools,
                "cinder:plugin/route@0.1.14": crate::bindings::cinder::plugin::route,
            },
            pub_export_macro: true,
            export_macro_name: "export_handler_world",
            default_bindings_module: "cinder_sdk::bindings::handler",
        });
    }

    /// The `job-runner` export of a `job-plugin` (WIT 0.1.8) or an `agent-plugin` (0.1.9).
    /// Such a plugin exports the shared `handler` glue too; generating the whole world here
    /// would define that glue's macros twice (wit-bindgen names them by interface), so this
    /// world has only the export that is new.
    pub mod job {
        wit_bindgen::generate!({
            path: "../wit/v0.1",
            world: "job-runner-export",
            with: {
                "cinder:plugin/types@0.1.14": crate::bindings::cinder::plugin::types,
            },
            pub_export_macro: true,
            export_macro_name: "export_job_runner_world",
            default_bindings_module: "cinder_sdk::bindings::job",
        });
    }

    /// World `tools-plugin`: exports `tools`.
    pub mod tools {
        wit_bindgen::generate!({
            path: "../wit/v0.1",
            world: "tools-plugin",
            with: {
                "cinder:plugin/types@0.1.14": crate::bindings::cinder::plugin::types,
                "cinder:plugin/log@0.1.14": crate::bindings::cinder::plugin::log,
                "cinder:plugin/inference@0.1.14": crate::bindings::cinder::plugin::inference,
                "cinder:plugin/config@0.1.14": crate::bindings::cinder::plugin::config,
            },
            pub_export_macro: true,
            export_macro_name: "export_tools_world",
            default_bindings_module: "cinder_sdk::bindings::tools",
        });
    }
}

pub mod calling;
pub mod export;
pub mod files;
pub mod host;
mod records;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;

pub use bindings::cinder::plugin::{
    config, dispatch, documents, embeddings, images, inference, jobs, log, multipart, route, sink,
    store, tools, types, vectors,
};
pub use cinder_openai as openai;
pub use export::{
    Job, Outcome, Request, Route, Serve, ServeAgent, ServeJobs, ServeStore, ToolsPlugin,
};
pub use host::Host;
pub use types::{Error, ErrorDetail};

impl From<cinder_openai::params::Invalid> for Error {
    /// A request that breaks one of OpenAI's rules is a 400 naming the parameter.
    fn from(e: cinder_openai::params::Invalid) -> Self {
        Error::InvalidRequest(ErrorDetail {
            message: e.message,
            param: e.param,
            code: e.code,
        })
    }
}

impl Error {
    /// This error with the host's argument names turned into the request parameters they
    /// came from. The host names what was wrong with a call in WIT's terms (`prompt`,
    /// `sampling.top-p`, `max-tokens`, `constraint`, `inputs`): only the plugin knows that a
    /// chat prompt came from `messages` and a legacy one from `prompt`. `names` maps a WIT
    /// name to a parameter; other names stay as they are.
    pub fn naming(self, names: &[(&str, &str)]) -> Self {
        let rename = |mut d: ErrorDetail| {
            if let Some(to) = d
                .param
                .as_deref()
                .and_then(|p| names.iter().find(|(from, _)| *from == p))
                .map(|(_, to)| (*to).to_owned())
            {
                d.param = Some(to);
            }
            d
        };
        match self {
            Error::InvalidRequest(d) => Error::InvalidRequest(rename(d)),
            Error::NotFound(d) => Error::NotFound(rename(d)),
            other => other,
        }
    }
}

impl Error {
    /// The HTTP status and OpenAI error body the host answers this error with, for a plugin
    /// that reports errors as data (a batch's error file, a run's `last_error`).
    pub fn to_http(&self) -> (u16, serde_json::Value) {
        let (status, kind, message, param, code) = match self {
            Error::InvalidRequest(d) => {
                (400, "invalid_request_error", &d.message, &d.param, &d.code)
            }
            Error::NotFound(d) => (404, "invalid_request_error", &d.message, &d.param, &d.code),
            Error::RateLimited(m) => (
                429,
                "rate_limit_error",
                m,
                &None,
                &Some("rate_limit_exceeded".to_owned()),
            ),
            Error::Unavailable(m) => (
                503,
                "server_error",
                m,
                &None,
                &Some("service_unavailable".to_owned()),
            ),
            Error::Internal(m) => (500, "server_error", m, &None, &None),
        };
        let body = serde_json::json!({
            "error": {"message": message, "type": kind, "param": param, "code": code}
        });
        (status, body)
    }
}

/// A 400 `invalid_request_error` naming `param`.
pub fn invalid_request(message: &str, param: Option<&str>) -> Error {
    Error::InvalidRequest(ErrorDetail {
        message: message.to_owned(),
        param: param.map(str::to_owned),
        code: None,
    })
}

/// The error a sink write becomes.
pub(crate) fn sink_error(e: sink::SinkError) -> Error {
    match e {
        // The client is gone: nobody will read an error either; end the call quietly.
        sink::SinkError::Closed => Error::Unavailable("the client closed the connection".into()),
        sink::SinkError::AlreadyResponded => {
            Error::Internal("the plugin wrote two responses".into())
        }
    }
}

/// Parses a JSON body into `T`; a mistake is a 400 naming the path of the field at fault
/// (`max_tokens`, `messages[0].role`). Fields `T` does not know are ignored, never refused
/// (newer clients send fields a server may not know yet), and logged at debug level.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, Error> {
    let (value, unknown) = openai::params::parse_body(body)?;
    if !unknown.is_empty() {
        debug(&format!("ignoring unknown fields: {}", unknown.join(", ")));
    }
    Ok(value)
}

/// A JSON object body (an empty body is `{}`) whose keys are all in `known`: for the APIs
/// where OpenAI refuses an unknown parameter by name (`unknown_parameter`), as the stateful
/// families do.
pub fn object_body(
    body: &str,
    known: &[&str],
) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
    let value: serde_json::Value = if body.trim().is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        parse_body(body)?
    };
    let serde_json::Value::Object(map) = value else {
        return Err(invalid_request("The body must be a JSON object", None));
    };
    if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Error::InvalidRequest(ErrorDetail {
            message: format!("Unknown parameter: '{key}'."),
            param: Some(key.clone()),
            code: Some("unknown_parameter".into()),
        }));
    }
    Ok(map)
}

/// A stateful family's list request as a store query: `limit` (1 to 100, 20 by default),
/// `order` (`desc` by default), `after`, `before`. A key neither these nor one of `filters`
/// (which the caller reads) is refused by name, as OpenAI does.
pub fn list_query(pairs: &[(String, String)], filters: &[&str]) -> Result<store::Query, Error> {
    let paging = ["limit", "order", "after", "before"];
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, _)| !paging.contains(&k.as_str()) && !filters.contains(&k.as_str()))
    {
        return Err(invalid_request(
            &format!("Unknown parameter: '{k}'."),
            Some(k),
        ));
    }
    let p = openai::params::list::ListParams::parse(pairs, 20, 100, true)?;
    let before = pairs
        .iter()
        .find(|(k, v)| k == "before" && !v.is_empty())
        .map(|(_, v)| v.clone());
    Ok(store::Query {
        limit: p.limit,
        order: if p.newest_first {
            store::Order::Desc
        } else {
            store::Order::Asc
        },
        after: p.after,
        before,
        status: None,
        metadata: Vec::new(),
    })
}

/// One page of a store listing answered as OpenAI's list object, each object shown by
/// `shown`.
pub fn respond_page(
    sink: &dyn host::Sink,
    page: &store::Page,
    shown: impl Fn(&store::Object) -> Result<serde_json::Value, Error>,
) -> Result<(), Error> {
    let data = page
        .objects
        .iter()
        .map(shown)
        .collect::<Result<Vec<_>, _>>()?;
    sink.respond_json(200, &openai::params::list::list_body(data, page.has_more))
}

/// Whether `id` could be an id the store made with `prefix` (anything else is not looked up:
/// a path segment is never a query).
pub fn well_formed_id(id: &str, prefix: &str) -> bool {
    id.starts_with(prefix)
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// OpenAI's 404 for an object of a stateful family: `No assistant found with id '...'.`
pub fn no_such(what: &str, id: &str) -> Error {
    Error::NotFound(ErrorDetail {
        message: format!("No {what} found with id '{id}'."),
        param: None,
        code: None,
    })
}

/// Seconds since the Unix epoch (OpenAI's `created`).
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A seed from the host's randomness, for a request that gives none: at most 2^53 - 1, so
/// JSON clients (which read numbers as doubles) get it back exactly.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(unix_time());
    h.finish() >> 11
}

/// Writes one log record under the plugin's id. Natively (unit tests with the `testing`
/// feature) there is no host: records go to stderr.
pub fn log_at(level: log::Level, message: &str) {
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
    #[cfg(target_arch = "wasm32")]
    log::log(level, message);
}

/// Logs at debug level under the plugin's id.
pub fn debug(message: &str) {
    log_at(log::Level::Debug, message);
}

/// Logs at info level under the plugin's id.
pub fn info(message: &str) {
    log_at(log::Level::Info, message);
}

/// Logs at warn level under the plugin's id.
pub fn warn(message: &str) {
    log_at(log::Level::Warn, message);
}

/// `format!`-style logging at any level: `cinder_sdk::log!(Info, "loaded {} rules", n)`.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        $crate::log_at($crate::log::Level::$level, &::std::format!($($arg)*))
    };
}
