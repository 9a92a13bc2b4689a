//! A video as the store keeps it (collection `videos`, ids `video_...`): the request, how its
//! frames are made (fixed when it is created, so a settings change never alters a job half
//! way), where its job has got to, and its files. The object's status is OpenAI's
//! (`queued`, `in_progress`, `completed`, `failed`); `shown` is OpenAI's `Video`.

use cinder_sdk::host::AgentHost;
use cinder_sdk::openai::videos::{Video, VideoError, VideoStatus};
use cinder_sdk::store::{Change, NewObject, Object, Updated};
use cinder_sdk::{Error, no_such, well_formed_id};
use serde::{Deserialize, Serialize};

pub const COLLECTION: &str = "videos";
pub const ID_PREFIX: &str = "video_";
/// The job that makes a video has the video's id and this kind.
pub const JOB_KIND: &str = "video";

/// How a video's frames are made: keyframes from the image model, the frames between them
/// blended, encoded a second at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Frames per second of the video.
    pub fps: u32,
    /// Images the model makes per second of video (each after the first an image-to-image
    /// step from the one before); the frames between two are blended from both.
    pub keyframes_per_second: u32,
    /// How far each keyframe moves from the one before: the image-to-image strength.
    pub motion: f32,
    /// How far the first keyframe moves from the reference image (an `input_reference`, or
    /// the first frame of the video a remix starts from).
    pub reference_strength: f32,
    /// rav1e's speed preset, 0 (slowest, smallest) to 10.
    pub encoder_speed: u8,
}

/// A video's stored body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The model as the client named it (an id or an alias), shown back as given.
    pub model: String,
    pub prompt: String,
    pub seconds: u32,
    pub width: u32,
    pub height: u32,
    /// Keyframe `k` is made from seed `seed + k`.
    pub seed: u64,
    pub plan: Plan,
    pub remixed_from: Option<String>,
    /// A blob holding the image file the first keyframe starts from.
    pub reference: Option<String>,
    pub progress: u32,
    pub completed_at: Option<u64>,
    pub error: Option<VideoError>,
    /// One blob per second made so far: its encoded frames and its spritesheet tile.
    pub segments: Vec<String>,
    /// The last keyframe made (raw RGB), where the next second starts.
    pub carry: Option<String>,
    pub thumbnail: Option<String>,
    pub video: Option<String>,
    pub spritesheet: Option<String>,
}

impl Record {
    /// A video to make, nothing made yet.
    pub fn new(
        model: String,
        prompt: String,
        seconds: u32,
        (width, height): (u32, u32),
        seed: u64,
        plan: Plan,
    ) -> Record {
        Record {
            model,
            prompt,
            seconds,
            width,
            height,
            seed,
            plan,
            remixed_from: None,
            reference: None,
            progress: 0,
            completed_at: None,
            error: None,
            segments: Vec::new(),
            carry: None,
            thumbnail: None,
            video: None,
            spritesheet: None,
        }
    }

    /// Every blob the video holds, to remove with it.
    pub fn blobs(&self) -> Vec<String> {
        let singles = [
            &self.reference,
            &self.carry,
            &self.thumbnail,
            &self.video,
            &self.spritesheet,
        ];
        singles
            .into_iter()
            .flatten()
            .chain(&self.segments)
            .cloned()
            .collect()
    }

    pub fn size(&self) -> String {
        format!("{}x{}", self.width, self.height)
    }
}

pub fn status_name(s: VideoStatus) -> &'static str {
    match s {
        VideoStatus::Queued => "queued",
        VideoStatus::InProgress => "in_progress",
        VideoStatus::Completed => "completed",
        VideoStatus::Failed => "failed",
    }
}

pub fn status_of(object: &Object) -> VideoStatus {
    match object.status.as_deref() {
        Some("in_progress") => VideoStatus::InProgress,
        Some("completed") => VideoStatus::Completed,
        Some("failed") => VideoStatus::Failed,
        _ => VideoStatus::Queued,
    }
}

pub fn read(object: &Object) -> Result<Record, Error> {
    serde_json::from_str(&object.body)
        .map_err(|e| Error::Internal(format!("video {} is unreadable: {e}", object.id)))
}

fn body(record: &Record) -> Result<String, Error> {
    serde_json::to_string(record).map_err(|e| Error::Internal(format!("a video's record: {e}")))
}

/// OpenAI's `Video` for a stored video.
pub fn shown(object: &Object, record: &Record) -> Video {
    Video {
        id: object.id.clone(),
        object: "video".into(),
        created_at: object.created_at.max(0) as u64,
        completed_at: record.completed_at,
        expires_at: None,
        model: record.model.clone(),
        progress: record.progress,
        prompt: Some(record.prompt.clone()),
        remixed_from_video_id: record.remixed_from.clone(),
        seconds: record.seconds.to_string(),
        size: record.size(),
        status: status_of(object),
        error: record.error.clone(),
    }
}

pub fn shown_json(object: &Object) -> Result<serde_json::Value, Error> {
    let record = read(object)?;
    serde_json::to_value(shown(object, &record))
        .map_err(|e| Error::Internal(format!("a video as JSON: {e}")))
}

/// A new video, queued.
pub fn create(host: &dyn AgentHost, record: &Record) -> Result<Object, Error> {
    host.create_object(
        COLLECTION,
        &NewObject {
            id_prefix: ID_PREFIX.into(),
            status: Some(status_name(VideoStatus::Queued).into()),
            metadata: Vec::new(),
            body: body(record)?,
        },
    )
}

/// The video `id` of the caller's owner, or OpenAI's 404.
pub fn load(host: &dyn AgentHost, id: &str) -> Result<(Object, Record), Error> {
    if !well_formed_id(id, ID_PREFIX) {
        return Err(no_such("video", id));
    }
    let object = host
        .get_object(COLLECTION, id)?
        .ok_or_else(|| no_such("video", id))?;
    let record = read(&object)?;
    Ok((object, record))
}

/// Saves `record` with `status` if the video is still at `object`'s version: `None` when it
/// has been deleted meanwhile.
pub fn save(
    host: &dyn AgentHost,
    object: &Object,
    status: VideoStatus,
    record: &Record,
) -> Result<Option<Object>, Error> {
    let change = Change {
        status: Some(status_name(status).into()),
        metadata: object.metadata.clone(),
        body: body(record)?,
        expect_version: Some(object.version),
    };
    match host.update_object(COLLECTION, &object.id, &change)? {
        Updated::Done(o) => Ok(Some(o)),
        Updated::NotFound => Ok(None),
        Updated::Conflict(v) => Err(Error::Internal(format!(
            "video {} moved on to version {v} while its job worked on it",
            object.id
        ))),
    }
}

/// Removes blobs, ignoring those already gone.
pub fn remove_blobs(host: &dyn AgentHost, blobs: &[String]) -> Result<(), Error> {
    for b in blobs {
        host.delete_blob(b)?;
    }
    Ok(())
}
