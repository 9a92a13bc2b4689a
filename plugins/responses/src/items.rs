//! Items: a request's input as the items a response keeps (with ids), and a chain of items
//! as the messages a chat template and the tools plugin read.

use cinder_sdk::openai::params::responses::{InputItem, Role};
use cinder_sdk::openai::responses::{ContentPart, OutputItem};
use cinder_sdk::tools::{Call, Message};

/// The request's input items as stored items, ids made from the response's.
pub fn stored_input(response_id: &str, input: Vec<InputItem>) -> Vec<OutputItem> {
    let suffix = response_id.trim_start_matches("resp_");
    (0..)
        .zip(input)
        .map(|(i, item)| match item {
            InputItem::Message { role, text } => OutputItem::Message {
                id: format!("msg_{suffix}_in{i}"),
                role: role.as_str().to_owned(),
                status: "completed".into(),
                content: vec![match role {
                    Role::Assistant => ContentPart::output_text(text),
                    _ => ContentPart::InputText { text },
                }],
            },
            InputItem::FunctionCall {
                call_id,
                name,
                arguments,
            } => OutputItem::FunctionCall {
                id: format!("fc_{suffix}_in{i}"),
                call_id,
                name,
                arguments,
                status: "completed".into(),
            },
            InputItem::FunctionCallOutput { call_id, output } => OutputItem::FunctionCallOutput {
                id: format!("fco_{suffix}_in{i}"),
                call_id,
                output,
                status: "completed".into(),
            },
        })
        .collect()
}

/// `instructions` (a system message first) and `items`, oldest first, as chat messages: a
/// function call joins the assistant turn before it (a response's text and calls are one
/// turn), and a function's output is a `tool` message answering its call id.
pub fn messages(instructions: Option<&str>, items: &[OutputItem]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(items.len() + 1);
    if let Some(text) = instructions {
        out.push(message("system", text.to_owned()));
    }
    for item in items {
        match item {
            OutputItem::Message { role, content, .. } => {
                let text: String = content.iter().map(ContentPart::text).collect();
                // `developer` is the newer name of `system`; chat templates know `system`.
                let role = if role == "developer" { "system" } else { role };
                out.push(message(role, text));
            }
            OutputItem::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => {
                let call = Call {
                    id: call_id.clone(),
                    name: name.clone(),
                    arguments: arguments.clone(),
                };
                match out.last_mut() {
                    Some(last) if last.role == "assistant" => last.calls.push(call),
                    _ => {
                        let mut turn = message("assistant", String::new());
                        turn.calls.push(call);
                        out.push(turn);
                    }
                }
            }
            OutputItem::FunctionCallOutput {
                call_id, output, ..
            } => {
                let mut result = message("tool", output.clone());
                result.tool_call_id = Some(call_id.clone());
                out.push(result);
            }
        }
    }
    out
}

fn message(role: &str, content: String) -> Message {
    Message {
        role: role.to_owned(),
        content,
        calls: Vec::new(),
        tool_call_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_join_their_turn_and_outputs_answer_them() {
        let items = stored_input(
            "resp_ab",
            vec![
                InputItem::Message {
                    role: Role::Developer,
                    text: "be brief".into(),
                },
                InputItem::Message {
                    role: Role::User,
                    text: "weather?".into(),
                },
                InputItem::FunctionCall {
                    call_id: "c1".into(),
                    name: "w".into(),
                    arguments: "{}".into(),
                },
                InputItem::FunctionCall {
                    call_id: "c2".into(),
                    name: "w".into(),
                    arguments: "{\"a\":1}".into(),
                },
                InputItem::FunctionCallOutput {
                    call_id: "c1".into(),
                    output: "sun".into(),
                },
            ],
        );
        assert_eq!(items[1].id(), "msg_ab_in1");
        let m = messages(Some("rules"), &items);
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "system", "user", "assistant", "tool"]);
        assert_eq!(m[3].calls.len(), 2);
        assert_eq!(m[4].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(m[4].content, "sun");
    }
}
