//! What sets each decoder architecture apart from Llama's, read from GGUF metadata: the
//! layouts and extra steps one forward pass switches on, so that one CPU forward serves
//! every family (as llama.cpp's graph builders share their building blocks). Biases on q, k,
//! v and the attention output (Qwen 2) are not here: a layer has them when the file does.

use crate::error::CoreError;
use crate::formats::gguf::{Gguf, Value};

/// The chat model architectures (`general.architecture`) Cinder runs, and which backends.
const ARCHITECTURES: &[&str] = &["llama", "gemma3", "qwen2", "qwen3", "phi3"];

/// Why Cinder cannot run a GGUF chat model of `architecture`, when it cannot.
pub(crate) fn architecture_refusal(architecture: &str) -> Option<String> {
    (!ARCHITECTURES.contains(&architecture)).then(|| {
        format!(
            "architecture `{architecture}` is not supported yet ({} only)",
            ARCHITECTURES.join(", ")
        )
    })
}

/// How RoPE pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// `(2i, 2i+1)`: Llama in GGUF, whose converter permutes q and k into this layout.
    Pairs,
    /// `(i, i + head_dim/2)`: GPT-NeoX's layout (Gemma, Qwen, Phi-3).
    Halves,
}

/// The feed-forward gate's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU.
    Silu,
    /// GeGLU with GELU's tanh approximation (Gemma's `gelu_pytorch_tanh`).
    GeluTanh,
}

/// Layers that attend only to the last `size` positions (Gemma 3: five local layers to each
/// global one), with their own RoPE base.
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingWindow {
    pub size: usize,
    /// Per layer: whether it is local (windowed).
    pub local: Vec<bool>,
    pub local_rope_base: f32,
}
/// An architecture's departures from Llama.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub architecture: String,
    pub rope: RopeLayout,
    pub activation: Activation,
    /// Token embeddings are multiplied by this (Gemma: √dim).
    pub embed_scale: Option<f32>,
    /// RMSNorm over each head's queries and keys before RoPE (Gemma 3, Qwen 3).
    pub qk_norm: bool,
    /// RMSNorm of the attention and feed-forward outputs before each residual add (Gemma).
    pub post_norms: bool,
    pub sliding_window: Option<SlidingWindow>,
    /// Logits squashed into `(-c, c)` by `c·tanh(x/c)` (Gemma 2; Gemma 3 files may ask).
    pub final_softcap: Option<f32>,
    /// Linear RoPE scaling (`rope.scaling.type = linear`): positions divided by this, in the
    /// global layers.
    pub rope_linear: Option<f32>,
    /// The width whose inverse square root scales attention scores, where it is not the
    /// head's (Gemma 3 27B's `query_pre_attn_scalar` is dim/heads).
    pub attention_width: Option<usize>,
}

impl Variant {
    pub(crate) fn llama() -> Self {
        Variant {
            architecture: "llama".into(),
            rope: RopeLayout::Pairs,
            activation: Activation::Silu,
            embed_scale: None,
            qk_norm: false,
            post_norms: false,
            sliding_window: None,
            final_softcap: None,
            rope_linear: None,
            attention_width: None,
        }
    }

    /// The variant `g`'s `general.architecture` names, for a model of `layers` layers whose
    /// embeddings are `dim` wide, with `heads` query heads.
    pub(crate) fn from_gguf(
        g: &Gguf,
        dim: usize,
        heads: usize,
        layers: usize,
    ) -> Result<Self, CoreError> {
        let arch = g.get_str("general.architecture")?;
        if let Some(why) = architecture_refusal(arch) {
            return Err(CoreError::Weights(why));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let rope_linear = match g.get(&key("rope.scaling.type")).and_then(Value::as_str) {
            None | Some("none") => None,
            Some("linear") => g
                .get_f64(&key("rope.scaling.factor"))
                .ok()
                .filter(|f| *f > 0.0 && *f != 1.0)
                .map(|f| f as f32),
            Some(other) => {
                return Err(CoreError::Weights(format!(
                    "RoPE scaling `{other}` is not supported yet (linear only)"
                )));
            }
        };
        let mut v = Variant {
            rope_linear,
            ..Variant::llama()
        };
        v.architecture = arch.into();
        if g.tensors.contains_key("rope_factors_long.weight") {
            return Err(CoreError::Weights(
                "LongRoPE (`rope_factors_long`, Phi-3's 128k-context variants) is not supported \
                 yet"
                .into(),
            ));
        }
        if matches!(arch, "qwen2" | "qwen3" | "phi3") {
            v.rope = RopeLayout::Halves;
            v.qk_norm = arch == "qwen3";
        }
        if arch == "gemma3" {
            v.rope = RopeLayout::Halves;
            v.activation = Activation::GeluTanh;
            v.embed_scale = Some((dim as f32).sqrt());
            v.qk_norm = true;
            v.post_norms = true;
            v.final_softcap = g
                .get_f64(&key("final_logit_softcapping"))
                .ok()
                .filter(|c| *c > 0.0)
                .map(|c| c as f32);
            v.sliding_window = gemma3_window(g, layers);
            // llama.cpp tells the 27B model by its 62 layers; GGUF does not carry the scalar.
            if layers == 62 && heads > 0 {
                v.attention_width = Some(dim / heads);
            }
        }
        Ok(v)
    }

    /// Whether layer `l` attends only to a window, and to how many positions.
    pub fn window(&self, l: usize) -> Option<usize> {
        let w = self.sliding_window.as_ref()?;
        w.local.get(l).copied().unwrap_or(false).then_some(w.size)
    }
}

/// Gemma 3's local layers as llama.cpp reads them: `attention.sliding_window` positions (none
/// or 0: every layer global), `attention.sliding_window_pattern` as a per-layer list or a
/// period (default 6: the last layer of every six is global), and the local layers' RoPE base
/// `rope.freq_base_swa` (default 10 000, whatever `rope.freq_base`, the global layers', says).
fn gemma3_window(g: &Gguf, layers: usize) -> Option<SlidingWindow> {
    let size = g
        .get("gemma3.attention.sliding_window")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    if size == 0 {
        return None;
    }
    let local = match g.get("gemma3.attention.sliding_window_pattern") {
        Some(Value::Array(flags)) => flags
            .iter()
            .map(|f| f.as_bool().unwrap_or(false))
            .chain(std::iter::repeat(false))
            .take(layers)
            .collect(),
        other => {
            let period = other.and_then(Value::as_u64).unwrap_or(6) as usize;
            (0..layers)
                .map(|l| period == 0 || l % period < period - 1)
                .collect()
        }
    };
    Some(SlidingWindow {
        size,
        local,
        local_rope_base: g
            .get("gemma3.rope.freq_base_swa")
            .and_then(Value::as_f64)
            .unwrap_or(10_000.0) as f32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sixth_gemma_layer_is_global() {
        let v = Variant {
            sliding_window: Some(SlidingWindow {
                size: 512,
                local: (0..18).map(|l| l % 6 < 5).collect(),
                local_rope_base: 10_000.0,
            }),
            ..Variant::llama()
        };
        let global: Vec<usize> = (0..18).filter(|&l| v.window(l).is_none()).collect();
        assert_eq!(global, [5, 11, 17]);
        assert_eq!(v.window(0), Some(512));
        assert_eq!(Variant::llama().window(3), None);
    }

    #[test]
    fn gemma3_27b_scales_attention_by_dim_over_heads() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/gemma3/tiny-gemma3-F32.gguf");
        let g = Gguf::open(&path).expect("the tiny Gemma fixture");
        let v = Variant::from_gguf(&g, 64, 4, 6).expect("variant");
        // Six layers: not the 27B, so the head width (32) scales scores.
        assert_eq!(v.attention_width, None);
        assert_eq!(v.window(5), None);
        assert_eq!(v.window(4), Some(8));
    }
}
