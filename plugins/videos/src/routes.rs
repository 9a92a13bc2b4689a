//! `/v1/videos`: create (JSON, or a form with an `input_reference` file), list, retrieve,
//! delete, content and remix. A video is created `queued` with its job; the job makes it.

use cinder_sdk::host::AgentHost;
use cinder_sdk::images::ImageModelInfo;
use cinder_sdk::openai::params::videos::{Variant, VideoParams, check_remix};
use cinder_sdk::openai::videos::{
    VideoCreateRequest, VideoDeleted, VideoRemixRequest, VideoStatus,
};
use cinder_sdk::{Error, Request, invalid_request, list_query, respond_page};
use serde_json::{Map, Value};

use crate::frames::NAMES;
use crate::record::{self, COLLECTION, JOB_KIND, Plan, Record, load, shown, shown_json, status_of};
use crate::reference::{self, Reference};
use crate::settings::Settings;

/// `POST /v1/videos`.
pub fn create(request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let settings = Settings::read(host);
    // The host reads a multipart body as a form and leaves the body empty.
    let (fields, given) = if request.body.is_empty() {
        reference::read_form(host, settings.max_image_bytes)?
    } else {
        json_fields(&request.body)?
    };
    if !fields.contains_key("prompt") {
        return Err(invalid_request(
            "Missing required parameter: 'prompt'.",
            Some("prompt"),
        ));
    }
    let req: VideoCreateRequest = serde_json::from_value(Value::Object(fields))
        .map_err(|e| invalid_request(&format!("The request's fields: {e}"), Some("prompt")))?;
    let p = VideoParams::check(req)?;
    let model = p
        .model
        .clone()
        .unwrap_or_else(|| settings.default_model.clone());
    let info = host
        .describe_image_model(&model)
        .map_err(|e| e.naming(NAMES))?;
    let size = pick_size(p.size, &info, &settings)?;
    // Read and checked before anything is stored: a bad reference is the request's 400.
    let picture = given
        .map(|r| reference::load(host, r, settings.max_image_bytes))
        .transpose()?;
    let seed = p.seed.unwrap_or_else(cinder_sdk::random_seed);
    let record = Record::new(model, p.prompt, p.seconds, size, seed, settings.plan());
    start(host, record, picture)
}

/// Stores `record` (with its reference image file `picture`, as a new blob) and queues its
/// job; answers the video.
fn start(host: &dyn AgentHost, mut record: Record, picture: Option<Picture>) -> Result<(), Error> {
    let reference = match picture {
        Some(Picture::Bytes(bytes)) => Some(crate::job::write_all(host, &bytes)?),
        Some(Picture::Blob(blob)) => Some(host.concat_blobs(&[blob])?.id),
        None => None,
    };
    record.reference = reference.clone();
    let made = record::create(host, &record).and_then(|object| {
        host.enqueue_job(JOB_KIND, &object.id, "{}")
            .inspect_err(|_| {
                let _ = host.delete_object(COLLECTION, &object.id);
            })
            .map(|()| object)
    });
    match made {
        Ok(object) => host.respond_json(200, &shown(&object, &record)),
        Err(e) => {
            if let Some(blob) = reference {
                let _ = host.delete_blob(&blob);
            }
            Err(e)
        }
    }
}

/// An image file to start from: bytes read from the request, or a blob already stored (an
/// uploaded file's, a video's thumbnail) that the video copies.
pub enum Picture {
    Bytes(Vec<u8>),
    Blob(String),
}

/// A JSON body's fields, its `input_reference` taken out.
fn json_fields(body: &str) -> Result<(Map<String, Value>, Option<Reference>), Error> {
    let Value::Object(mut fields) = cinder_sdk::parse_body::<Value>(body)? else {
        return Err(invalid_request("The body must be a JSON object", None));
    };
    let given = match fields.remove("input_reference") {
        None | Some(Value::Null) => None,
        Some(v) => Some(reference::from_json(v)?),
    };
    Ok((fields, given))
}

/// The size a video is made at: the model's default, or one it lists that a video may have.
fn pick_size(
    asked: Option<(u32, u32)>,
    info: &ImageModelInfo,
    settings: &Settings,
) -> Result<(u32, u32), Error> {
    let fits = |w: u32, h: u32| {
        w.is_multiple_of(2)
            && h.is_multiple_of(2)
            && u64::from(w) * u64::from(h) <= settings.max_video_pixels
    };
    let sizes: Vec<(u32, u32)> = info
        .sizes
        .iter()
        .map(|s| (s.width, s.height))
        .filter(|&(w, h)| fits(w, h))
        .collect();
    let listed = sizes
        .iter()
        .map(|(w, h)| format!("`{w}x{h}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match asked {
        None => sizes.first().copied().ok_or_else(|| {
            invalid_request(
                &format!(
                    "the model `{}` makes no size a video may have (at most {} pixels)",
                    info.id, settings.max_video_pixels
                ),
                Some("model"),
            )
        }),
        Some(s) if sizes.contains(&s) => Ok(s),
        Some((w, h)) => Err(invalid_request(
            &format!(
                "size `{w}x{h}` is not one the model `{}` makes videos at; it makes {listed}",
                info.id
            ),
            Some("size"),
        )),
    }
}

/// `GET /v1/videos`.
pub fn list(request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let q = list_query(&request.query(), &[])?;
    let page = host.list_objects(COLLECTION, &q)?;
    respond_page(host, &page, shown_json)
}

/// `GET /v1/videos/{video_id}`.
pub fn retrieve(host: &dyn AgentHost, id: &str) -> Result<(), Error> {
    let (object, record) = load(host, id)?;
    host.respond_json(200, &shown(&object, &record))
}

/// `DELETE /v1/videos/{video_id}`: a video being made is stopped (its job cancelled; a
/// step running now drops what it makes) and its files removed with it.
pub fn delete(host: &dyn AgentHost, id: &str) -> Result<(), Error> {
    let (object, record) = load(host, id)?;
    if matches!(
        status_of(&object),
        VideoStatus::Queued | VideoStatus::InProgress
    ) {
        host.cancel_job(&object.id)?;
    }
    host.delete_object(COLLECTION, &object.id)?;
    record::remove_blobs(host, &record.blobs())?;
    host.respond_json(
        200,
        &VideoDeleted {
            id: object.id,
            object: "video.deleted".into(),
            deleted: true,
        },
    )
}

/// A 400 for a video whose files are not made yet (or never will be).
fn not_ready(id: &str, status: VideoStatus) -> Error {
    invalid_request(
        &format!(
            "Video '{id}' is {}; its content can be downloaded once it is completed",
            record::status_name(status)
        ),
        Some("video_id"),
    )
}

/// `GET /v1/videos/{video_id}/content?variant=video|thumbnail|spritesheet`.
pub fn content(request: &Request, host: &dyn AgentHost, id: &str) -> Result<(), Error> {
    let pairs = request.query();
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k != "variant") {
        return Err(invalid_request(
            &format!("Unknown parameter: '{k}'."),
            Some(k),
        ));
    }
    let variant = Variant::parse(
        pairs
            .iter()
            .find(|(k, _)| k == "variant")
            .map(|(_, v)| v.as_str()),
    )?;
    let (object, record) = load(host, id)?;
    let status = status_of(&object);
    if status != VideoStatus::Completed {
        return Err(not_ready(id, status));
    }
    let (blob, content_type) = match variant {
        Variant::Video => (&record.video, "video/mp4"),
        Variant::Thumbnail => (&record.thumbnail, "image/webp"),
        Variant::Spritesheet => (&record.spritesheet, "image/jpeg"),
    };
    let blob = blob
        .as_deref()
        .ok_or_else(|| Error::Internal(format!("completed video {id} has no file")))?;
    host.send_blob(blob, content_type)
}

/// `POST /v1/videos/{video_id}/remix`: a new video of the same model, size, length and seed
/// with a new prompt, whose first keyframe starts from the source's first frame.
pub fn remix(request: &Request, host: &dyn AgentHost, id: &str) -> Result<(), Error> {
    let fields = cinder_sdk::object_body(&request.body, &["prompt"])?;
    let prompt = match fields.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(invalid_request("prompt must be a string", Some("prompt"))),
        None => {
            return Err(invalid_request(
                "Missing required parameter: 'prompt'.",
                Some("prompt"),
            ));
        }
    };
    let req = VideoRemixRequest { prompt };
    check_remix(&req)?;
    let (object, source) = load(host, id)?;
    let status = status_of(&object);
    let Some(thumbnail) = source
        .thumbnail
        .clone()
        .filter(|_| status == VideoStatus::Completed)
    else {
        return Err(not_ready(id, status));
    };
    let settings = Settings::read(host);
    let plan = Plan {
        reference_strength: settings.remix_strength,
        ..settings.plan()
    };
    let size = (source.width, source.height);
    let mut record = Record::new(
        source.model,
        req.prompt,
        source.seconds,
        size,
        source.seed,
        plan,
    );
    record.remixed_from = Some(object.id.clone());
    start(host, record, Some(Picture::Blob(thumbnail)))
}
