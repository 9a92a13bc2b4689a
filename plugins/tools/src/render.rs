//! The first-party rendering: a model whose chat template renders `tools` itself gets them
//! through its template (with earlier calls and results as OpenAI-shaped messages); any other
//! model gets them in a system message, in the fallback format, with earlier calls rendered
//! back in it. `required` and named calls are constrained to the fallback format's array.

use cinder_sdk::host::Host;
use cinder_sdk::inference::ChatMessage;
use cinder_sdk::tools::{Message, Prompt, ToolUse};
use cinder_sdk::{Error, invalid_request};
use serde_json::{Value, json};

use crate::format;

/// The first-party rendering: through the template when it has `tools` support, in the
/// fallback format otherwise (told by `format::instructions`).
pub(crate) fn render(
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
            add_instructions(&mut plain, &format::instructions(t));
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

#[cfg(test)]
mod tests {
    use super::*;
    use cinder_sdk::tools::Call;

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
