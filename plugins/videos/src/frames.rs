//! Pictures into frames: keyframes from the host's image model (the first from the prompt, or
//! from a reference image; each next one an image-to-image step from the one before, with
//! its own seed), the frames between two keyframes blended from both (a cross-dissolve), and
//! the small pictures a spritesheet is tiled from.

use cinder_sdk::host::{AgentHost, ImageGeneration};
use cinder_sdk::images::{Image, ImageEvent, ImageRequest, ImageSize, ImageSource};
use cinder_sdk::{Error, ErrorDetail};

use crate::record::Record;

/// The longest a spritesheet tile is on its longer side.
pub const TILE_SIDE: u32 = 128;
/// How often, and how long apart, a step asks again for an image model whose queue is full
/// (live image requests go first; the job waits its turn instead of failing).
const BUSY_RETRIES: u32 = 120;
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// What the host's names for an image request's fields are as a video request's parameters.
pub const NAMES: &[(&str, &str)] = &[
    ("size", "size"),
    ("prompt", "prompt"),
    ("model", "model"),
    ("image", "input_reference"),
    ("strength", "input_reference"),
];

/// The image request for keyframe `k` of `record`.
fn request(record: &Record, steps: u32, k: u32) -> ImageRequest {
    ImageRequest {
        model: record.model.clone(),
        prompt: record.prompt.clone(),
        negative_prompt: String::new(),
        size: ImageSize {
            width: record.width,
            height: record.height,
        },
        steps,
        seed: record.seed.wrapping_add(u64::from(k)),
        count: 1,
        partial_images: 0,
    }
}

/// Runs `start` until the model takes the request, waiting while its queue is full.
fn started(
    start: impl Fn() -> Result<Box<dyn ImageGeneration>, Error>,
) -> Result<Box<dyn ImageGeneration>, Error> {
    let mut tries = 0;
    loop {
        match start() {
            Err(Error::RateLimited(_)) if tries < BUSY_RETRIES => {
                tries += 1;
                std::thread::sleep(BUSY_WAIT);
            }
            other => return other.map_err(|e| e.naming(NAMES)),
        }
    }
}

/// The one image a generation makes.
fn made(generation: &dyn ImageGeneration) -> Result<Image, Error> {
    while let Some(event) = generation.next()? {
        if let ImageEvent::Done(done) = event {
            return Ok(done.picture);
        }
    }
    Err(Error::Internal("the image model made no image".into()))
}

/// Keyframe `k`: from `from` by image-to-image at `strength`, or from the prompt alone.
pub fn keyframe(
    host: &dyn AgentHost,
    record: &Record,
    k: u32,
    from: Option<(&Image, f32)>,
) -> Result<Image, Error> {
    let info = host
        .describe_image_model(&record.model)
        .map_err(|e| e.naming(NAMES))?;
    let wanted = request(record, info.default_steps.max(1), k);
    let generation = match from {
        None => started(|| host.generate_images(&wanted))?,
        Some((picture, strength)) => {
            let source = ImageSource {
                picture: picture.clone(),
                mask: None,
                strength,
            };
            started(|| host.edit_images(&wanted, &source))?
        }
    };
    let image = made(generation.as_ref())?;
    if (image.width, image.height) != (record.width, record.height)
        || image.rgb.len() != record.width as usize * record.height as usize * 3
    {
        return Err(Error::Internal(format!(
            "the image model made a {}x{} picture for a {} video",
            image.width,
            image.height,
            record.size()
        )));
    }
    Ok(image)
}

/// Frame `j` of the `fps` frames of one second whose keyframes are `keys` (the second's
/// first, ..., the next second's first): at its place between two keyframes, each pixel is
/// both blended by how near the frame is to each.
pub fn frame(keys: &[Image], j: u32, fps: u32) -> Vec<u8> {
    let spans = keys.len().saturating_sub(1).max(1) as u64;
    // Where frame j falls, in 1/fps-ths of a keyframe interval: exact integer arithmetic.
    let at = u64::from(j) * spans;
    let (a, rem) = ((at / u64::from(fps)) as usize, at % u64::from(fps));
    let first = &keys[a.min(keys.len() - 1)].rgb;
    if rem == 0 || a + 1 >= keys.len() {
        return first.clone();
    }
    let next = &keys[a + 1].rgb;
    let (w1, w0) = (rem as u32, fps - rem as u32);
    first
        .iter()
        .zip(next)
        .map(|(&p, &q)| ((u32::from(p) * w0 + u32::from(q) * w1 + fps / 2) / fps) as u8)
        .collect()
}

/// `rgb` (`width` x `height`) shrunk by a whole factor to at most [`TILE_SIDE`] a side, each
/// pixel the average of the ones it covers.
pub fn tile(rgb: &[u8], width: u32, height: u32) -> (u32, u32, Vec<u8>) {
    let factor = width.max(height).div_ceil(TILE_SIDE).max(1);
    let (tw, th) = ((width / factor).max(1), (height / factor).max(1));
    let mut out = Vec::with_capacity(tw as usize * th as usize * 3);
    let n = factor * factor;
    for ty in 0..th {
        for tx in 0..tw {
            let mut sum = [0u32; 3];
            for y in ty * factor..((ty + 1) * factor).min(height) {
                for x in tx * factor..((tx + 1) * factor).min(width) {
                    let at = (y as usize * width as usize + x as usize) * 3;
                    for (c, s) in sum.iter_mut().enumerate() {
                        *s += u32::from(rgb[at + c]);
                    }
                }
            }
            out.extend(sum.map(|s| ((s + n / 2) / n) as u8));
        }
    }
    (tw, th, out)
}

/// Tiles of equal size laid out left to right, top to bottom, `columns` to a row: the
/// spritesheet's pixels and size.
pub fn sheet(tiles: &[(u32, u32, Vec<u8>)], columns: u32) -> Result<(u32, u32, Vec<u8>), Error> {
    let Some((tw, th, _)) = tiles.first() else {
        return Err(Error::Internal("a spritesheet of no frames".into()));
    };
    let (tw, th) = (*tw as usize, *th as usize);
    let columns = columns.clamp(1, tiles.len() as u32) as usize;
    let rows = tiles.len().div_ceil(columns);
    let (w, h) = (tw * columns, th * rows);
    let mut out = vec![0u8; w * h * 3];
    for (i, (x, y, rgb)) in tiles.iter().enumerate() {
        if (*x as usize, *y as usize) != (tw, th) || rgb.len() != tw * th * 3 {
            return Err(Error::Internal(
                "spritesheet tiles of different sizes".into(),
            ));
        }
        let (col, row) = (i % columns, i / columns);
        for line in 0..th {
            let to = ((row * th + line) * w + col * tw) * 3;
            out[to..to + tw * 3].copy_from_slice(&rgb[line * tw * 3..(line + 1) * tw * 3]);
        }
    }
    Ok((w as u32, h as u32, out))
}

/// A failure of the video's own making that no retry mends (its model went away, its
/// reference cannot be read): what the video's `error` says.
pub fn lasting(e: &Error) -> Option<ErrorDetail> {
    match e {
        Error::InvalidRequest(d) | Error::NotFound(d) => Some(d.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: u8) -> Image {
        Image {
            width: 2,
            height: 1,
            rgb: vec![v; 6],
        }
    }

    #[test]
    fn frames_between_keyframes_are_blended_by_distance() {
        // Two keyframes a second at 8 fps: frames 0..4 go from key 0 to key 1, 4..8 on to 2.
        let keys = [flat(0), flat(100), flat(200)];
        let got: Vec<u8> = (0..8).map(|j| frame(&keys, j, 8)[0]).collect();
        assert_eq!(got, [0, 25, 50, 75, 100, 125, 150, 175]);
        // One keyframe a second: the second's frames run up to the next second's first.
        let got: Vec<u8> = (0..4).map(|j| frame(&keys[..2], j, 4)[0]).collect();
        assert_eq!(got, [0, 25, 50, 75]);
    }

    #[test]
    fn tiles_average_what_they_cover_and_sheets_lay_them_in_rows() {
        let rgb: Vec<u8> = (0..256 * 128)
            .flat_map(|i| [(i % 2 * 200) as u8, 10, 20])
            .collect();
        let (w, h, t) = tile(&rgb, 256, 128);
        assert_eq!((w, h), (128, 64));
        assert!(t.chunks(3).all(|p| p == [100, 10, 20]));
        let tiles = vec![(2, 1, vec![1; 6]), (2, 1, vec![2; 6]), (2, 1, vec![3; 6])];
        let (sw, sh, s) = sheet(&tiles, 2).expect("a sheet");
        assert_eq!((sw, sh), (4, 2));
        assert_eq!(&s[..12], &[1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
        assert_eq!(&s[12..18], &[3; 6]);
        assert_eq!(&s[18..], &[0; 6], "the empty place is black");
    }
}
