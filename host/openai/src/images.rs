//! `/v1/images/*` request and response bodies, and the image stream's events.

use serde::{Deserialize, Serialize};

/// `POST /v1/images/generations`. Cinder also reads `seed`, `negative_prompt` and `steps`
/// (sent by the SDKs as `extra_body`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageGenerationRequest {
    pub prompt: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub n: Option<i64>,
    /// `auto` or `WIDTHxHEIGHT`.
    #[serde(default)]
    pub size: Option<String>,
    /// `auto`, `low`, `medium`, `high` (GPT image models), `standard`, `hd` (DALL·E 3).
    #[serde(default)]
    pub quality: Option<String>,
    /// `url` or `b64_json`.
    #[serde(default)]
    pub response_format: Option<String>,
    /// `png`, `jpeg` or `webp`.
    #[serde(default)]
    pub output_format: Option<String>,
    /// 0 to 100, for `jpeg` and `webp`.
    #[serde(default)]
    pub output_compression: Option<i64>,
    /// `auto`, `opaque` or `transparent`.
    #[serde(default)]
    pub background: Option<String>,
    /// `auto` or `low`.
    #[serde(default)]
    pub moderation: Option<String>,
    /// `vivid` or `natural` (DALL·E 3).
    #[serde(default)]
    pub style: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// Partial images streamed per image, 0 to 3.
    #[serde(default)]
    pub partial_images: Option<i64>,
    #[serde(default)]
    pub user: Option<String>,
    /// Cinder: the same seed and request make the same images.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Cinder: what the images should not show.
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// Cinder: denoising steps, instead of the ones `quality` picks.
    #[serde(default)]
    pub steps: Option<i64>,
}

/// One image of a response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImageData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
}

/// Tokens of the prompt by kind.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct InputTokensDetails {
    pub image_tokens: u64,
    pub text_tokens: u64,
}

/// `usage` of an image response (GPT image models' shape).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ImageUsage {
    pub input_tokens: u64,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

/// The answer to a generation, an edit or a variation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagesResponse {
    pub created: u64,
    pub data: Vec<ImageData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ImageUsage>,
}

/// One event of a streamed generation: `image_generation.partial_image` (with
/// `partial_image_index`) or `image_generation.completed` (with `usage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageStreamEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub b64_json: String,
    pub created_at: u64,
    pub size: String,
    pub quality: String,
    pub background: String,
    pub output_format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_image_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ImageUsage>,
}

/// The stream event names.
pub const PARTIAL_IMAGE_EVENT: &str = "image_generation.partial_image";
pub const COMPLETED_EVENT: &str = "image_generation.completed";
/// The same events of a streamed edit (`POST /v1/images/edits`).
pub const EDIT_PARTIAL_IMAGE_EVENT: &str = "image_edit.partial_image";
pub const EDIT_COMPLETED_EVENT: &str = "image_edit.completed";
