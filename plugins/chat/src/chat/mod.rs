//! `POST /v1/chat/completions` and the stored-completions routes.
//!
//! [`Chat`] is the pipeline's seams: [`crate::FirstParty`] takes every default; the plugin's
//! tests override `prepare` and `rewrite` to see that the seams hold.

mod calls;
mod plan;
mod run;
pub mod stored;

pub use plan::Plan;
pub use run::complete;

use cinder_sdk::{Error, Host, Request, Route};

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

    /// Handles a chat request. `host` is the real host in a plugin, a fake in native tests.
    fn complete(&self, request: Request, host: &dyn Host) -> Result<(), Error> {
        complete(self, request, host)
    }

    /// Serves the stored-completions routes (`chat.list`, `chat.retrieve`, `chat.update`,
    /// `chat.delete`, `chat.messages`; the manifest grants `storage`).
    fn stored(&self, route: &Route, request: Request, host: &dyn Host) -> Result<(), Error> {
        stored::serve(route, request, host)
    }

    /// Handles `POST /v1/completions` (legacy text completions); [`Chat::rewrite`] applies
    /// to its generated text too.
    fn complete_legacy(&self, request: Request, host: &dyn Host) -> Result<(), Error> {
        crate::completions::complete(self, request, host)
    }
}
