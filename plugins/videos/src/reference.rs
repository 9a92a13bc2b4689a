//! `input_reference`: the image a video starts from, as a file in a multipart form, or in
//! JSON as an uploaded file's id (`{"file_id": ...}`) or a data URL (`{"image_url":
//! "data:image/png;base64,..."}`). It is read and decoded when the video is created (a bad
//! one is that request's 400 naming `input_reference`), and kept as a blob for the job.

use base64::Engine as _;
use cinder_sdk::host::AgentHost;
use cinder_sdk::{Error, invalid_request};
use serde_json::{Map, Value};

use crate::routes::Picture;

/// Bytes a text field of the form may have (a prompt of 32,000 characters fits).
const MAX_FIELD_BYTES: u64 = 256 << 10;
/// The form's fields that are numbers in a JSON body.
const INTEGERS: &[&str] = &["seed"];

/// Where the reference image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// The file's bytes, from the form.
    Bytes(Vec<u8>),
    /// An uploaded file (`/v1/files`).
    FileId(String),
    /// A `data:` URL's bytes.
    DataUrl(Vec<u8>),
}

fn bad(message: &str) -> Error {
    invalid_request(message, Some("input_reference"))
}

/// A JSON body's `input_reference`.
pub fn from_json(value: Value) -> Result<Reference, Error> {
    let Value::Object(fields) = value else {
        return Err(bad(
            "input_reference must be an object with `file_id` or `image_url` (or a file in a multipart form)",
        ));
    };
    if let Some(k) = fields.keys().find(|k| *k != "file_id" && *k != "image_url") {
        return Err(invalid_request(
            &format!("Unknown parameter: 'input_reference.{k}'."),
            Some(&format!("input_reference.{k}")),
        ));
    }
    match (fields.get("file_id"), fields.get("image_url")) {
        (Some(Value::String(id)), None) => Ok(Reference::FileId(id.clone())),
        (None, Some(Value::String(url))) => data_url(url),
        (Some(_), Some(_)) => Err(bad("give input_reference.file_id or .image_url, not both")),
        _ => Err(bad(
            "input_reference needs `file_id` or `image_url`, a string",
        )),
    }
}

/// The bytes of a `data:<type>;base64,<data>` URL.
fn data_url(url: &str) -> Result<Reference, Error> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(bad(
            "input_reference.image_url must be a data URL (data:image/png;base64,...): Cinder fetches no URLs",
        ));
    };
    let Some((_, data)) = rest.split_once(";base64,") else {
        return Err(bad("input_reference.image_url must be a base64 data URL"));
    };
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map(Reference::DataUrl)
        .map_err(|e| {
            bad(&format!(
                "input_reference.image_url is not valid base64: {e}"
            ))
        })
}

/// The reference as an image file the video keeps, checked: its size within `max_bytes`
/// and its pixels decodable (PNG, JPEG or WebP within the decoder's bounds).
pub fn load(host: &dyn AgentHost, given: Reference, max_bytes: u64) -> Result<Picture, Error> {
    let too_big = || bad(&format!("input_reference is larger than {max_bytes} bytes"));
    let (bytes, blob) = match given {
        Reference::Bytes(b) | Reference::DataUrl(b) => (b, None),
        Reference::FileId(id) => {
            let (_, file) = cinder_sdk::files::load(host, &id).map_err(|_| {
                invalid_request(
                    &format!("No file found with id '{id}'."),
                    Some("input_reference.file_id"),
                )
            })?;
            if file.bytes > max_bytes {
                return Err(too_big());
            }
            (
                crate::job::read_all(host, &file.blob, max_bytes)?,
                Some(file.blob),
            )
        }
    };
    if bytes.len() as u64 > max_bytes {
        return Err(too_big());
    }
    drop(cinder_pictures::decode(&bytes, "input_reference")?);
    Ok(match blob {
        Some(blob) => Picture::Blob(blob),
        None => Picture::Bytes(bytes),
    })
}

/// A multipart create request: its text fields as a JSON body's, and its `input_reference`
/// file.
pub fn read_form(
    host: &dyn AgentHost,
    max_image_bytes: u64,
) -> Result<(Map<String, Value>, Option<Reference>), Error> {
    let mut fields = Map::new();
    let mut file = None;
    while let Some(part) = host.next_part()? {
        let name = part.name.clone();
        if name == "input_reference" {
            if file.is_some() {
                return Err(bad("the form has more than one input_reference"));
            }
            file = Some(Reference::Bytes(
                host.read_part_within(max_image_bytes, &name)?,
            ));
            continue;
        }
        let text = String::from_utf8(host.read_part_within(MAX_FIELD_BYTES, &name)?)
            .map_err(|_| invalid_request(&format!("`{name}` is not UTF-8 text"), Some(&name)))?;
        let value = if INTEGERS.contains(&name.as_str()) {
            Value::from(text.trim().parse::<i64>().map_err(|_| {
                invalid_request(
                    &format!("`{name}` must be an integer; got {text:?}"),
                    Some(&name),
                )
            })?)
        } else {
            Value::String(text)
        };
        fields.insert(name, value);
    }
    Ok((fields, file))
}
