//! Cinder's tools plugin (world `tools-plugin`): how a request's tools shape the prompt and
//! the output, and how the model's answer becomes calls. Chat plugins reach it through the
//! host's `tools` import, so reloading it changes tool calling without touching chat.
//!
//! - a model whose chat template renders `tools` itself gets them through its template;
//! - any other model gets them in a system message, in the fallback format: calls are a JSON
//!   array `[{"name": ..., "arguments": {...}}]`, and earlier calls are rendered back in it;
//! - `required` and named calls are constrained to that array (names and arguments valid
//!   against the functions' schemas, one call at most without `parallel_tool_calls`);
//! - answers are read in the fallback format and in the formats tool-aware templates teach
//!   (`<tool_call>` blocks, a bare call object, `[TOOL_CALLS]`).

mod format;
mod render;

use cinder_sdk::tools::{Call, Message, Prompt, ToolUse};
use cinder_sdk::{Error, Host, ToolsPlugin};

/// The first-party tools plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstParty;

impl ToolsPlugin for FirstParty {
    fn render(
        &self,
        model: &str,
        messages: Vec<Message>,
        tools: Option<ToolUse>,
        host: &dyn Host,
    ) -> Result<Prompt, Error> {
        render::render(model, messages, tools, host)
    }

    /// Chat also calls it on a partial answer while it is generated, to end the answer when
    /// the model repeats a call; a call cut short is dropped, so `Some([])` is an envelope
    /// cut before its first call completed.
    fn parse(
        &self,
        _model: &str,
        text: &str,
        tools: &ToolUse,
        _host: &dyn Host,
    ) -> Result<Option<Vec<Call>>, Error> {
        Ok(format::parse(text, tools))
    }
}

cinder_sdk::export_tools_plugin!(FirstParty);
