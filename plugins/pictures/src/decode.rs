//! Image files into pixels: PNG, JPEG or WebP, sized from the header and refused before a
//! pixel is decoded when too large.

use cinder_sdk::Error;

use crate::bad;

/// The largest side of an image, in pixels, and the most pixels it may have: what is
/// decoded is bounded before any pixel is. A 2048x2048 image decodes to 12 MiB of RGB (and 4
/// of alpha).
pub const MAX_SIDE: u32 = 4096;
pub const MAX_PIXELS: u64 = 2048 * 2048;

/// A decoded image: RGB bytes and, where the file has one, its alpha channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
    pub alpha: Option<Vec<u8>>,
}

fn too_big(param: &str, width: u32, height: u32) -> Option<Error> {
    (width == 0
        || height == 0
        || width > MAX_SIDE
        || height > MAX_SIDE
        || u64::from(width) * u64::from(height) > MAX_PIXELS)
        .then(|| {
            bad(
                format!("`{param}` is {width}x{height}; images are 1 to {MAX_SIDE} pixels a side"),
                param,
            )
        })
}

/// A PNG, JPEG or WebP file as RGB (and alpha); anything else, or a broken file, is a 400
/// naming `param`.
pub fn decode(bytes: &[u8], param: &str) -> Result<Decoded, Error> {
    let broken =
        |e: &dyn std::fmt::Display| bad(format!("`{param}` could not be read: {e}"), param);
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().map_err(|e| broken(&e))?;
        let (w, h) = (reader.info().width, reader.info().height);
        if let Some(e) = too_big(param, w, h) {
            return Err(e);
        }
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| broken(&"too large"))?;
        let mut buf = vec![0; size];
        let info = reader.next_frame(&mut buf).map_err(|e| broken(&e))?;
        buf.truncate(info.buffer_size());
        return split(w, h, buf, info.color_type.samples(), param);
    }
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        use zune_jpeg::JpegDecoder;
        use zune_jpeg::zune_core::bytestream::ZCursor;
        use zune_jpeg::zune_core::colorspace::ColorSpace;
        use zune_jpeg::zune_core::options::DecoderOptions;
        let options = DecoderOptions::default()
            .set_max_width(MAX_SIDE as usize)
            .set_max_height(MAX_SIDE as usize)
            .jpeg_set_out_colorspace(ColorSpace::RGB);
        let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
        decoder.decode_headers().map_err(|e| broken(&e))?;
        let (w, h) = decoder.dimensions().ok_or_else(|| broken(&"no size"))?;
        if let Some(e) = too_big(param, w as u32, h as u32) {
            return Err(e);
        }
        let rgb = decoder.decode().map_err(|e| broken(&e))?;
        return split(w as u32, h as u32, rgb, 3, param);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        let mut decoder =
            image_webp::WebPDecoder::new(std::io::Cursor::new(bytes)).map_err(|e| broken(&e))?;
        let (w, h) = decoder.dimensions();
        if let Some(e) = too_big(param, w, h) {
            return Err(e);
        }
        let size = decoder
            .output_buffer_size()
            .ok_or_else(|| broken(&"too large"))?;
        let channels = if decoder.has_alpha() { 4 } else { 3 };
        let mut buf = vec![0; size];
        decoder.read_image(&mut buf).map_err(|e| broken(&e))?;
        return split(w, h, buf, channels, param);
    }
    Err(bad(
        format!("`{param}` must be a PNG, JPEG or WebP image"),
        param,
    ))
}

/// Pixels of 1 to 4 channels (gray, gray+alpha, RGB, RGBA) as RGB and alpha, rewritten in
/// the decoder's own buffer (no second copy of the picture); a buffer that is not the size
/// the header gave is a 400 naming `param`.
fn split(
    width: u32,
    height: u32,
    mut buf: Vec<u8>,
    channels: usize,
    param: &str,
) -> Result<Decoded, Error> {
    let pixels = width as usize * height as usize;
    if channels == 0 || channels > 4 || buf.len() < pixels * channels {
        return Err(bad(
            format!("`{param}` decoded to fewer pixels than its {width}x{height} header"),
            param,
        ));
    }
    let mut alpha = (channels == 2 || channels == 4).then(|| Vec::with_capacity(pixels));
    if channels == 3 {
        buf.truncate(pixels * 3);
    } else {
        // Front to back: pixel i's three bytes land at or before where pixel i was read.
        for i in 0..pixels {
            let at = i * channels;
            let (r, g, b) = match channels {
                1 | 2 => (buf[at], buf[at], buf[at]),
                _ => (buf[at], buf[at + 1], buf[at + 2]),
            };
            if let Some(a) = alpha.as_mut() {
                a.push(buf[at + channels - 1]);
            }
            buf[i * 3] = r;
            buf[i * 3 + 1] = g;
            buf[i * 3 + 2] = b;
        }
        buf.truncate(pixels * 3);
        buf.shrink_to_fit();
    }
    Ok(Decoded {
        width,
        height,
        rgb: buf,
        alpha,
    })
}
