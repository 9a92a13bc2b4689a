//! The items of a create request's `input`, and the text of their content parts.

use serde_json::Value;

use crate::params::{Checked, Invalid};

/// Who wrote an input message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    System,
    Developer,
    Assistant,
}

impl Role {
    /// OpenAI's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::System => "system",
            Role::Developer => "developer",
            Role::Assistant => "assistant",
        }
    }
}

/// One input item, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputItem {
    /// A message: its parts, text and files.
    Message { role: Role, content: Vec<InputPart> },
    /// A call the model made earlier (given back by the client).
    FunctionCall {
        call_id: String,
        name: String,
        arguments: String,
    },
    /// A function's result.
    FunctionCallOutput { call_id: String, output: String },
    /// An earlier response's file search, given back with its output: kept in the history,
    /// not read by the model (the excerpts served that turn only).
    FileSearchCall {
        queries: Vec<String>,
        results: Option<Vec<Value>>,
    },
}

/// One part of an input message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPart {
    Text(String),
    /// A file uploaded through `/v1/files`, by id.
    File {
        file_id: String,
    },
}

impl InputPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        InputPart::Text(text.into())
    }
}

/// The items of the array `list` names (`input`, a conversation's `items`), at most `max`.
pub fn items(list: &str, value: &[Value], max: usize) -> Checked<Vec<InputItem>> {
    if value.len() > max {
        return Err(Invalid::new(
            format!("{list} has {} items; at most {max}", value.len()),
            list,
        ));
    }
    value
        .iter()
        .enumerate()
        .map(|(i, v)| item(list, i, v))
        .collect()
}

/// One item of an `input` array.
pub(super) fn item(list: &str, i: usize, item: &Value) -> Checked<InputItem> {
    let at = |field: &str| format!("{list}[{i}].{field}");
    let obj = item
        .as_object()
        .ok_or_else(|| Invalid::new("An input item must be an object", format!("{list}[{i}]")))?;
    let kind = obj.get("type").and_then(Value::as_str);
    let text_field = |field: &str| -> Checked<String> {
        obj.get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                Invalid::new(
                    format!("Missing required parameter: '{}'.", at(field)),
                    at(field),
                )
            })
    };
    match kind {
        None | Some("message") => {
            let role = match obj.get("role").and_then(Value::as_str) {
                Some("user") => Role::User,
                Some("system") => Role::System,
                Some("developer") => Role::Developer,
                Some("assistant") => Role::Assistant,
                _ => {
                    return Err(Invalid::new(
                        "A message's role is user, system, developer or assistant",
                        at("role"),
                    ));
                }
            };
            let content = match obj.get("content") {
                Some(Value::String(s)) => vec![InputPart::text(s.clone())],
                Some(Value::Array(parts)) => parts
                    .iter()
                    .enumerate()
                    .map(|(j, part)| content_part(&format!("{list}[{i}].content[{j}]"), part))
                    .collect::<Checked<_>>()?,
                _ => {
                    return Err(Invalid::new(
                        "A message's content is a string or an array of parts",
                        at("content"),
                    ));
                }
            };
            Ok(InputItem::Message { role, content })
        }
        Some("function_call") => Ok(InputItem::FunctionCall {
            call_id: text_field("call_id")?,
            name: text_field("name")?,
            arguments: text_field("arguments")?,
        }),
        Some("function_call_output") => {
            let output = match obj.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts_text(list, i, parts)?,
                _ => {
                    return Err(Invalid::new(
                        "A function_call_output's output is a string or an array of parts",
                        at("output"),
                    ));
                }
            };
            Ok(InputItem::FunctionCallOutput {
                call_id: text_field("call_id")?,
                output,
            })
        }
        Some("file_search_call") => {
            let queries = match obj.get("queries") {
                None | Some(Value::Null) => Some(Vec::new()),
                Some(Value::Array(q)) => q
                    .iter()
                    .map(|q| q.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>(),
                Some(_) => None,
            }
            .ok_or_else(|| Invalid::new("queries is an array of strings", at("queries")))?;
            let results = match obj.get("results") {
                None | Some(Value::Null) => None,
                Some(Value::Array(r)) => Some(r.clone()),
                Some(_) => {
                    return Err(Invalid::new("results is an array", at("results")));
                }
            };
            Ok(InputItem::FileSearchCall { queries, results })
        }
        Some(other) => Err(Invalid::new(
            format!(
                "Input items of type `{other}` are not supported by this server yet: message, function_call, function_call_output and file_search_call are"
            ),
            at("type"),
        )),
    }
}

/// The text of an array of parts (a function's output), joined; files are not read there.
fn parts_text(list: &str, i: usize, parts: &[Value]) -> Checked<String> {
    let mut text = String::new();
    for (j, part) in parts.iter().enumerate() {
        match content_part(&format!("{list}[{i}].output[{j}]"), part)? {
            InputPart::Text(t) => text.push_str(&t),
            InputPart::File { .. } => {
                return Err(Invalid::new(
                    "a function's output is text; input_file belongs in a message",
                    format!("{list}[{i}].output[{j}].type"),
                ));
            }
        }
    }
    Ok(text)
}

/// One content part; `param` names it (`input[2].content[0]`).
fn content_part(param: &str, part: &Value) -> Checked<InputPart> {
    match part.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => part
            .get("text")
            .and_then(Value::as_str)
            .map(InputPart::text)
            .ok_or_else(|| Invalid::new("A text part needs `text`", format!("{param}.text"))),
        // An assistant's refusal given back: its words are the turn's text.
        Some("refusal") => Ok(InputPart::text(
            part.get("refusal").and_then(Value::as_str).unwrap_or(""),
        )),
        Some("input_file") => {
            for (field, why) in [
                (
                    "file_url",
                    "file_url is not supported: this server reaches no network; upload the file and give its file_id",
                ),
                (
                    "file_data",
                    "file_data is not supported by this server yet; upload the file and give its file_id",
                ),
            ] {
                if part.get(field).is_some_and(|v| !v.is_null()) {
                    return Err(Invalid::new(why, format!("{param}.{field}")));
                }
            }
            part.get("file_id")
                .and_then(Value::as_str)
                .map(|id| InputPart::File {
                    file_id: id.to_owned(),
                })
                .ok_or_else(|| {
                    Invalid::new("input_file needs a `file_id`", format!("{param}.file_id"))
                })
        }
        Some("input_image") => Err(Invalid::new(
            "input_image is not supported: this server has no vision model yet",
            format!("{param}.type"),
        )),
        Some("input_audio") => Err(Invalid::new(
            "input_audio is not supported: this server has no audio model",
            format!("{param}.type"),
        )),
        Some(other) => Err(Invalid::new(
            format!("Content of type `{other}` is not supported"),
            format!("{param}.type"),
        )),
        None => Err(Invalid::new(
            "A content part needs a `type`",
            format!("{param}.type"),
        )),
    }
}
