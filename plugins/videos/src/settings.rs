//! The plugin's settings (`[plugins.settings.videos]`), each bounded; a value out of its
//! range is ignored for the default (and logged), so a typo never makes a video unmakeable.

use cinder_sdk::host::AgentHost;

use crate::record::Plan;

/// What the videos plugin reads from its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The model a request without `model` gets: an id or an alias.
    pub default_model: String,
    pub fps: u32,
    pub keyframes_per_second: u32,
    pub motion: f32,
    pub remix_strength: f32,
    pub reference_strength: f32,
    pub encoder_speed: u8,
    /// The most pixels a video's frame may have (of the sizes its model makes).
    pub max_video_pixels: u64,
    /// The largest `input_reference` file, in bytes.
    pub max_image_bytes: u64,
}

/// The model OpenAI's SDKs send by default (the example config aliases its image model so).
pub const DEFAULT_MODEL: &str = "sora-2";

fn number<T: std::str::FromStr + PartialOrd + Copy>(
    host: &dyn AgentHost,
    key: &str,
    default: T,
    min: T,
    max: T,
) -> T {
    match host.setting(key) {
        None => default,
        Some(text) => match text.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => v,
            _ => {
                cinder_sdk::warn(&format!(
                    "setting {key} = {text:?} is out of range; using the default"
                ));
                default
            }
        },
    }
}

impl Settings {
    pub fn read(host: &dyn AgentHost) -> Settings {
        let fps = number(host, "fps", 8, 1, 30);
        Settings {
            default_model: host
                .setting("default_model")
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_MODEL.into()),
            fps,
            keyframes_per_second: number(host, "keyframes_per_second", 2, 1, fps),
            motion: number(host, "motion", 0.45, 0.01, 1.0),
            remix_strength: number(host, "remix_strength", 0.6, 0.01, 1.0),
            reference_strength: number(host, "reference_strength", 0.6, 0.01, 1.0),
            encoder_speed: number(host, "encoder_speed", 10, 0, 10),
            max_video_pixels: number(host, "max_video_pixels", 512 * 512, 64, 4096 * 4096),
            max_image_bytes: number(host, "max_image_bytes", 8 << 20, 1, 64 << 20),
        }
    }

    /// How a video created now is made.
    pub fn plan(&self) -> Plan {
        Plan {
            fps: self.fps,
            keyframes_per_second: self.keyframes_per_second,
            motion: self.motion,
            reference_strength: self.reference_strength,
            encoder_speed: self.encoder_speed,
        }
    }
}
