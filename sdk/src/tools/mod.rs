//! The tools family (WIT 0.1.3 `tools`): how a request's tools shape the prompt and the
//! output, and how the model's answer becomes calls. A tools plugin implements [`Tools`] and
//! exports itself with [`export_tools!`](crate::export_tools); chat plugins reach the loaded
//! one through [`Host::render_tools`] and [`Host::parse_tool_calls`], so reloading the tools
//! plugin changes tool calling without touching chat.
//!
//! The defaults are the first-party behaviour:
//! - a model whose chat template renders `tools` itself gets them through its template (with
//!   earlier calls and results as OpenAI-shaped messages);
//! - any other model gets them in a system message, in the fallback format: calls are a JSON
//!   array `[{"name": ..., "arguments": {...}}]`, and earlier calls are rendered back in it;
//! - `required` and named calls are constrained to that array (names and arguments valid
//!   against the functions' schemas, one call at most without `parallel_tool_calls`);
//! - answers are read in the fallback format and in the formats tool-aware templates teach
//!   (`<tool_call>` blocks, a bare call object, `[TOOL_CALLS]`).

mod format;

use serde_json::{Value, json};

pub use crate::bindings::cinder::plugin::tools::{
    Call, Function, Message, Prompt, ToolChoice, ToolUse,
};
use crate::host::Host;
use crate::inference::ChatMessage;
use crate::{Error, invalid_request};

/// A tools plugin. Every method has the first-party behaviour as its default.
pub trait Tools {
    /// Renders the conversation into a prompt, telling the model about `tools` when given.
    fn render(
        &self,
        model: &str,
        messages: Vec<Message>,
        tools: Option<ToolUse>,
        host: &dyn Host,
    ) -> Result<Prompt, Error> {
        render(self, model, messages, tools, host)
    }

    /// What a model whose template has no `tools` support is told about the tools (in a
    /// system message); the calls it makes must still be the fallback format's JSON array.
    fn instructions(&self, tools: &ToolUse) -> String {
        format::instructions(tools)
    }

    /// Reads the calls out of an answer, finished or cut short: `None` when it is ordinary
    /// text, else the complete calls in order (a call cut short is dropped, so `Some([])` is
    /// an envelope cut before its first call completed). Chat also calls it on a partial
    /// answer while it is generated, to end the answer when the model repeats a call.
    fn parse(
        &self,
        model: &str,
        text: &str,
        tools: &ToolUse,
        host: &dyn Host,
    ) -> Result<Option<Vec<Call>>, Error> {
        let _ = (model, host);
        Ok(format::parse(text, tools))
    }
}

/// The first-party tools behaviour, as Cinder's own tools plugin exports it (and
/// [`crate::testing::FakeHost`] serves it to chat tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstParty;

impl Tools for FirstParty {}

/// The first-party rendering: through the template when it has `tools` support, in the
/// fallback format otherwise (told by `this.instructions`).
pub fn render<T: Tools + ?Sized>(
    this: &T,
    model: &str,
    messages: Vec<Message>,
    tools: Option<ToolUse>,
    host: &dyn Host,
) -> Result<Prompt, Error> {
    for f in tools.iter().flat_map(|t| &t.functions) {
        if !matches!(serde_json::from_str(&f.parameters), Ok(Value::Object(_))) {
            return Err(invalid_request(
                &format!(
                    "the parameters of `{}` are not a JSON schema object",
                    f.name
                ),
                Some("tools"),
            ));
        }
    }
    let constraint = tools.as_ref().and_then(format::constraint);
    let text = if host.template_has_tools(model)? {
        let openai: Vec<Value> = messages.iter().map(openai_message).collect();
        let defs = tools.as_ref().map(|t| {
            let defs: Vec<Value> = t
                .functions
                .iter()
                .map(|f| {
                    json!({"type": "function", "function": {
                        "name": f.name,
                        "description": f.description,
                        "parameters": format::arguments_value(&f.parameters)}})
                })
                .collect();
            Value::Array(defs).to_string()
        });
        host.apply_chat_template_json(
            model,
            &Value::Array(openai).to_string(),
            defs.as_deref(),
            true,
        )?
    } else {
        let mut plain: Vec<ChatMessage> = messages.iter().map(fallback_message).collect();
        if let Some(t) = &tools {
            add_instructions(&mut plain, &this.instructions(t));
        }
        host.apply_chat_template(model, &plain, true)?
    };
    Ok(Prompt {
        text,
        constraint,
        call_prefixes: format::CALL_PREFIXES.map(str::to_owned).to_vec(),
    })
}

/// A message as OpenAI's API (and tool-aware templates) shape it.
fn openai_message(m: &Message) -> Value {
    let mut v = json!({"role": m.role, "content": m.content});
    if !m.calls.is_empty() {
        v["tool_calls"] = m
            .calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function", "function": {
                    "name": c.name, "arguments": format::arguments_value(&c.arguments)}})
            })
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

/// A message for a template without `tools` support: calls become text in the fallback
/// format.
fn fallback_message(m: &Message) -> ChatMessage {
    let content = match (m.content.is_empty(), m.calls.is_empty()) {
        (_, true) => m.content.clone(),
        (true, false) => format::render_calls(&m.calls),
        (false, false) => format!("{}\n{}", m.content, format::render_calls(&m.calls)),
    };
    ChatMessage {
        role: m.role.clone(),
        content,
    }
}

/// Merges `text` into a leading system message, or adds one.
fn add_instructions(messages: &mut Vec<ChatMessage>, text: &str) {
    match messages.first_mut() {
        Some(m) if m.role == "system" => m.content = format!("{}\n\n{text}", m.content),
        _ => messages.insert(
            0,
            ChatMessage {
                role: "system".into(),
                content: text.to_owned(),
            },
        ),
    }
}

/// The glue [`export_tools!`](crate::export_tools) and
/// [`export_chat_plugin!`](crate::export_chat_plugin) expand to: the exported `tools`
/// interface has its own copies of the types, converted here.
#[doc(hidden)]
pub mod export {
    use super::{Call, Function, Message, Prompt, ToolChoice, ToolUse};
    use crate::bindings::exports::cinder::plugin::tools as x;

    pub fn tool_use(t: x::ToolUse) -> ToolUse {
        ToolUse {
            functions: t
                .functions
                .into_iter()
                .map(|f| Function {
                    name: f.name,
                    description: f.description,
                    parameters: f.parameters,
                })
                .collect(),
            choice: match t.choice {
                x::ToolChoice::Auto => ToolChoice::Auto,
                x::ToolChoice::Required => ToolChoice::Required,
                x::ToolChoice::Function(name) => ToolChoice::Function(name),
            },
            parallel: t.parallel,
        }
    }

    fn call_in(c: x::Call) -> Call {
        Call {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        }
    }

    pub fn call_out(c: Call) -> x::Call {
        x::Call {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        }
    }

    pub fn message(m: x::Message) -> Message {
        Message {
            role: m.role,
            content: m.content,
            calls: m.calls.into_iter().map(call_in).collect(),
            tool_call_id: m.tool_call_id,
        }
    }

    pub fn prompt(p: Prompt) -> x::Prompt {
        x::Prompt {
            text: p.text,
            constraint: p.constraint,
            call_prefixes: p.call_prefixes,
        }
    }

    /// What a plugin that is not a tools plugin answers if asked to be one.
    pub fn not_provided() -> crate::Error {
        crate::Error::Unavailable("this plugin does not provide tools".into())
    }
}

/// Exports a [`Tools`] implementation (which must implement `Default`) as the plugin's
/// `tools` interface; its manifest names the `tools-plugin` world and has no routes.
#[macro_export]
macro_rules! export_tools {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __CinderToolsExport;

        impl $crate::bindings::exports::cinder::plugin::tools::Guest for __CinderToolsExport {
            fn render(
                model: ::std::string::String,
                messages: ::std::vec::Vec<$crate::bindings::exports::cinder::plugin::tools::Message>,
                tools: ::core::option::Option<$crate::bindings::exports::cinder::plugin::tools::ToolUse>,
            ) -> ::core::result::Result<$crate::bindings::exports::cinder::plugin::tools::Prompt, $crate::Error> {
                let host = $crate::host::Wasm::without_sink();
                let messages = messages.into_iter().map($crate::tools::export::message).collect();
                let tools = tools.map($crate::tools::export::tool_use);
                <$ty as $crate::tools::Tools>::render(&<$ty as ::core::default::Default>::default(), &model, messages, tools, &host)
                    .map($crate::tools::export::prompt)
            }

            fn parse(
                model: ::std::string::String,
                text: ::std::string::String,
                tools: $crate::bindings::exports::cinder::plugin::tools::ToolUse,
            ) -> ::core::result::Result<::core::option::Option<::std::vec::Vec<$crate::bindings::exports::cinder::plugin::tools::Call>>, $crate::Error> {
                let host = $crate::host::Wasm::without_sink();
                let tools = $crate::tools::export::tool_use(tools);
                <$ty as $crate::tools::Tools>::parse(&<$ty as ::core::default::Default>::default(), &model, &text, &tools, &host)
                    .map(|calls| calls.map(|c| c.into_iter().map($crate::tools::export::call_out).collect()))
            }
        }

        impl $crate::bindings::exports::cinder::plugin::handler::Guest for __CinderToolsExport {
            fn handle(
                _request: $crate::Request,
                _sink: &$crate::sink::ResponseSink,
            ) -> ::core::result::Result<(), $crate::Error> {
                ::core::result::Result::Err($crate::Error::Unavailable(
                    "a tools plugin serves no routes".into(),
                ))
            }
        }

        $crate::bindings::export_sdk_bindings!(__CinderToolsExport with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_messages_render_calls_back_in_the_call_format() {
        let m = Message {
            role: "assistant".into(),
            content: String::new(),
            calls: vec![Call {
                id: "call_1".into(),
                name: "f".into(),
                arguments: r#"{"a":1}"#.into(),
            }],
            tool_call_id: None,
        };
        assert_eq!(
            fallback_message(&m).content,
            r#"[{"name":"f","arguments":{"a":1}}]"#
        );
        let v = openai_message(&m);
        assert_eq!(v["tool_calls"][0]["function"]["arguments"]["a"], 1);
        assert_eq!(v["tool_calls"][0]["id"], "call_1");
    }
}
