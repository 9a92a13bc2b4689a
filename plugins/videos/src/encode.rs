//! Frames into AV1 (rav1e) and AV1 into MP4 (mp4_muxer).
//!
//! A video is encoded a second at a time, each second by a fresh encoder whose first frame is
//! a key frame: a job step is bounded like a request, an encoder cannot be saved between
//! steps, and a second's packets can (a segment blob). The last step writes every second's
//! packets into one MP4 in order. Each second starts with a key frame and its sequence
//! header; the seconds' headers are the same (same size, rate and settings), so the
//! concatenated stream is one valid AV1 stream, as a player seeking to each second expects.
//!
//! Colour: RGB to 8-bit 4:2:0 YCbCr with BT.601's matrix in limited range, what decoders
//! assume for a stream that does not say (rav1e writes no colour description unless told);
//! mp4_muxer's `av1C` record says profile 0 (8-bit 4:2:0), which is what rav1e writes for it.

use cinder_sdk::Error;
use rav1e::prelude::{
    ChromaSampling, Config, Context, EncoderConfig, EncoderStatus, FrameType, PixelRange, Rational,
};

/// One encoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub key: bool,
    pub data: Vec<u8>,
}

fn failed(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Internal(format!("encoding the video ({what}): {e:?}"))
}

/// RGB (`width` x `height`, both even) as 4:2:0 planes: Y, then Cb, then Cr.
pub fn yuv420(rgb: &[u8], width: u32, height: u32) -> [Vec<u8>; 3] {
    let (w, h) = (width as usize, height as usize);
    let px = |x: usize, y: usize| {
        let at = (y * w + x) * 3;
        (
            i32::from(rgb[at]),
            i32::from(rgb[at + 1]),
            i32::from(rgb[at + 2]),
        )
    };
    let luma = |(r, g, b): (i32, i32, i32)| (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8;
    let mut y_plane = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            y_plane.push(luma(px(x, y)));
        }
    }
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let (mut cb, mut cr) = (Vec::with_capacity(cw * ch), Vec::with_capacity(cw * ch));
    for cy in 0..ch {
        for cx in 0..cw {
            let (mut r, mut g, mut b, mut n) = (0, 0, 0, 0);
            for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let (x, y) = (cx * 2 + x, cy * 2 + y);
                if x < w && y < h {
                    let p = px(x, y);
                    (r, g, b, n) = (r + p.0, g + p.1, b + p.2, n + 1);
                }
            }
            let (r, g, b) = ((r + n / 2) / n, (g + n / 2) / n, (b + n / 2) / n);
            cb.push((((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128).clamp(0, 255) as u8);
            cr.push((((112 * r - 94 * g - 18 * b + 128) >> 8) + 128).clamp(0, 255) as u8);
        }
    }
    [y_plane, cb, cr]
}

/// Encodes one second's `frames` (RGB, `width` x `height`) at `fps`: its first packet is a
/// key frame, and there is one packet per frame, in order.
pub fn encode_second(
    frames: &[Vec<u8>],
    width: u32,
    height: u32,
    fps: u32,
    speed: u8,
) -> Result<Vec<Packet>, Error> {
    let mut enc = EncoderConfig::with_speed_preset(speed.min(10));
    enc.width = width as usize;
    enc.height = height as usize;
    enc.time_base = Rational::new(1, u64::from(fps));
    enc.chroma_sampling = ChromaSampling::Cs420;
    enc.bit_depth = 8;
    enc.pixel_range = PixelRange::Limited;
    // Frames out in the order they go in, one packet each (no hidden reference frames).
    enc.low_latency = true;
    enc.min_key_frame_interval = 0;
    enc.max_key_frame_interval = u64::from(fps).max(1) * 2;
    let config = Config::new().with_encoder_config(enc).with_threads(1);
    let mut ctx: Context<u8> = config.new_context().map_err(|e| failed("settings", e))?;
    let mut packets = Vec::with_capacity(frames.len());
    let drain = |ctx: &mut Context<u8>, packets: &mut Vec<Packet>| -> Result<bool, Error> {
        loop {
            match ctx.receive_packet() {
                Ok(p) => packets.push(Packet {
                    key: p.frame_type == FrameType::KEY,
                    data: p.data,
                }),
                Err(EncoderStatus::Encoded) => continue,
                Err(EncoderStatus::NeedMoreData) => return Ok(false),
                Err(EncoderStatus::LimitReached) => return Ok(true),
                Err(e) => return Err(failed("a frame", e)),
            }
        }
    };
    for rgb in frames {
        let mut frame = ctx.new_frame();
        let planes = yuv420(rgb, width, height);
        for (plane, data) in frame.planes.iter_mut().zip(&planes) {
            let stride = plane.cfg.width;
            plane.copy_from_raw_u8(data, stride, 1);
        }
        ctx.send_frame(frame).map_err(|e| failed("a frame", e))?;
        drain(&mut ctx, &mut packets)?;
    }
    ctx.flush();
    while !drain(&mut ctx, &mut packets)? {}
    if packets.len() != frames.len() || packets.first().is_some_and(|p| !p.key) {
        return Err(Error::Internal(format!(
            "the encoder gave {} packets for {} frames",
            packets.len(),
            frames.len()
        )));
    }
    Ok(packets)
}

/// Writes the MP4 of `seconds` (each second's packets, in order) at `fps`.
pub fn mux(
    seconds: impl IntoIterator<Item = Vec<Packet>>,
    width: u32,
    height: u32,
    fps: u32,
) -> Result<Vec<u8>, Error> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer =
        mp4_muxer::Mp4Writer::new(&mut out, width, height, fps, 1).map_err(|e| failed("mp4", e))?;
    for packets in seconds {
        for p in packets {
            writer
                .write_frame(&p.data, p.key)
                .map_err(|e| failed("mp4", e))?;
        }
    }
    writer.finish().map_err(|e| failed("mp4", e))?;
    Ok(out.into_inner())
}

/// What one second leaves in the store until the video is put together: its spritesheet
/// tile and its packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Second {
    pub tile: (u32, u32, Vec<u8>),
    pub packets: Vec<Packet>,
}

const MAGIC: &[u8; 4] = b"CVS1";

impl Second {
    /// `CVS1`, the tile's width and height and pixels, the packet count, then each packet
    /// as a key flag, a length and its bytes (integers little-endian u32).
    pub fn to_bytes(&self) -> Vec<u8> {
        let (tw, th, tile) = &self.tile;
        let size = self.packets.iter().map(|p| p.data.len() + 5).sum::<usize>();
        let mut out = Vec::with_capacity(16 + tile.len() + size);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&tw.to_le_bytes());
        out.extend_from_slice(&th.to_le_bytes());
        out.extend_from_slice(tile);
        out.extend_from_slice(&(self.packets.len() as u32).to_le_bytes());
        for p in &self.packets {
            out.push(u8::from(p.key));
            out.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&p.data);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Second, Error> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(damaged());
        }
        let (tw, th) = (r.u32()?, r.u32()?);
        let tile = r.take((tw as usize) * (th as usize) * 3)?.to_vec();
        let count = r.u32()?;
        let mut packets = Vec::new();
        for _ in 0..count {
            let key = r.take(1)?[0] == 1;
            let len = r.u32()? as usize;
            packets.push(Packet {
                key,
                data: r.take(len)?.to_vec(),
            });
        }
        Ok(Second {
            tile: (tw, th, tile),
            packets,
        })
    }
}

fn damaged() -> Error {
    Error::Internal("a video's stored second is damaged".into())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let piece = self
            .bytes
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(damaged)?;
        self.at += n;
        Ok(piece)
    }

    fn u32(&mut self) -> Result<u32, Error> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_take_bt601_limited_range_values() {
        let rgb = [255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 0, 255];
        let [y, cb, cr] = yuv420(&rgb, 2, 2);
        assert_eq!(y, [235, 16, 82, 41]);
        // The 2x2 block's average colour (128, 64, 128) in Cb and Cr.
        assert_eq!((cb.len(), cr.len()), (1, 1));
        assert_eq!((cb[0], cr[0]), (147, 152));
    }

    #[test]
    fn a_second_keeps_its_tile_and_packets_and_damage_is_an_error() {
        let s = Second {
            tile: (2, 1, vec![9; 6]),
            packets: vec![
                Packet {
                    key: true,
                    data: vec![1, 2, 3],
                },
                Packet {
                    key: false,
                    data: Vec::new(),
                },
            ],
        };
        let bytes = s.to_bytes();
        assert_eq!(Second::from_bytes(&bytes).expect("read back"), s);
        assert!(Second::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(Second::from_bytes(b"nope").is_err());
    }

    #[test]
    fn a_second_encodes_to_one_packet_a_frame_and_muxes() {
        let frames: Vec<Vec<u8>> = (0..4u8)
            .map(|f| {
                (0..16 * 16 * 3)
                    .map(|i| (i as u8).wrapping_mul(f + 1))
                    .collect()
            })
            .collect();
        let packets = encode_second(&frames, 16, 16, 4, 10).expect("encoded");
        assert_eq!(packets.len(), 4);
        // The first is a key frame (rav1e may make others at a scene cut: these frames are noise).
        assert!(packets[0].key);
        let mp4 = mux([packets.clone(), packets], 16, 16, 4).expect("muxed");
        assert_eq!(&mp4[4..8], b"ftyp");
    }
}
