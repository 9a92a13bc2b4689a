//! A third-party tools plugin on the public SDK alone: tool calling with the tools described in
//! a few tokens, `get_weather(city: string, unit: "c"|"f") - Current weather in a city`,
//! instead of each function's whole JSON schema. Small models read it as well, and a long
//! list of tools leaves room in a short context. Calls are a JSON array
//! `[{"name": ..., "arguments": {...}}]`; `required` and named calls are constrained by the
//! functions' full schemas, so they stay valid by construction.

use cinder_sdk::inference::{ChatMessage, Constraint};
use cinder_sdk::tools::{Call, Function, Message, Prompt, ToolChoice, ToolUse};
use cinder_sdk::{Error, Host, ToolsPlugin};
use serde_json::{Value, json};

#[derive(Default)]
struct Terse;

impl ToolsPlugin for Terse {
    fn render(
        &self,
        model: &str,
        messages: Vec<Message>,
        tools: Option<ToolUse>,
        host: &dyn Host,
    ) -> Result<Prompt, Error> {
        let mut plain: Vec<ChatMessage> = messages.iter().map(plain_message).collect();
        if let Some(t) = &tools {
            let text = instructions(t);
            match plain.first_mut() {
                Some(m) if m.role == "system" => m.content = format!("{}\n\n{text}", m.content),
                _ => plain.insert(
                    0,
                    ChatMessage {
                        role: "system".into(),
                        content: text,
                    },
                ),
            }
        }
        Ok(Prompt {
            text: host.apply_chat_template(model, &plain, true)?,
            constraint: tools.as_ref().and_then(constraint),
            call_prefixes: vec!["[".into()],
        })
    }

    fn parse(
        &self,
        _model: &str,
        text: &str,
        tools: &ToolUse,
        _host: &dyn Host,
    ) -> Result<Option<Vec<Call>>, Error> {
        Ok(parse(text, tools))
    }
}

fn instructions(tools: &ToolUse) -> String {
    let lines: Vec<String> = tools.functions.iter().map(signature).collect();
    format!(
        "Functions:\n{}\nTo call, answer only with [{{\"name\": ..., \"arguments\": {{...}}}}].",
        lines.join("\n")
    )
}

/// A message with its earlier calls written back as the call array.
fn plain_message(m: &Message) -> ChatMessage {
    let calls: Vec<Value> = m
        .calls
        .iter()
        .map(|c| {
            let arguments: Value = serde_json::from_str(&c.arguments).unwrap_or(json!({}));
            json!({"name": c.name, "arguments": arguments})
        })
        .collect();
    let content = match (m.content.is_empty(), calls.is_empty()) {
        (_, true) => m.content.clone(),
        (true, false) => Value::Array(calls).to_string(),
        (false, false) => format!("{}\n{}", m.content, Value::Array(calls)),
    };
    ChatMessage {
        role: m.role.clone(),
        content,
    }
}

/// For `required` and named calls: an array of one call (or more with `parallel`) whose name
/// is one the choice allows and whose arguments match that function's schema.
fn constraint(tools: &ToolUse) -> Option<Constraint> {
    let allowed: Vec<&Function> = match &tools.choice {
        ToolChoice::Auto => return None,
        ToolChoice::Required => tools.functions.iter().collect(),
        ToolChoice::Function(name) => tools.functions.iter().filter(|f| &f.name == name).collect(),
    };
    let calls: Vec<Value> = allowed
        .iter()
        .map(|f| {
            let schema = serde_json::from_str(&f.parameters).unwrap_or(json!({"type": "object"}));
            json!({"type": "object", "additionalProperties": false, "required": ["name", "arguments"],
                "properties": {"name": {"const": f.name}, "arguments": cinder_sdk::schema::close_objects(schema)}})
        })
        .collect();
    let mut array = json!({"type": "array", "minItems": 1, "items": {"anyOf": calls}});
    if !tools.parallel {
        array["maxItems"] = json!(1);
    }
    Some(Constraint::JsonSchema(array.to_string()))
}

/// `None` for ordinary text; for an answer that opens the call array, the calls it has so far
/// (none until the array is complete).
fn parse(text: &str, tools: &ToolUse) -> Option<Vec<Call>> {
    let text = text.trim();
    if !text.starts_with('[') {
        return None;
    }
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
        return Some(Vec::new());
    };
    let calls = items
        .iter()
        .filter_map(|c| {
            let name = c["name"].as_str()?;
            tools.functions.iter().find(|f| f.name == name)?;
            let arguments = c.get("arguments").filter(|a| a.is_object())?;
            Some(Call {
                id: String::new(),
                name: name.to_owned(),
                arguments: arguments.to_string(),
            })
        })
        .collect();
    Some(calls)
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

cinder_sdk::export_tools_plugin!(Terse);

#[cfg(test)]
mod tests {
    use cinder_sdk::ToolsPlugin;
    use cinder_sdk::inference::Constraint;
    use cinder_sdk::testing::FakeHost;
    use cinder_sdk::tools::{Message, ToolChoice, ToolUse};
    use serde_json::{Value, json};

    fn weather(choice: ToolChoice) -> ToolUse {
        ToolUse {
            functions: vec![cinder_sdk::tools::Function {
                name: "get_weather".into(),
                description: Some("Current weather in a city".into()),
                parameters: json!({"type": "object", "properties": {
                    "city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}})
                .to_string(),
            }],
            choice,
            parallel: false,
        }
    }

    #[test]
    fn tools_are_one_line_each_in_a_system_message() {
        let host = FakeHost::new("m");
        let user = Message {
            role: "user".into(),
            content: "Oslo?".into(),
            calls: vec![],
            tool_call_id: None,
        };
        let prompt = super::Terse
            .render("m", vec![user], Some(weather(ToolChoice::Auto)), &host)
            .unwrap();
        assert!(
            prompt.text.contains(
                r#"get_weather(city: string, unit: "c"|"f") - Current weather in a city"#
            ),
            "{}",
            prompt.text
        );
        assert!(prompt.constraint.is_none(), "auto calls are free");
    }

    #[test]
    fn a_named_call_is_constrained_and_read_back() {
        let tools = weather(ToolChoice::Function("get_weather".into()));
        let Some(Constraint::JsonSchema(schema)) = super::constraint(&tools) else {
            panic!("a named call is constrained")
        };
        let schema: Value = serde_json::from_str(&schema).unwrap();
        assert_eq!(schema["maxItems"], 1);
        assert_eq!(
            schema["items"]["anyOf"][0]["properties"]["name"]["const"],
            "get_weather"
        );
        let answer = r#" [{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}]"#;
        let calls = super::parse(answer, &tools).unwrap();
        assert_eq!(calls[0].name, "get_weather");
        assert!(super::parse(r#"[{"name": "get_w"#, &tools).is_some_and(|c| c.is_empty()));
        assert!(super::parse("It is sunny.", &tools).is_none());
    }
}
