//! A video's job: one step per second of video (its keyframes made, the frames between them
//! blended, the second encoded and kept as a blob with the next second's starting keyframe),
//! then one step that puts the seconds into the MP4 and tiles the spritesheet.
//!
//! The video's object is the job's record: each step reads where it stands from it and saves
//! what it made with a compare-and-set, so a step run twice (after a crash or a restart)
//! finds its second already made or makes it again from the same seeds; a video deleted
//! while a step runs makes the step drop what it wrote.

use cinder_pictures::encode;
use cinder_sdk::host::AgentHost;
use cinder_sdk::images::Image;
use cinder_sdk::openai::params::images::OutputFormat;
use cinder_sdk::openai::videos::{VideoError, VideoStatus};
use cinder_sdk::store::Object;
use cinder_sdk::{Error, Job, Outcome};

use crate::encode::{Second, encode_second, mux};
use crate::frames::{frame, keyframe, lasting, sheet, tile};
use crate::record::{COLLECTION, Record, read, remove_blobs, save, status_of};

/// Bytes asked of the host per read (its most).
const CHUNK: u32 = 4 << 20;
/// Spritesheet tiles to a row.
const SHEET_COLUMNS: u32 = 4;
/// The spritesheet's JPEG quality.
const SHEET_QUALITY: u8 = 85;
/// What `progress` reaches once every second is made; the rest is putting the MP4 together.
const MADE: u32 = 95;
/// The error code of a video that failed.
pub const FAILED_CODE: &str = "video_generation_failed";

/// Runs one step of the video job `job`.
pub fn step(job: Job, host: &dyn AgentHost) -> Result<Outcome, Error> {
    let Some(mut object) = host.get_object(COLLECTION, &job.id)? else {
        // Deleted: the delete removed its files.
        return Ok(Outcome::Done);
    };
    let record = read(&object)?;
    if matches!(
        status_of(&object),
        VideoStatus::Completed | VideoStatus::Failed
    ) {
        return Ok(Outcome::Done);
    }
    if let Some(reason) = job.ending {
        fail(host, &object, record, reason)?;
        return Ok(Outcome::Done);
    }
    if job.cancel_requested {
        fail(
            host,
            &object,
            record,
            "the video's job was cancelled".into(),
        )?;
        return Ok(Outcome::Done);
    }
    if status_of(&object) == VideoStatus::Queued {
        match save(host, &object, VideoStatus::InProgress, &record)? {
            Some(o) => object = o,
            None => return Ok(Outcome::Done),
        }
    }
    let made = if (record.segments.len() as u32) < record.seconds {
        second(host, &object, &record)
    } else {
        finish(host, &object, &record)
    };
    match made {
        Err(e) => match lasting(&e) {
            // Nothing a retry would mend: the video says why it failed.
            Some(detail) => {
                let now = host.get_object(COLLECTION, &job.id)?;
                if let Some(now) = now {
                    let record = read(&now)?;
                    fail(host, &now, record, detail.message)?;
                }
                Ok(Outcome::Done)
            }
            None => Err(e),
        },
        ok => ok,
    }
}

/// Ends the video as failed with `message`, its files removed.
fn fail(
    host: &dyn AgentHost,
    object: &Object,
    mut record: Record,
    message: String,
) -> Result<(), Error> {
    let blobs = record.blobs();
    record.error = Some(VideoError {
        code: FAILED_CODE.into(),
        message,
    });
    for held in [
        &mut record.reference,
        &mut record.carry,
        &mut record.thumbnail,
        &mut record.video,
        &mut record.spritesheet,
    ] {
        *held = None;
    }
    record.segments.clear();
    if save(host, object, VideoStatus::Failed, &record)?.is_some() {
        remove_blobs(host, &blobs)?;
    }
    Ok(())
}

/// The blob `id`'s bytes, refusing more than `max`.
pub fn read_all(host: &dyn AgentHost, id: &str, max: u64) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    loop {
        let chunk = host.read_blob(id, out.len() as u64, CHUNK)?;
        let last = chunk.len() < CHUNK as usize;
        if (out.len() + chunk.len()) as u64 > max {
            return Err(Error::Internal(format!("blob {id} is over {max} bytes")));
        }
        out.extend_from_slice(&chunk);
        if last {
            return Ok(out);
        }
    }
}

/// `bytes` as a new blob.
pub fn write_all(host: &dyn AgentHost, bytes: &[u8]) -> Result<String, Error> {
    let mut writer = host.blob_writer()?;
    for chunk in bytes.chunks(CHUNK as usize) {
        writer.write(chunk)?;
    }
    Ok(writer.finish()?.id)
}

/// The image a video's first keyframe starts from.
fn reference(host: &dyn AgentHost, blob: &str) -> Result<Image, Error> {
    let bytes = read_all(host, blob, 64 << 20)?;
    let d = cinder_pictures::decode(&bytes, "input_reference")?;
    Ok(Image {
        width: d.width,
        height: d.height,
        rgb: d.rgb,
    })
}

/// Makes the next second of the video and saves it.
fn second(host: &dyn AgentHost, object: &Object, record: &Record) -> Result<Outcome, Error> {
    let s = record.segments.len() as u32;
    let plan = &record.plan;
    let (w, h) = (record.width, record.height);
    let first_key = s * plan.keyframes_per_second;
    let began = std::time::Instant::now();
    let start = match (s, &record.carry, &record.reference) {
        (0, _, Some(blob)) => {
            let from = reference(host, blob)?;
            keyframe(host, record, 0, Some((&from, plan.reference_strength)))?
        }
        (0, _, None) => keyframe(host, record, 0, None)?,
        (_, Some(carry), _) => Image {
            width: w,
            height: h,
            rgb: read_all(host, carry, u64::from(w) * u64::from(h) * 3)?,
        },
        (_, None, _) => {
            return Err(Error::Internal(format!(
                "video {} lost the keyframe its second {s} starts from",
                object.id
            )));
        }
    };
    let mut keys = vec![start];
    for i in 1..=plan.keyframes_per_second {
        let next = keyframe(
            host,
            record,
            first_key + i,
            keys.last().map(|k| (k, plan.motion)),
        )?;
        keys.push(next);
    }
    let imaged = began.elapsed();
    let frames: Vec<Vec<u8>> = (0..plan.fps).map(|j| frame(&keys, j, plan.fps)).collect();
    let packets = encode_second(&frames, w, h, plan.fps, plan.encoder_speed)?;
    // What a second costs, model and encoder apart (docs/benchmarks.md reads these lines).
    cinder_sdk::info(&format!(
        "video {} second {}/{}: keyframes {:.3} s, frames and encoding {:.3} s",
        object.id,
        s + 1,
        record.seconds,
        imaged.as_secs_f64(),
        (began.elapsed() - imaged).as_secs_f64()
    ));
    let made = Second {
        tile: tile(&frames[0], w, h),
        packets,
    };
    let thumbnail = match s {
        0 => Some(encode(&frames[0], w, h, OutputFormat::Webp, None)?),
        _ => None,
    };
    drop(frames);
    let mut written = Vec::new();
    let kept = (|| -> Result<Record, Error> {
        let mut next = record.clone();
        let segment = write_all(host, &made.to_bytes())?;
        written.push(segment.clone());
        next.segments.push(segment);
        let carry = write_all(host, &keys[keys.len() - 1].rgb)?;
        written.push(carry.clone());
        next.carry = Some(carry);
        if let Some(webp) = &thumbnail {
            let thumb = write_all(host, webp)?;
            written.push(thumb.clone());
            next.thumbnail = Some(thumb);
        }
        next.progress = (MADE * (s + 1) / record.seconds).max(record.progress);
        Ok(next)
    })();
    let saved = kept.and_then(|next| save(host, object, VideoStatus::InProgress, &next));
    match saved {
        Ok(Some(_)) => {
            // The second before's keyframe is not needed any more.
            if let Some(old) = &record.carry {
                host.delete_blob(old)?;
            }
            Ok(Outcome::More("{}".into()))
        }
        Ok(None) => {
            remove_blobs(host, &written)?;
            Ok(Outcome::Done)
        }
        Err(e) => {
            remove_blobs(host, &written)?;
            Err(e)
        }
    }
}

/// Puts the seconds into the MP4, tiles the spritesheet and completes the video.
fn finish(host: &dyn AgentHost, object: &Object, record: &Record) -> Result<Outcome, Error> {
    let (w, h) = (record.width, record.height);
    let began = std::time::Instant::now();
    let mut tiles = Vec::with_capacity(record.segments.len());
    let mut seconds = Vec::with_capacity(record.segments.len());
    for id in &record.segments {
        let s = Second::from_bytes(&read_all(host, id, 256 << 20)?)?;
        tiles.push(s.tile);
        seconds.push(s.packets);
    }
    let mp4 = mux(seconds, w, h, record.plan.fps)?;
    let (sw, sh, sprites) = sheet(&tiles, SHEET_COLUMNS)?;
    let jpeg = encode(&sprites, sw, sh, OutputFormat::Jpeg, Some(SHEET_QUALITY))?;
    cinder_sdk::info(&format!(
        "video {}: MP4 ({} bytes) and spritesheet in {:.3} s",
        object.id,
        mp4.len(),
        began.elapsed().as_secs_f64()
    ));
    let mut written = Vec::new();
    let mut next = record.clone();
    let stored = (|| -> Result<(), Error> {
        let video = write_all(host, &mp4)?;
        written.push(video.clone());
        next.video = Some(video);
        let sheet = write_all(host, &jpeg)?;
        written.push(sheet.clone());
        next.spritesheet = Some(sheet);
        Ok(())
    })();
    if let Err(e) = stored {
        remove_blobs(host, &written)?;
        return Err(e);
    }
    let mut done_with: Vec<String> = std::mem::take(&mut next.segments);
    done_with.extend(next.carry.take());
    done_with.extend(next.reference.take());
    next.progress = 100;
    next.completed_at = Some(cinder_sdk::unix_time());
    match save(host, object, VideoStatus::Completed, &next) {
        Ok(Some(_)) => remove_blobs(host, &done_with)?,
        Ok(None) => remove_blobs(host, &written)?,
        Err(e) => {
            remove_blobs(host, &written)?;
            return Err(e);
        }
    }
    Ok(Outcome::Done)
}
