//! A batch's job, one step at a time. Validating reads the whole input file (in slices of
//! [`VALIDATE_BYTES`]) and refuses it with OpenAI's per-line errors; running sends a few
//! requests per step through `dispatch` and keeps their result lines in a new segment blob
//! per step; finalizing joins the segments into the output and error files. Everything a
//! step did is in the progress it returns, which the host saves before the next step: a step
//! cut short by a crash is redone from the last saved progress, and its segment (if it was
//! written) is never referenced, so no request appears twice in the output.

use std::collections::HashSet;

use cinder_sdk::dispatch::{Answer, Call};
use cinder_sdk::host::{BlobWriter, JobHost};
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
        // A batch that never ran ends with no files.
        Phase::Validating if cancelling => finalize(host, &job.id, &progress, "cancelled"),
        Phase::Validating if expired => finalize(host, &job.id, &progress, "expired"),
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

/// Writes a result line, OpenAI's `{id, custom_id, response: {status_code, request_id, body},
/// error}`. The answer's body goes in as the route wrote it (JSON), neither parsed into a tree
/// nor copied: an embeddings answer of 2,048 vectors is large, and a step holds a few.
fn write_result(
    segment: &mut Segment,
    host: &dyn JobHost,
    (batch, number, custom_id): (&str, u64, &str),
    status: u16,
    body: &str,
) -> Result<(), Error> {
    let id = Value::String(request_id(batch, number));
    let head = format!(
        r#"{{"id":{id},"custom_id":{},"response":{{"status_code":{status},"request_id":{id},"body":"#,
        Value::String(custom_id.to_owned()),
    );
    let tail = "},\"error\":null}\n";
    if serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok() {
        segment.write(host, &[&head, body, tail])
    } else {
        // Not JSON (a route that broke its contract): kept as a string.
        segment.write(
            host,
            &[&head, &Value::String(body.to_owned()).to_string(), tail],
        )
    }
}

/// The token use an answer reports (the rest of it is skipped, not read into memory).
#[derive(Deserialize, Default)]
struct Reported {
    #[serde(default)]
    usage: Option<ReportedUsage>,
}

#[derive(Deserialize, Default)]
struct ReportedUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<CachedTokens>,
}

#[derive(Deserialize, Default)]
struct CachedTokens {
    #[serde(default)]
    cached_tokens: u64,
}

/// Adds a successful answer's token use to the batch's.
fn add_usage(usage: &mut Usage, body: &str) {
    let Some(u) = serde_json::from_str::<Reported>(body)
        .ok()
        .and_then(|r| r.usage)
    else {
        return;
    };
    usage.input_tokens += u.prompt_tokens;
    usage.output_tokens += u.completion_tokens;
    usage.cached_tokens += u.prompt_tokens_details.map_or(0, |d| d.cached_tokens);
}

/// One step's segment blob of one kind, started on its first line: lines go to the host as
/// they are made, so a step never holds its whole output.
#[derive(Default)]
struct Segment(Option<Box<dyn BlobWriter>>);

impl Segment {
    /// Writes `parts` one after another (a line's pieces, its line break included).
    fn write(&mut self, host: &dyn JobHost, parts: &[&str]) -> Result<(), Error> {
        let writer = match &mut self.0 {
            Some(w) => w,
            None => self.0.insert(host.blob_writer()?),
        };
        parts.iter().try_for_each(|p| writer.write(p.as_bytes()))
    }

    /// Writes one whole line.
    fn push(&mut self, host: &dyn JobHost, line: &str) -> Result<(), Error> {
        self.write(host, &[line, "\n"])
    }

    /// The finished blob's id; `None` when no line was written.
    fn finish(self) -> Result<Option<String>, Error> {
        self.0.map(|w| w.finish().map(|b| b.id)).transpose()
    }
}

/// Requests handed to `dispatch` at once: their answers are in memory together.
const CALLS_AT_ONCE: usize = 4;

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
    let (mut outputs, mut errors) = (Segment::default(), Segment::default());
    let mut checked = Vec::new();
    for (number, raw) in &taken {
        match lines::check(raw, endpoint, *number) {
            Ok(line) => checked.push((*number, line)),
            // Checked while validating; a file that changed since is the line's error.
            Err(e) => {
                progress.counts.failed += 1;
                errors.push(host, &error_line(id, *number, "", &e.code, &e.message))?;
            }
        }
    }
    for group in checked.chunks(CALLS_AT_ONCE) {
        let calls: Vec<Call> = group
            .iter()
            .map(|(_, line)| Call {
                method: "POST".into(),
                path: endpoint.to_owned(),
                body: line.body.clone(),
            })
            .collect();
        for ((number, line), answer) in group.iter().zip(host.dispatch(&calls)) {
            let (status, body) = match answer {
                Ok(Answer { status, body }) => (status, body),
                Err(e) => {
                    let (status, body) = e.to_http();
                    (status, body.to_string())
                }
            };
            let at = (id, *number, line.custom_id.as_str());
            if (200..300).contains(&status) {
                progress.counts.completed += 1;
                add_usage(&mut progress.usage, &body);
                write_result(&mut outputs, host, at, status, &body)?;
            } else {
                progress.counts.failed += 1;
                write_result(&mut errors, host, at, status, &body)?;
            }
        }
    }
    progress.outputs.extend(outputs.finish()?);
    progress.errors.extend(errors.finish()?);
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
    let mut errors = Segment::default();
    let mut marked = 0u64;
    let mut at_end = false;
    while marked < EXPIRE_PER_STEP {
        let Some((number, raw)) = reader.next_line()? else {
            at_end = true;
            break;
        };
        let custom_id = lines::check(&raw, endpoint, number)
            .map(|l| l.custom_id)
            .unwrap_or_default();
        let line = error_line(
            id,
            number,
            &custom_id,
            "batch_expired",
            "This request could not be executed before the completion window expired.",
        );
        errors.push(host, &line)?;
        marked += 1;
    }
    progress.counts.failed += marked;
    progress.errors.extend(errors.finish()?);
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
        cinder_sdk::files::BATCH_OUTPUT,
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
