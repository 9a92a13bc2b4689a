//! A batch's job, one step at a time. Validating reads the whole input file (in slices of
//! [`VALIDATE_BYTES`]) and refuses it with OpenAI's per-line errors; running sends a few
//! requests per step through `dispatch` and keeps their result lines in a new segment blob
//! per step; finalizing joins the segments into the output and error files. Everything a
//! step did is in the progress it returns, which the host saves before the next step: a step
//! cut short by a crash is redone from the last saved progress, and its segment (if it was
//! written) is never referenced, so no request appears twice in the output.

use std::collections::HashSet;

use cinder_sdk::dispatch::{Answer, Call};
use cinder_sdk::host::JobHost;
use cinder_sdk::{Error, Job, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::batch::{self, Counts, LineError, Usage, is_final, now};
use crate::lines::{self, Reader};
use crate::settings;

/// The job kind a batch runs as (`jobs = ["batch"]` in plugin.toml).
pub const JOB_KIND: &str = "batch";
/// Input bytes one validating step reads.
const VALIDATE_BYTES: u64 = 32 << 20;
/// Line errors kept when an input file is refused.
const MAX_ERRORS: usize = 20;
/// Requests an expired batch marks `batch_expired` per step.
const EXPIRE_PER_STEP: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    Validating,
    Running,
    Finalizing,
}

/// How far a batch's job got; saved by the host after every step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    phase: Phase,
    /// The input file's blob and size.
    blob: String,
    bytes: u64,
    /// Where the next line starts, and the lines before it.
    offset: u64,
    lines: u64,
    /// Requests read so far in this phase.
    requests: u64,
    /// While validating: hashes of the custom ids seen.
    #[serde(default)]
    ids: Vec<u64>,
    /// Segment blobs of result lines (successes) and error lines, in input order.
    outputs: Vec<String>,
    errors: Vec<String>,
    counts: Counts,
    usage: Usage,
}

impl Progress {
    /// A batch's job before its first step.
    pub fn start(blob: &str, bytes: u64) -> Self {
        Progress {
            phase: Phase::Validating,
            blob: blob.to_owned(),
            bytes,
            offset: 0,
            lines: 0,
            requests: 0,
            ids: Vec::new(),
            outputs: Vec::new(),
            errors: Vec::new(),
            counts: Counts::default(),
            usage: Usage::default(),
        }
    }

    pub fn to_json(&self) -> Result<String, Error> {
        serde_json::to_string(self).map_err(|e| Error::Internal(format!("batch progress: {e}")))
    }

    /// The input file from where the last saved step left it.
    fn reader<'h>(&self, host: &'h dyn JobHost) -> Reader<'h, dyn JobHost + 'h> {
        Reader::new(host, &self.blob, self.bytes, self.offset, self.lines)
    }

    fn more(&self) -> Result<Outcome, Error> {
        Ok(Outcome::More(self.to_json()?))
    }
}

/// FNV-1a: a custom id's hash for the duplicate check, and stable request ids.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The id of the result line for line `line` of batch `id`: the same when a step is redone.
fn request_id(batch: &str, line: u64) -> String {
    let n = line.to_le_bytes();
    let a = fnv(&[batch.as_bytes(), &n]);
    let b = fnv(&[&n, batch.as_bytes()]);
    format!("batch_req_{a:016x}{b:08x}", b = b as u32)
}

/// One step of the batch `job.id`.
pub fn step(job: Job, host: &dyn JobHost) -> Result<Outcome, Error> {
    let mut progress: Progress = serde_json::from_str(&job.progress)
        .map_err(|e| Error::Internal(format!("unreadable batch progress: {e}")))?;
    let (object, stored) = batch::load(host, &job.id)?;
    let status = object.status.clone().unwrap_or_default();
    if is_final(&status) {
        return Ok(Outcome::Done);
    }
    if let Some(reason) = &job.ending {
        fail(host, &job.id, &progress, "batch_failed", reason)?;
        return Ok(Outcome::Done);
    }
    let cancelling = job.cancel_requested || status == "cancelling";
    let expired = now() >= stored.expires_at;
    match progress.phase {
        Phase::Validating if cancelling => {
            finish(host, &job.id, &progress, "cancelled")?;
            Ok(Outcome::Done)
        }
        Phase::Validating if expired => {
            finish(host, &job.id, &progress, "expired")?;
            Ok(Outcome::Done)
        }
        Phase::Validating => validate(host, &job.id, &stored.endpoint, progress),
        Phase::Running if cancelling => {
            progress.phase = Phase::Finalizing;
            finalize(host, &job.id, &progress, "cancelled")
        }
        Phase::Running if expired => expire(host, &job.id, &stored.endpoint, progress),
        Phase::Running => run(host, &job.id, &stored.endpoint, progress),
        Phase::Finalizing => {
            let end = match (
                cancelling,
                expired && progress.requests < progress.counts.total,
            ) {
                (true, _) => "cancelled",
                (false, true) => "expired",
                _ => "completed",
            };
            finalize(host, &job.id, &progress, end)
        }
    }
}

/// A validating step: reads up to [`VALIDATE_BYTES`] of the input file; at its end, fails the
/// batch with the lines' errors or starts running it.
fn validate(
    host: &dyn JobHost,
    id: &str,
    endpoint: &str,
    mut progress: Progress,
) -> Result<Outcome, Error> {
    let max_requests = settings::max_requests(host);
    let mut reader = progress.reader(host);
    let mut seen: HashSet<u64> = progress.ids.iter().copied().collect();
    let mut errors = Vec::new();
    let mut at_end = false;
    while reader.position().0 - progress.offset < VALIDATE_BYTES {
        let line = match reader.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => {
                at_end = true;
                break;
            }
            Err(e) => {
                let (_, body) = e.to_http();
                errors.push(LineError {
                    code: "invalid_json_line".into(),
                    message: body["error"]["message"].as_str().unwrap_or_default().into(),
                    param: None,
                    line: Some(reader.position().1 + 1),
                });
                break;
            }
        };
        let (number, raw) = line;
        progress.requests += 1;
        if progress.requests > max_requests {
            errors.push(LineError {
                code: "too_many_requests".into(),
                message: format!("A batch may hold at most {max_requests} requests"),
                param: None,
                line: Some(number),
            });
            break;
        }
        match lines::check(&raw, endpoint, number) {
            Ok(checked) => {
                if !seen.insert(fnv(&[checked.custom_id.as_bytes()])) {
                    errors.push(LineError {
                        code: "duplicate_custom_id".into(),
                        message: format!(
                            "Line {number}: the custom_id '{}' is used by an earlier line",
                            checked.custom_id
                        ),
                        param: Some("custom_id".into()),
                        line: Some(number),
                    });
                }
            }
            Err(e) => errors.push(e),
        }
        if errors.len() >= MAX_ERRORS {
            break;
        }
    }
    if !errors.is_empty() || (at_end && progress.requests == 0) {
        if errors.is_empty() {
            errors.push(LineError {
                code: "empty_file".into(),
                message: "The input file holds no requests".into(),
                param: None,
                line: None,
            });
        }
        batch::change(host, id, |status, b| {
            if is_final(status) {
                return None;
            }
            b.errors = errors.clone();
            b.failed_at = Some(now());
            Some("failed".into())
        })?;
        return Ok(Outcome::Done);
    }
    (progress.offset, progress.lines) = reader.position();
    if !at_end {
        progress.ids = seen.into_iter().collect();
        return progress.more();
    }
    let total = progress.requests;
    progress = Progress {
        phase: Phase::Running,
        counts: Counts {
            total,
            ..Counts::default()
        },
        ..Progress::start(&progress.blob, progress.bytes)
    };
    batch::change(host, id, |status, b| {
        if status != "validating" {
            return None;
        }
        b.request_counts.total = total;
        b.in_progress_at = Some(now());
        Some("in_progress".into())
    })?;
    progress.more()
}

/// A result line: OpenAI's `{id, custom_id, response: {status_code, request_id, body}, error}`.
fn result_line(batch: &str, number: u64, custom_id: &str, status: u16, body: Value) -> String {
    let id = request_id(batch, number);
    json!({
        "id": id,
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": id, "body": body},
        "error": null,
    })
    .to_string()
}

/// Writes `lines` (each ended by a line break) as one new blob; `None` when there are none.
fn segment(host: &dyn JobHost, lines: &[String]) -> Result<Option<String>, Error> {
    if lines.is_empty() {
        return Ok(None);
    }
    let mut writer = host.blob_writer()?;
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push('\n');
        if text.len() > 1 << 20 {
            writer.write(text.as_bytes())?;
            text.clear();
        }
    }
    writer.write(text.as_bytes())?;
    Ok(Some(writer.finish()?.id))
}

/// Adds a successful answer's token use to the batch's.
fn add_usage(usage: &mut Usage, body: &Value) {
    let u = &body["usage"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    usage.input_tokens += n(&u["prompt_tokens"]);
    usage.output_tokens += n(&u["completion_tokens"]);
    usage.cached_tokens += n(&u["prompt_tokens_details"]["cached_tokens"]);
}

/// A running step: the next few requests, through the routes that serve them.
fn run(
    host: &dyn JobHost,
    id: &str,
    endpoint: &str,
    mut progress: Progress,
) -> Result<Outcome, Error> {
    let per_step = settings::requests_per_step(host);
    let mut reader = progress.reader(host);
    let mut taken = Vec::new();
    while (taken.len() as u64) < per_step {
        match reader.next_line()? {
            Some(line) => taken.push(line),
            None => break,
        }
    }
    let mut calls = Vec::new();
    let mut outputs = Vec::new();
    let mut errors = Vec::new();
    let mut checked = Vec::new();
    for (number, raw) in &taken {
        match lines::check(raw, endpoint, *number) {
            Ok(line) => {
                calls.push(Call {
                    method: "POST".into(),
                    path: endpoint.to_owned(),
                    body: line.body.clone(),
                });
                checked.push((*number, line.custom_id));
            }
            // Checked while validating; a file that changed since is the line's error.
            Err(e) => {
                progress.counts.failed += 1;
                errors.push(error_line(id, *number, "", &e.code, &e.message));
            }
        }
    }
    let answers = host.dispatch(&calls);
    for ((number, custom_id), answer) in checked.iter().zip(answers) {
        let (status, body) = match answer {
            Ok(Answer { status, body }) => {
                let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
                (status, body)
            }
            Err(e) => e.to_http(),
        };
        let line = result_line(id, *number, custom_id, status, body.clone());
        if (200..300).contains(&status) {
            progress.counts.completed += 1;
            add_usage(&mut progress.usage, &body);
            outputs.push(line);
        } else {
            progress.counts.failed += 1;
            errors.push(line);
        }
    }
    progress.outputs.extend(segment(host, &outputs)?);
    progress.errors.extend(segment(host, &errors)?);
    progress.requests += taken.len() as u64;
    (progress.offset, progress.lines) = reader.position();
    if taken.is_empty() || progress.requests >= progress.counts.total {
        progress.phase = Phase::Finalizing;
    }
    let (counts, usage) = (progress.counts, progress.usage);
    batch::change(host, id, |status, b| {
        if is_final(status) {
            return None;
        }
        b.request_counts = counts;
        b.usage = usage;
        Some(status.to_owned())
    })?;
    progress.more()
}

/// An error line for a request that was not sent: `{id, custom_id, response: null, error}`.
fn error_line(batch: &str, number: u64, custom_id: &str, code: &str, message: &str) -> String {
    json!({
        "id": request_id(batch, number),
        "custom_id": custom_id,
        "response": null,
        "error": {"code": code, "message": message},
    })
    .to_string()
}

/// A step of an expired batch: the requests not sent get `batch_expired` error lines.
fn expire(
    host: &dyn JobHost,
    id: &str,
    endpoint: &str,
    mut progress: Progress,
) -> Result<Outcome, Error> {
    let mut reader = progress.reader(host);
    let mut errors = Vec::new();
    let mut at_end = false;
    while (errors.len() as u64) < EXPIRE_PER_STEP {
        let Some((number, raw)) = reader.next_line()? else {
            at_end = true;
            break;
        };
        let custom_id = lines::check(&raw, endpoint, number)
            .map(|l| l.custom_id)
            .unwrap_or_default();
        errors.push(error_line(
            id,
            number,
            &custom_id,
            "batch_expired",
            "This request could not be executed before the completion window expired.",
        ));
    }
    progress.counts.failed += errors.len() as u64;
    progress.errors.extend(segment(host, &errors)?);
    (progress.offset, progress.lines) = reader.position();
    if at_end {
        progress.phase = Phase::Finalizing;
        return finalize(host, id, &progress, "expired");
    }
    progress.more()
}

/// Joins a kind of segment into one file of the batch's (its id derived from the batch's,
/// so a finalizing step redone after a crash replaces it instead of adding a second).
fn join(
    host: &dyn JobHost,
    id: &str,
    segments: &[String],
    which: &str,
) -> Result<Option<String>, Error> {
    if segments.is_empty() {
        return Ok(None);
    }
    let blob = host.concat_blobs(segments)?;
    let suffix = id.strip_prefix("batch_").unwrap_or(id);
    let file_id = format!("file-{suffix}{which}");
    let shown = cinder_sdk::files::save(
        host,
        Some(&file_id),
        &format!("{id}_{which}.jsonl"),
        "batch_output",
        &blob,
        None,
    )?;
    Ok(shown["id"].as_str().map(str::to_owned))
}

/// The last step: `finalizing`, the output and error files, then `end` (completed, cancelled
/// or expired) with the final counts.
fn finalize(
    host: &dyn JobHost,
    id: &str,
    progress: &Progress,
    end: &str,
) -> Result<Outcome, Error> {
    batch::change(host, id, |status, b| {
        // A cancelled batch goes from cancelling to cancelled, as OpenAI's do.
        if is_final(status) || status == "finalizing" || status == "cancelling" {
            return None;
        }
        b.finalizing_at = Some(now());
        Some("finalizing".into())
    })?;
    let output = join(host, id, &progress.outputs, "output")?;
    let error = join(host, id, &progress.errors, "error")?;
    for segment in progress.outputs.iter().chain(&progress.errors) {
        host.delete_blob(segment)?;
    }
    let (counts, usage) = (progress.counts, progress.usage);
    batch::change(host, id, |status, b| {
        if is_final(status) {
            return None;
        }
        b.output_file_id = output.clone();
        b.error_file_id = error.clone();
        b.request_counts = counts;
        b.usage = usage;
        let at = Some(now());
        match end {
            "cancelled" => b.cancelled_at = at,
            "expired" => b.expired_at = at,
            _ => b.completed_at = at,
        }
        Some(end.to_owned())
    })?;
    Ok(Outcome::Done)
}

/// Ends a batch that never ran (cancelled or expired while validating).
fn finish(host: &dyn JobHost, id: &str, progress: &Progress, end: &str) -> Result<(), Error> {
    finalize(host, id, progress, end).map(|_| ())
}

/// Ends the batch `failed` with `reason` (the host is ending its job), keeping what it did in
/// its output and error files where that still works.
fn fail(
    host: &dyn JobHost,
    id: &str,
    progress: &Progress,
    code: &str,
    reason: &str,
) -> Result<(), Error> {
    let output = join(host, id, &progress.outputs, "output").ok().flatten();
    let error = join(host, id, &progress.errors, "error").ok().flatten();
    for segment in progress.outputs.iter().chain(&progress.errors) {
        let _ = host.delete_blob(segment);
    }
    let (counts, usage) = (progress.counts, progress.usage);
    batch::change(host, id, |status, b| {
        if is_final(status) {
            return None;
        }
        b.errors = vec![LineError {
            code: code.into(),
            message: reason.into(),
            param: None,
            line: None,
        }];
        b.output_file_id = output.clone();
        b.error_file_id = error.clone();
        if counts.total > 0 {
            b.request_counts = counts;
        }
        b.usage = usage;
        b.failed_at = Some(now());
        Some("failed".into())
    })?;
    Ok(())
}
