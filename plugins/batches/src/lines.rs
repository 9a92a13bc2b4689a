//! The input file a line at a time: lines read from the blob in chunks from a byte offset (a
//! step starts where the saved progress says), and each line checked as OpenAI checks a batch
//! file (`custom_id`, `method`, `url` matching the batch's endpoint, a JSON object `body`).

use cinder_sdk::Error;
use cinder_sdk::host::Store;
use serde_json::Value;

use crate::batch::LineError;

/// Bytes read from the blob at a time.
const CHUNK: u32 = 1 << 20;
/// The longest line a batch file may have (a request body larger than this would be refused
/// live as well).
pub const MAX_LINE: usize = 8 << 20;

/// One request line, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub custom_id: String,
    pub body: String,
}

/// Reads lines of a blob from a byte offset.
pub struct Reader<'h, H: Store + ?Sized> {
    host: &'h H,
    blob: String,
    size: u64,
    /// Where the next unread byte of the blob is.
    read_to: u64,
    buf: Vec<u8>,
    /// Where `buf` starts in the blob.
    buf_at: u64,
    /// Lines of the file before `buf_at`.
    lines: u64,
}

impl<'h, H: Store + ?Sized> Reader<'h, H> {
    /// A reader starting at byte `offset`, the start of line `lines + 1`.
    pub fn new(host: &'h H, blob: &str, size: u64, offset: u64, lines: u64) -> Self {
        Reader {
            host,
            blob: blob.to_owned(),
            size,
            read_to: offset,
            buf: Vec::new(),
            buf_at: offset,
            lines,
        }
    }

    /// Where the next line starts, and how many lines come before it.
    pub fn position(&self) -> (u64, u64) {
        (self.buf_at, self.lines)
    }

    /// The next line that is not blank (without its line break) with its number (1-based),
    /// or `None` at the end. A line longer than [`MAX_LINE`] is an error naming the file.
    pub fn next_line(&mut self) -> Result<Option<(u64, Vec<u8>)>, Error> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                self.buf_at += line.len() as u64;
                self.lines += 1;
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some((self.lines, line)));
            }
            if self.buf.len() > MAX_LINE {
                return Err(cinder_sdk::invalid_request(
                    &format!("a line of the input file is longer than {MAX_LINE} bytes"),
                    Some("input_file_id"),
                ));
            }
            if self.read_to >= self.size {
                // The last line may have no line break.
                let line = std::mem::take(&mut self.buf);
                self.buf_at += line.len() as u64;
                if line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                self.lines += 1;
                return Ok(Some((self.lines, line)));
            }
            let chunk = self.host.read_blob(&self.blob, self.read_to, CHUNK)?;
            if chunk.is_empty() {
                return Err(Error::Internal("the input file ended early".into()));
            }
            self.read_to += chunk.len() as u64;
            self.buf.extend_from_slice(&chunk);
        }
    }
}

fn problem(code: &str, message: String, param: Option<&str>, line: u64) -> LineError {
    LineError {
        code: code.into(),
        message,
        param: param.map(str::to_owned),
        line: Some(line),
    }
}

/// Checks line number `number` (1-based) of a batch file for `endpoint`.
pub fn check(raw: &[u8], endpoint: &str, number: u64) -> Result<Line, LineError> {
    let value: Value = std::str::from_utf8(raw)
        .ok()
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or_else(|| {
            problem(
                "invalid_json_line",
                format!("Line {number} is not a valid JSON object"),
                None,
                number,
            )
        })?;
    let Some(object) = value.as_object() else {
        return Err(problem(
            "invalid_json_line",
            format!("Line {number} is not a JSON object"),
            None,
            number,
        ));
    };
    let custom_id = match object.get("custom_id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 512 => id.clone(),
        Some(_) => {
            return Err(problem(
                "invalid_custom_id",
                format!("Line {number}: custom_id must be a string of 1 to 512 characters"),
                Some("custom_id"),
                number,
            ));
        }
        None => {
            return Err(problem(
                "missing_required_parameter",
                format!("Line {number} has no custom_id"),
                Some("custom_id"),
                number,
            ));
        }
    };
    match object.get("method") {
        Some(Value::String(m)) if m == "POST" => {}
        _ => {
            return Err(problem(
                "invalid_method",
                format!("Line {number}: method must be 'POST'"),
                Some("method"),
                number,
            ));
        }
    }
    match object.get("url") {
        Some(Value::String(url)) if url == endpoint => {}
        Some(Value::String(url)) => {
            return Err(problem(
                "mismatched_endpoint",
                format!(
                    "Line {number}: url '{url}' does not match the batch's endpoint '{endpoint}'"
                ),
                Some("url"),
                number,
            ));
        }
        _ => {
            return Err(problem(
                "missing_required_parameter",
                format!("Line {number} has no url"),
                Some("url"),
                number,
            ));
        }
    }
    let Some(body) = object.get("body").filter(|b| b.is_object()) else {
        return Err(problem(
            "invalid_request",
            format!("Line {number}: body must be a JSON object"),
            Some("body"),
            number,
        ));
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(problem(
            "invalid_request",
            format!("Line {number}: a batch request cannot stream (stream must be false)"),
            Some("body.stream"),
            number,
        ));
    }
    Ok(Line {
        custom_id,
        body: body.to_string(),
    })
}
