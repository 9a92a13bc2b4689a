//! The chat family: `POST /v1/chat/completions`.
//!
//! [`Chat`] carries the first-party behaviour in its default methods; a plugin overrides only
//! what it changes and exports itself with [`export_chat!`](crate::export_chat). Cinder's own
//! chat plugin is `impl Chat for FirstParty {}`.
//!
//! ```ignore
//! /// Chat that never shows a digit.
//! #[derive(Default)]
//! struct NoDigits;
//!
//! impl cinder_sdk::chat::Chat for NoDigits {
//!     fn rewrite(&self, _choice: u32, text: String) -> String {
//!         text.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect()
//!     }
//! }
//!
//! cinder_sdk::export_chat!(NoDigits);
//! ```

mod calls;
mod plan;
mod run;
pub mod stored;

pub use plan::Plan;
pub use run::complete;

use crate::host::Host;
use crate::{Error, Request};

/// A chat-completions plugin. Every method has the first-party behaviour as its default.
pub trait Chat {
    /// Sees the parsed, validated request before anything runs, and may change it (add a
    /// system message, cap `max_tokens`, route to another model) or refuse it with an error.
    fn prepare(&self, plan: Plan) -> Result<Plan, Error> {
        Ok(plan)
    }

    /// Sees each piece of generated text of choice `choice` before it is streamed or
    /// aggregated. Stop strings have already been applied; logprobs are not rewritten.
    fn rewrite(&self, choice: u32, text: String) -> String {
        let _ = choice;
        text
    }

    /// Handles the whole request; override only to replace the pipeline itself. `host` is
    /// the real host in a plugin, a fake in native tests (feature `testing`).
    fn complete(&self, request: Request, host: &dyn Host) -> Result<(), Error> {
        complete(self, request, host)
    }

    /// Serves the stored-completions routes (`GET /v1/chat/completions`, `GET|POST|DELETE
    /// /v1/chat/completions/{id}`, `GET /v1/chat/completions/{id}/messages`) when the
    /// manifest routes them here (and grants `storage`).
    fn stored(&self, request: Request, host: &dyn Host) -> Result<(), Error> {
        stored::serve(request, host)
    }

    /// Handles `POST /v1/completions` (legacy text completions) when the plugin's manifest
    /// routes it here; [`Chat::rewrite`] applies to its generated text too.
    fn complete_legacy(&self, request: Request, host: &dyn Host) -> Result<(), Error> {
        crate::completions::complete(self, request, host)
    }
}

/// Exports a [`Chat`] implementation (which must implement `Default`) as the plugin's handler:
/// `/v1/completions` goes to [`Chat::complete_legacy`], the stored-completions routes to
/// [`Chat::stored`], every other route to [`Chat::complete`].
#[macro_export]
macro_rules! export_chat {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __CinderChatExport;

        impl $crate::Handler for __CinderChatExport {
            fn handle(
                request: $crate::Request,
                sink: &$crate::sink::ResponseSink,
            ) -> ::core::result::Result<(), $crate::Error> {
                let chat = <$ty as ::core::default::Default>::default();
                let host = $crate::host::Wasm::new(sink);
                let path = request.path.split('?').next().unwrap_or("");
                if path == "/v1/completions" {
                    <$ty as $crate::chat::Chat>::complete_legacy(&chat, request, &host)
                } else if $crate::chat::stored::is_stored_route(&request.method, &request.path) {
                    <$ty as $crate::chat::Chat>::stored(&chat, request, &host)
                } else {
                    <$ty as $crate::chat::Chat>::complete(&chat, request, &host)
                }
            }
        }

        $crate::export_chat_plugin!(__CinderChatExport);
    };
}
