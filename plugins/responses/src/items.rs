//! Items: a request's input as the items a response keeps (with ids), and a chain of items
//! as the messages a chat template and the tools plugin read.

use cinder_sdk::host::Host;
use cinder_sdk::openai::params::responses::{InputItem, InputPart, Role};
use cinder_sdk::openai::responses::{ContentPart, OutputItem};
use cinder_sdk::tools::{Call, Message};
use cinder_sdk::{Error, files};

/// Bytes of one input file read into a prompt, unless the plugin setting
/// `max_input_file_bytes` says otherwise: a file goes whole into the prompt, so more would not
/// fit a small model's context anyway.
pub const MAX_INPUT_FILE_BYTES: u64 = 1 << 20;

/// Bytes read from a blob per call.
const READ_CHUNK: u32 = 256 * 1024;

/// Distinct input files one request reads, in bytes together: four files of the per-file
/// bound. A file named twice is read (and put in the prompt) once.
const FILES_PER_REQUEST: u64 = 4;

/// The files one request has read so far.
struct FileBudget {
    seen: std::collections::HashSet<String>,
    total: u64,
    max_total: u64,
}

impl FileBudget {
    fn new(host: &dyn Host) -> Self {
        FileBudget {
            seen: Default::default(),
            total: 0,
            max_total: max_file_bytes(host).saturating_mul(FILES_PER_REQUEST),
        }
    }

    /// Whether `id` (of `bytes`) is new to this request; a 400 past the budget.
    fn admit(&mut self, id: &str, bytes: u64) -> Result<bool, Error> {
        if !self.seen.insert(id.to_owned()) {
            return Ok(false);
        }
        self.total = self.total.saturating_add(bytes);
        if self.total > self.max_total {
            return Err(cinder_sdk::invalid_request(
                &format!(
                    "the input's files hold more than {} bytes together",
                    self.max_total
                ),
                Some("file"),
            ));
        }
        Ok(true)
    }
}

fn max_file_bytes(host: &dyn Host) -> u64 {
    host.setting("max_input_file_bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(MAX_INPUT_FILE_BYTES)
}

/// The request's input items (the array `list` names) as stored items, ids made from
/// `response_id`; a file a message names must be the caller's.
pub fn stored_input(
    response_id: &str,
    list: &str,
    input: Vec<InputItem>,
    host: &dyn Host,
) -> Result<Vec<OutputItem>, Error> {
    let suffix = response_id.trim_start_matches("resp_");
    let mut budget = FileBudget::new(host);
    (0..)
        .zip(input)
        .map(|(i, item)| {
            Ok(match item {
                InputItem::Message { role, content } => OutputItem::Message {
                    id: format!("msg_{suffix}_in{i}"),
                    role: role.as_str().to_owned(),
                    status: "completed".into(),
                    content: (0..)
                        .zip(content)
                        .map(|(j, part)| {
                            let param = format!("{list}[{i}].content[{j}]");
                            stored_part(role, part, host, &mut budget, &param)
                        })
                        .collect::<Result<_, Error>>()?,
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
                InputItem::FunctionCallOutput { call_id, output } => {
                    OutputItem::FunctionCallOutput {
                        id: format!("fco_{suffix}_in{i}"),
                        call_id,
                        output,
                        status: "completed".into(),
                    }
                }
                InputItem::FileSearchCall { queries, results } => OutputItem::FileSearchCall {
                    id: format!("fs_{suffix}_in{i}"),
                    status: "completed".into(),
                    queries,
                    results,
                },
            })
        })
        .collect()
}

fn stored_part(
    role: Role,
    part: InputPart,
    host: &dyn Host,
    budget: &mut FileBudget,
    param: &str,
) -> Result<ContentPart, Error> {
    Ok(match (role, part) {
        (Role::Assistant, InputPart::Text(text)) => ContentPart::output_text(text),
        (_, InputPart::Text(text)) => ContentPart::InputText { text },
        (_, InputPart::File { file_id }) => {
            let (_, file) = files::load(host, &file_id).map_err(|_| {
                cinder_sdk::invalid_request(
                    &format!("No file with id '{file_id}'."),
                    Some(&format!("{param}.file_id")),
                )
            })?;
            let name = |e: Error| e.naming(&[("file", &format!("{param}.file_id"))]);
            // Read now (once per file), so a file the model cannot read is refused before
            // anything runs.
            if budget.admit(&file_id, file.bytes).map_err(name)? {
                file_text(host, &file_id, &file).map_err(name)?;
            }
            ContentPart::InputFile {
                file_id,
                filename: Some(file.filename),
            }
        }
    })
}

/// The content of the caller's file `id` (`file`, already loaded) as text, for a prompt.
fn file_text(host: &dyn Host, id: &str, file: &files::StoredFile) -> Result<String, Error> {
    let refuse = |why: String| cinder_sdk::invalid_request(&why, Some("file"));
    let max = max_file_bytes(host);
    if file.bytes > max {
        return Err(refuse(format!(
            "the file {id} has {} bytes; an input file is at most {max}",
            file.bytes
        )));
    }
    let mut bytes = Vec::with_capacity(file.bytes as usize);
    while (bytes.len() as u64) < file.bytes {
        let chunk = host.read_blob(&file.blob, bytes.len() as u64, READ_CHUNK)?;
        if chunk.is_empty() {
            break;
        }
        bytes.extend(chunk);
    }
    String::from_utf8(bytes).map_err(|_| {
        refuse(format!(
            "the file {id} is not UTF-8 text: this server reads text files only"
        ))
    })
}

/// `instructions` (a system message first) and `items`, oldest first, as chat messages: a
/// function call joins the assistant turn before it (a response's text and calls are one
/// turn), and a function's output is a `tool` message answering its call id.
pub fn messages(
    instructions: Option<&str>,
    items: &[OutputItem],
    host: &dyn Host,
) -> Result<Vec<Message>, Error> {
    let mut out: Vec<Message> = Vec::with_capacity(items.len() + 1);
    let mut budget = FileBudget::new(host);
    if let Some(text) = instructions {
        out.push(message("system", text.to_owned()));
    }
    for item in items {
        match item {
            OutputItem::Message { role, content, .. } => {
                let mut text = String::new();
                for part in content {
                    match part {
                        ContentPart::InputFile { file_id, filename } => {
                            let name = filename.as_deref().unwrap_or(file_id);
                            let (_, file) = files::load(host, file_id)?;
                            // A file named again is not read (nor put in the prompt) again.
                            if budget.admit(file_id, file.bytes)? {
                                let body = file_text(host, file_id, &file)?;
                                text.push_str(&format!("[file {name}]\n{body}\n"));
                            } else {
                                text.push_str(&format!("[file {name}, as above]\n"));
                            }
                        }
                        other => text.push_str(other.text()),
                    }
                }
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
            // The excerpts a search found served its own turn's prompt; the answer that used
            // them is in the history, so a later turn reads that.
            OutputItem::FileSearchCall { .. } => {}
        }
    }
    Ok(out)
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
        let host = cinder_sdk::testing::FakeHost::new("m");
        let items = stored_input(
            "resp_ab",
            "input",
            vec![
                InputItem::Message {
                    role: Role::Developer,
                    content: vec![InputPart::text("be brief")],
                },
                InputItem::Message {
                    role: Role::User,
                    content: vec![InputPart::text("weather?")],
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
            &host,
        )
        .unwrap();
        assert_eq!(items[1].id(), "msg_ab_in1");
        let m = messages(Some("rules"), &items, &host).unwrap();
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "system", "user", "assistant", "tool"]);
        assert_eq!(m[3].calls.len(), 2);
        assert_eq!(m[4].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(m[4].content, "sun");
    }
}
