//! `cinder-sdk`: what a Cinder plugin depends on.
//!
//! A plugin is a `cdylib` built for `wasm32-wasip2` that implements [`Handler`] and exports it
//! with [`export_chat_plugin!`]. It reaches the inference core through [`inference`], writes its
//! response into a host-owned [`sink::ResponseSink`] (the host does the SSE framing), and logs
//! through [`debug`]/[`info`]/[`warn`]. OpenAI wire types come from [`openai`].
//!
//! ```ignore
//! struct Echo;
//! impl cinder_sdk::Handler for Echo {
//!     fn handle(req: cinder_sdk::Request, sink: &cinder_sdk::sink::ResponseSink) -> Result<(), cinder_sdk::Error> {
//!         cinder_sdk::respond_json(sink, 200, &serde_json::json!({"echo": req.body}))
//!     }
//! }
//! cinder_sdk::export_chat_plugin!(Echo);
//! ```

#![deny(missing_docs)]

/// Generated WIT bindings (`cinder:plugin@0.1.5`, world `sdk`: every family's imports and
/// exports; the host uses the exports of the world a plugin's manifest names).
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.1",
        world: "sdk",
        pub_export_macro: true,
        export_macro_name: "export_sdk_bindings",
        default_bindings_module: "cinder_sdk::bindings",
    });
}

pub mod chat;
pub mod completions;
pub mod embeddings;
mod fan_in;
pub mod host;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tools;
mod validate;

pub use bindings::cinder::plugin::{config, documents, inference, log, sink, types};
pub use bindings::exports::cinder::plugin::handler::{Guest as Handler, Request};
pub use cinder_openai as openai;
pub use types::{Error, ErrorDetail};

/// Exports a [`Handler`] implementation as the plugin's `handler` interface (for a
/// `chat-plugin` manifest). The component also exports `tools`, as every SDK plugin does;
/// here it answers that this plugin does not provide tools.
#[macro_export]
macro_rules! export_chat_plugin {
    ($ty:ident) => {
        #[doc(hidden)]
        pub struct __CinderHandlerExport;

        impl $crate::Handler for __CinderHandlerExport {
            fn handle(
                request: $crate::Request,
                sink: &$crate::sink::ResponseSink,
            ) -> ::core::result::Result<(), $crate::Error> {
                <$ty as $crate::Handler>::handle(request, sink)
            }
        }

        impl $crate::bindings::exports::cinder::plugin::tools::Guest for __CinderHandlerExport {
            fn render(
                _model: ::std::string::String,
                _messages: ::std::vec::Vec<$crate::bindings::exports::cinder::plugin::tools::Message>,
                _tools: ::core::option::Option<$crate::bindings::exports::cinder::plugin::tools::ToolUse>,
            ) -> ::core::result::Result<$crate::bindings::exports::cinder::plugin::tools::Prompt, $crate::Error> {
                ::core::result::Result::Err($crate::tools::export::not_provided())
            }

            fn parse(
                _model: ::std::string::String,
                _text: ::std::string::String,
                _tools: $crate::bindings::exports::cinder::plugin::tools::ToolUse,
            ) -> ::core::result::Result<::core::option::Option<::std::vec::Vec<$crate::bindings::exports::cinder::plugin::tools::Call>>, $crate::Error> {
                ::core::result::Result::Err($crate::tools::export::not_provided())
            }
        }

        $crate::bindings::export_sdk_bindings!(__CinderHandlerExport with_types_in $crate::bindings);
    };
}

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

/// The sampling arguments of a `generate-request` as OpenAI's request parameters (the
/// same in chat and legacy completions).
pub(crate) const SAMPLING_PARAMS: [(&str, &str); 5] = [
    ("sampling.temperature", "temperature"),
    ("sampling.top-p", "top_p"),
    ("sampling.presence-penalty", "presence_penalty"),
    ("sampling.frequency-penalty", "frequency_penalty"),
    ("sampling.logit-bias", "logit_bias"),
];

/// A 400 `invalid_request_error` naming `param`.
pub fn invalid_request(message: &str, param: Option<&str>) -> Error {
    Error::InvalidRequest(ErrorDetail {
        message: message.to_owned(),
        param: param.map(str::to_owned),
        code: None,
    })
}

/// Serializes `value` and sends it as one SSE event.
pub fn send_json(sink: &sink::ResponseSink, value: &impl serde::Serialize) -> Result<(), Error> {
    let data = serde_json::to_string(value)
        .map_err(|e| Error::Internal(format!("serializing an event: {e}")))?;
    sink.send_event(&data).map_err(sink_error)
}

/// Serializes `value` and sends it as the whole response with `status`.
pub fn respond_json(
    sink: &sink::ResponseSink,
    status: u16,
    value: &impl serde::Serialize,
) -> Result<(), Error> {
    let body = serde_json::to_string(value)
        .map_err(|e| Error::Internal(format!("serializing the response: {e}")))?;
    sink.respond(status, &body).map_err(sink_error)
}

pub(crate) fn sink_error(e: sink::SinkError) -> Error {
    match e {
        // The client is gone: nobody will read an error either; end the call quietly.
        sink::SinkError::Closed => Error::Unavailable("the client closed the connection".into()),
        sink::SinkError::AlreadyResponded => {
            Error::Internal("the plugin wrote two responses".into())
        }
    }
}

/// This plugin's setting `key` from the host's config file (`[plugins.settings.<id>]`), as it
/// stands for this request. Edits to the file apply to the next request.
pub fn setting(key: &str) -> Option<String> {
    config::get(key)
}

/// OpenAI's `finish_reason` for a generation that ended this way.
pub(crate) fn finish_reason(r: types::FinishReason) -> String {
    match r {
        types::FinishReason::Stop => "stop".into(),
        types::FinishReason::Length => "length".into(),
    }
}

/// Seconds since the Unix epoch (OpenAI's `created`).
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
