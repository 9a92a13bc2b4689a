//! Builds a response's output as the answer comes, and, when the request streams, says each
//! step as OpenAI's semantic events (`sequence_number` counting from 0). A streamed answer and
//! a whole one are the same response: both are this one fold.

use serde_json::{Value, json};

use cinder_sdk::host::Host;
use cinder_sdk::openai::responses::{
    ContentPart, IncompleteDetails, OutputItem, Response, ResponseError, StreamEvent, Usage,
};
use cinder_sdk::tools::Call;
use cinder_sdk::{Error, unix_time};

use crate::background::Watch;
use crate::file_search::Searched;

/// The response being answered.
pub struct Emitter<'h> {
    stream: bool,
    response: Response,
    host: &'h dyn Host,
    next: u64,
    /// The output index of the message whose text is still coming, if one is open.
    open_message: Option<usize>,
    /// Its logprobs so far.
    logprobs: Vec<Value>,
    /// `include` asked for logprobs: output text carries them (maybe empty).
    with_logprobs: bool,
    /// A background response: its events go to its event log, and a client may cancel it.
    watch: Option<Watch>,
    /// (file id, file name) the next message to end cites (what file_search found).
    cite: Vec<(String, String)>,
}

impl<'h> Emitter<'h> {
    pub fn new(stream: bool, with_logprobs: bool, response: Response, host: &'h dyn Host) -> Self {
        Emitter {
            stream,
            response,
            host,
            next: 0,
            open_message: None,
            logprobs: Vec::new(),
            with_logprobs,
            watch: None,
            cite: Vec::new(),
        }
    }

    /// This emitter for a background response's step: its events (numbered after those its
    /// request said) go to `watch`'s log.
    pub fn watched(mut self, watch: Watch) -> Self {
        self.next = watch.next_sequence();
        self.watch = Some(watch);
        self
    }

    /// The response so far.
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// Whether a client cancelled this (background) response; between checks, at most every
    /// [`crate::background::CHECK_EVERY`], the events so far go to the log.
    pub fn cancelled(&mut self) -> Result<bool, Error> {
        match &mut self.watch {
            Some(w) => w.cancelled(self.host, false),
            None => Ok(false),
        }
    }

    /// [`Emitter::cancelled`], looked up now.
    pub fn cancelled_now(&mut self) -> Result<bool, Error> {
        match &mut self.watch {
            Some(w) => w.cancelled(self.host, true),
            None => Ok(false),
        }
    }

    /// The stored response's version a background step last wrote.
    pub fn watch_version(&self) -> Option<i64> {
        self.watch.as_ref().map(Watch::version)
    }

    /// Stops a response a client cancelled: the open message ends `incomplete`.
    pub fn stop(mut self) -> Result<(Response, Option<Watch>), Error> {
        self.close("incomplete")?;
        Ok((self.response, self.watch))
    }

    fn seq(&mut self) -> u64 {
        self.next += 1;
        self.next - 1
    }

    fn send(&mut self, event: impl FnOnce(u64) -> StreamEvent) -> Result<(), Error> {
        if !self.stream {
            return Ok(());
        }
        let e = event(self.seq());
        match &mut self.watch {
            Some(w) => w.push(&e),
            None => self.host.send_json(&e),
        }
    }

    fn item_prefix(&self) -> String {
        self.response.id.trim_start_matches("resp_").to_owned()
    }

    /// `response.created` and `response.in_progress` (a background response's request said
    /// it was created, so its step says only that it is in progress).
    pub fn start(&mut self) -> Result<(), Error> {
        let r = Box::new(self.response.clone());
        if self.watch.is_some() {
            return self.send(|n| StreamEvent::InProgress {
                sequence_number: n,
                response: r,
            });
        }
        self.send(|n| StreamEvent::Created {
            sequence_number: n,
            response: r.clone(),
        })?;
        self.send(|n| StreamEvent::InProgress {
            sequence_number: n,
            response: r,
        })
    }

    /// A piece of the answer's text: it goes into the open message (opened first if none is).
    pub fn text(&mut self, text: &str, logprobs: Vec<Value>) -> Result<(), Error> {
        let index = match self.open_message {
            Some(i) => i,
            None => self.open()?,
        };
        if let OutputItem::Message { content, .. } = &mut self.response.output[index]
            && let Some(ContentPart::OutputText { text: all, .. }) = content.first_mut()
        {
            all.push_str(text);
        }
        if !self.stream {
            self.logprobs.extend(logprobs);
            return Ok(());
        }
        self.logprobs.extend(logprobs.iter().cloned());
        let item_id = self.response.output[index].id().to_owned();
        let delta = text.to_owned();
        self.send(|n| StreamEvent::OutputTextDelta {
            sequence_number: n,
            item_id,
            output_index: index as u32,
            content_index: 0,
            delta,
            logprobs,
        })
    }

    fn open(&mut self) -> Result<usize, Error> {
        let index = self.response.output.len();
        let id = format!("msg_{}_{index}", self.item_prefix());
        let item = OutputItem::Message {
            id: id.clone(),
            role: "assistant".into(),
            status: "in_progress".into(),
            content: Vec::new(),
        };
        self.send(|n| StreamEvent::OutputItemAdded {
            sequence_number: n,
            output_index: index as u32,
            item: item.clone(),
        })?;
        let part = ContentPart::output_text("");
        self.send(|n| StreamEvent::ContentPartAdded {
            sequence_number: n,
            item_id: id,
            output_index: index as u32,
            content_index: 0,
            part: part.clone(),
        })?;
        let mut item = item;
        if let OutputItem::Message { content, .. } = &mut item {
            content.push(part);
        }
        self.response.output.push(item);
        self.open_message = Some(index);
        Ok(index)
    }

    /// Ends the open message (`completed`, or `incomplete` when the answer was cut).
    fn close(&mut self, status: &str) -> Result<(), Error> {
        let Some(index) = self.open_message.take() else {
            return Ok(());
        };
        let logprobs = std::mem::take(&mut self.logprobs);
        let with_logprobs = self.with_logprobs;
        let cite = std::mem::take(&mut self.cite);
        let mut notes = Vec::new();
        let item = &mut self.response.output[index];
        if let OutputItem::Message {
            status: s, content, ..
        } = item
        {
            *s = status.into();
            if let Some(ContentPart::OutputText {
                text,
                annotations,
                logprobs: lp,
            }) = content.first_mut()
            {
                *lp = with_logprobs.then(|| logprobs.clone());
                // The files are cited where the answer ends (offsets in characters).
                let at = text.chars().count();
                notes = cite
                    .into_iter()
                    .map(|(file_id, filename)| {
                        json!({"type": "file_citation", "file_id": file_id,
                               "filename": filename, "index": at})
                    })
                    .collect();
                annotations.extend(notes.iter().cloned());
            }
        }
        // Whole answers need no events (and so no copies of the text for them).
        if !self.stream {
            return Ok(());
        }
        let item = item.clone();
        let (id, part) = match &item {
            OutputItem::Message { id, content, .. } => (id.clone(), content.first().cloned()),
            _ => return Ok(()),
        };
        let part = part.unwrap_or_else(|| ContentPart::output_text(""));
        let text = part.text().to_owned();
        let (i, id2) = (index as u32, id.clone());
        for (k, annotation) in notes.into_iter().enumerate() {
            let item_id = id.clone();
            self.send(|n| StreamEvent::OutputTextAnnotationAdded {
                sequence_number: n,
                item_id,
                output_index: i,
                content_index: 0,
                annotation_index: k as u32,
                annotation,
            })?;
        }
        self.send(|n| StreamEvent::OutputTextDone {
            sequence_number: n,
            item_id: id2,
            output_index: i,
            content_index: 0,
            text,
            logprobs,
        })?;
        let id3 = id.clone();
        self.send(|n| StreamEvent::ContentPartDone {
            sequence_number: n,
            item_id: id3,
            output_index: i,
            content_index: 0,
            part,
        })?;
        self.send(|n| StreamEvent::OutputItemDone {
            sequence_number: n,
            output_index: i,
            item,
        })
    }

    /// The file_search tool's search, done before the answer: an item of its own, said as it
    /// would have been while it ran; the answer's text will cite what it found.
    pub fn file_search(&mut self, searched: &Searched) -> Result<(), Error> {
        let index = self.response.output.len();
        let (id, started) = match &searched.item {
            OutputItem::FileSearchCall { id, queries, .. } => (
                id.clone(),
                OutputItem::FileSearchCall {
                    id: id.clone(),
                    status: "in_progress".into(),
                    queries: queries.clone(),
                    results: None,
                },
            ),
            _ => return Err(Error::Internal("a search is a file_search_call".into())),
        };
        let i = index as u32;
        self.send(|n| StreamEvent::OutputItemAdded {
            sequence_number: n,
            output_index: i,
            item: started,
        })?;
        type Phase = fn(u64, String, u32) -> StreamEvent;
        let phases: [Phase; 3] = [
            |n, item_id, output_index| StreamEvent::FileSearchCallInProgress {
                sequence_number: n,
                item_id,
                output_index,
            },
            |n, item_id, output_index| StreamEvent::FileSearchCallSearching {
                sequence_number: n,
                item_id,
                output_index,
            },
            |n, item_id, output_index| StreamEvent::FileSearchCallCompleted {
                sequence_number: n,
                item_id,
                output_index,
            },
        ];
        for phase in phases {
            let item_id = id.clone();
            self.send(|n| phase(n, item_id, i))?;
        }
        let done = searched.item.clone();
        self.response.output.push(done.clone());
        self.cite = searched.cited.clone();
        self.send(|n| StreamEvent::OutputItemDone {
            sequence_number: n,
            output_index: i,
            item: done,
        })
    }

    /// A call of one of the request's functions: an item of its own.
    pub fn call(&mut self, call: Call) -> Result<(), Error> {
        self.close("completed")?;
        let index = self.response.output.len();
        let id = format!("fc_{}_{index}", self.item_prefix());
        // The server's own id, never the model's: a model copying an id from an earlier turn
        // would make two calls (and their outputs) one.
        let call_id = format!("call_{}_{index}", self.item_prefix());
        let item = |arguments: &str, status: &str| OutputItem::FunctionCall {
            id: id.clone(),
            call_id: call_id.clone(),
            name: call.name.clone(),
            arguments: arguments.into(),
            status: status.into(),
        };
        let (started, done) = (item("", "in_progress"), item(&call.arguments, "completed"));
        let i = index as u32;
        self.send(|n| StreamEvent::OutputItemAdded {
            sequence_number: n,
            output_index: i,
            item: started,
        })?;
        let (id2, args) = (id.clone(), call.arguments.clone());
        self.send(|n| StreamEvent::FunctionCallArgumentsDelta {
            sequence_number: n,
            item_id: id2,
            output_index: i,
            delta: args,
        })?;
        let (id3, args, name) = (id.clone(), call.arguments.clone(), call.name.clone());
        self.send(|n| StreamEvent::FunctionCallArgumentsDone {
            sequence_number: n,
            item_id: id3,
            output_index: i,
            name,
            arguments: args,
        })?;
        self.response.output.push(done.clone());
        self.send(|n| StreamEvent::OutputItemDone {
            sequence_number: n,
            output_index: i,
            item: done,
        })
    }

    /// Ends a streamed response that failed after it started: `response.failed`, with the
    /// error in the response (OpenAI's stream says a failure so, not with an error body).
    pub fn fail(mut self, e: &Error) -> Result<(Response, Option<Watch>), Error> {
        let (code, message) = match e {
            Error::InvalidRequest(d) => ("invalid_prompt", d.message.clone()),
            Error::NotFound(d) => ("invalid_prompt", d.message.clone()),
            Error::RateLimited(m) => ("rate_limit_exceeded", m.clone()),
            Error::Unavailable(m) | Error::Internal(m) => ("server_error", m.clone()),
        };
        self.close("incomplete")?;
        self.response.status = "failed".into();
        self.response.error = Some(ResponseError {
            code: code.into(),
            message,
        });
        let r = Box::new(self.response.clone());
        self.send(|n| StreamEvent::Failed {
            sequence_number: n,
            response: r,
        })?;
        Ok((self.response, self.watch))
    }

    /// Completes the response (`completed`, or `incomplete` with `reason`): its last items
    /// are said; [`Emitter::end`] says it is over, once the caller has stored it, so that a
    /// client continuing from that event finds it.
    pub fn complete(
        &mut self,
        reason: Option<IncompleteDetails>,
        usage: Usage,
    ) -> Result<(), Error> {
        let status = if reason.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        self.close(status)?;
        self.response.status = status.into();
        self.response.incomplete_details = reason;
        self.response.usage = Some(usage);
        if status == "completed" {
            self.response.completed_at = Some(unix_time());
        }
        Ok(())
    }

    /// Says the completed response is over (`response.completed` or `.incomplete`).
    pub fn end(mut self) -> Result<(Response, Option<Watch>), Error> {
        let r = Box::new(self.response.clone());
        let incomplete = self.response.status == "incomplete";
        self.send(|n| match incomplete {
            true => StreamEvent::Incomplete {
                sequence_number: n,
                response: r,
            },
            false => StreamEvent::Completed {
                sequence_number: n,
                response: r,
            },
        })?;
        Ok((self.response, self.watch))
    }
}
