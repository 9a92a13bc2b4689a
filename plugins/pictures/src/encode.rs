//! RGB pixels into the bytes of an image file: PNG (lossless), JPEG (quality from
//! `output_compression`), WebP (lossless: the only WebP encoder in pure Rust;
//! `output_compression` changes nothing for it, as documented).

use cinder_sdk::Error;
use cinder_sdk::openai::params::images::OutputFormat;

/// JPEG quality when `output_compression` is not given (OpenAI's default is 100).
const DEFAULT_JPEG_QUALITY: u8 = 100;

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("encoding the image as {what}: {e}"))
}

/// `rgb` (`width * height * 3` bytes, row by row) as a `format` file. `compression` is
/// OpenAI's `output_compression`, 0 to 100, where 100 keeps the most detail (OpenAI's
/// default): for JPEG it is the quality.
pub fn encode(
    rgb: &[u8],
    width: u32,
    height: u32,
    format: OutputFormat,
    compression: Option<u8>,
) -> Result<Vec<u8>, Error> {
    if rgb.len() as u64 != u64::from(width) * u64::from(height) * 3 {
        return Err(Error::Internal(format!(
            "an image of {width}x{height} came with {} bytes",
            rgb.len()
        )));
    }
    let mut out = Vec::new();
    match format {
        OutputFormat::Png => {
            let mut encoder = png::Encoder::new(&mut out, width, height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(|e| failed("png", e))?;
            writer.write_image_data(rgb).map_err(|e| failed("png", e))?;
            writer.finish().map_err(|e| failed("png", e))?;
        }
        OutputFormat::Jpeg => {
            let (w, h) = (
                u16::try_from(width).map_err(|e| failed("jpeg", e))?,
                u16::try_from(height).map_err(|e| failed("jpeg", e))?,
            );
            let quality = compression.unwrap_or(DEFAULT_JPEG_QUALITY).clamp(1, 100);
            let encoder = jpeg_encoder::Encoder::new(&mut out, quality);
            encoder
                .encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| failed("jpeg", e))?;
        }
        OutputFormat::Webp => {
            image_webp::WebPEncoder::new(&mut out)
                .encode(rgb, width, height, image_webp::ColorType::Rgb8)
                .map_err(|e| failed("webp", e))?;
        }
    }
    Ok(out)
}
