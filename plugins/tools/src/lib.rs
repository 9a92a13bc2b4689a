#![doc = include_str!("../README.md")]

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
