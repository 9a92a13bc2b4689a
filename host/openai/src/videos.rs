//! `/v1/videos` request and response bodies: OpenAI's video job (`Video`), as openai-python
//! 3.63 reads it.

use serde::{Deserialize, Serialize};

/// `POST /v1/videos` (JSON, or a multipart form when `input_reference` is a file: the plugin
/// reads the form's text fields into this). Cinder also reads `seed` (the SDKs' `extra_body`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VideoCreateRequest {
    pub prompt: String,
    #[serde(default)]
    pub model: Option<String>,
    /// `"4"`, `"8"` or `"12"`: a string in OpenAI's API (a number is read too).
    #[serde(default)]
    pub seconds: Option<serde_json::Value>,
    /// `WIDTHxHEIGHT`.
    #[serde(default)]
    pub size: Option<String>,
    /// Cinder: the same seed and request make the same video.
    #[serde(default)]
    pub seed: Option<i64>,
}

/// `POST /v1/videos/{id}/remix`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VideoRemixRequest {
    pub prompt: String,
}

/// Where a video job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoStatus {
    Queued,
    InProgress,
    Completed,
    Failed,
}

/// Why a video job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoError {
    pub code: String,
    pub message: String,
}

/// A video job (`object: "video"`). Absent times and ids are `null`, as OpenAI sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Video {
    pub id: String,
    pub object: String,
    pub created_at: u64,
    pub completed_at: Option<u64>,
    pub expires_at: Option<u64>,
    pub model: String,
    /// Percent done, 0 to 100; it only grows.
    pub progress: u32,
    pub prompt: Option<String>,
    pub remixed_from_video_id: Option<String>,
    /// Seconds as a string (`"4"`).
    pub seconds: String,
    pub size: String,
    pub status: VideoStatus,
    pub error: Option<VideoError>,
}

/// `DELETE /v1/videos/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoDeleted {
    pub id: String,
    pub object: String,
    pub deleted: bool,
}
