//! Reading a multipart form a part at a time: short text fields whole, file fields streamed
//! into a blob in chunks (never whole in the plugin's memory).

use cinder_sdk::host::BlobWriter;
use cinder_sdk::host::StoreHost;
use cinder_sdk::{Error, invalid_request};

use crate::jsonl::Lines;

/// Bytes asked of the host per read (a part's content moves in chunks of this size).
const CHUNK: u32 = 1 << 20;

/// The current part as UTF-8 text of at most `max` bytes; a 400 naming `param` otherwise.
pub(crate) fn text(host: &dyn StoreHost, param: &str, max: usize) -> Result<String, Error> {
    let mut out = Vec::new();
    loop {
        let chunk = host.read_part(CHUNK)?;
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
        if out.len() > max {
            return Err(invalid_request(
                &format!("`{param}` is longer than {max} bytes"),
                Some(param),
            ));
        }
    }
    String::from_utf8(out)
        .map_err(|_| invalid_request(&format!("`{param}` is not UTF-8 text"), Some(param)))
}

/// A file part written to a blob that is not finished yet: dropping it leaves nothing.
pub(crate) struct Streamed {
    pub writer: Box<dyn BlobWriter>,
    pub bytes: u64,
    pub lines: Lines,
}

/// Streams the current part into a new blob, checking it as JSONL on the way when `jsonl`
/// (unknown yet when the form sends the file before its purpose: the caller decides after);
/// more than `cap` bytes is a 400 naming `param` (the host refuses past its own file limit
/// with a 413).
pub(crate) fn stream(
    host: &dyn StoreHost,
    param: &str,
    cap: Option<u64>,
    jsonl: bool,
) -> Result<Streamed, Error> {
    let mut writer = host.blob_writer()?;
    let mut lines = Lines::default();
    let mut bytes = 0u64;
    loop {
        let chunk = host.read_part(CHUNK)?;
        if chunk.is_empty() {
            break;
        }
        bytes += chunk.len() as u64;
        if let Some(cap) = cap
            && bytes > cap
        {
            return Err(invalid_request(
                &format!("`{param}` is larger than {cap} bytes"),
                Some(param),
            ));
        }
        if jsonl {
            lines.feed(&chunk);
        }
        writer.write(&chunk)?;
    }
    Ok(Streamed {
        writer,
        bytes,
        lines,
    })
}
