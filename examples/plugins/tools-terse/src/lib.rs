//! Tool calling as Cinder's own tools plugin does it, except that the tools are described in
//! a few tokens: `get_weather(city: string, unit: "c"|"f") - Current weather in a city`
//! instead of each function's whole JSON schema. Small models read it as well, and a long
//! list of tools leaves room in a short context. Calls are still constrained by the full
//! schemas, so `required` and named calls stay valid by construction.

use cinder_sdk::tools::{ToolUse, Tools};
use serde_json::Value;

#[derive(Default)]
struct Terse;

impl Tools for Terse {
    fn instructions(&self, tools: &ToolUse) -> String {
        let lines: Vec<String> = tools.functions.iter().map(signature).collect();
        format!(
            "Functions:\n{}\nTo call, answer only with [{{\"name\": ..., \"arguments\": {{...}}}}].",
            lines.join("\n")
        )
    }
}

/// `name(arg: type, ...) - description`, with enums as their values.
fn signature(f: &cinder_sdk::tools::Function) -> String {
    let schema: Value = serde_json::from_str(&f.parameters).unwrap_or(Value::Null);
    let args: Vec<String> = schema["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(name, p)| format!("{name}: {}", kind(p)))
                .collect()
        })
        .unwrap_or_default();
    let mut line = format!("{}({})", f.name, args.join(", "));
    if let Some(d) = &f.description {
        line.push_str(" - ");
        line.push_str(d);
    }
    line
}

fn kind(p: &Value) -> String {
    match (&p["enum"], &p["type"]) {
        (Value::Array(values), _) => values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("|"),
        (_, Value::String(t)) => t.clone(),
        _ => "any".into(),
    }
}

cinder_sdk::export_tools!(Terse);

#[cfg(test)]
mod tests {
    use cinder_sdk::chat::Chat;
    use cinder_sdk::testing::{FakeHost, post};
    use cinder_sdk::tools::{ToolChoice, ToolUse, Tools};
    use serde_json::json;

    fn weather() -> ToolUse {
        ToolUse {
            functions: vec![cinder_sdk::tools::Function {
                name: "get_weather".into(),
                description: Some("Current weather in a city".into()),
                parameters: json!({"type": "object", "properties": {
                    "city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}})
                .to_string(),
            }],
            choice: ToolChoice::Auto,
            parallel: true,
        }
    }

    #[test]
    fn tools_are_one_line_each() {
        let text = super::Terse.instructions(&weather());
        assert!(
            text.contains(
                r#"get_weather(city: string, unit: "c"|"f") - Current weather in a city"#
            ),
            "{text}"
        );
    }

    /// Through the whole chat pipeline (chat's default, this plugin's tools): the call still
    /// comes back as a tool call.
    #[test]
    fn chat_with_these_tools_still_calls() {
        #[derive(Default)]
        struct FirstPartyChat;
        impl Chat for FirstPartyChat {}
        let host = FakeHost::new("m").with_tools(super::Terse).generating(&[
            r#"[{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}]"#,
        ]);
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "Oslo?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]});
        FirstPartyChat.complete(post(&body), &host).unwrap();
        let (_, r) = host.response().unwrap();
        assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
        // The fake host's tokens are the prompt's bytes.
        let ids = &host.generate_requests()[0].prompt;
        let prompt = String::from_utf8(ids.iter().map(|&t| t as u8).collect()).unwrap();
        assert!(
            prompt.contains("Functions:\nget_weather(city: string)"),
            "{prompt}"
        );
    }
}
