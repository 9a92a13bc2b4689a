//! The tensors of a diffusers component's `diffusion_pytorch_model.safetensors` (or a text
//! encoder's `model.safetensors`; f32, f16 or bf16, widened to f32), by name, with the shape
//! checked where the caller knows it.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use serde::de::DeserializeOwned;

use crate::error::CoreError;

/// A JSON file of a pipeline folder (`model_index.json`, a component's `config.json`).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, CoreError> {
    let text =
        std::fs::read(path).map_err(|e| CoreError::Weights(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&text)
        .map_err(|e| CoreError::Weights(format!("{}: {e}", path.display())))
}

/// A component's weights, memory-mapped while the model is built (each tensor is copied out
/// once, so a whole read would hold the checkpoint twice), with the header parsed once; or
/// tensors in memory (a model being trained: its parameters, whose gradients flow back
/// through every view the model takes of them).
pub struct Weights {
    source: Source,
    device: Device,
    /// Tensor names prefixed to every name asked for (`text_model.` in a CLIP checkpoint).
    prefix: String,
}

enum Source {
    Mapped {
        bytes: memmap2::Mmap,
        /// The header: each tensor's type, shape and byte range (after the header).
        metadata: safetensors::tensor::Metadata,
        /// Where the tensors' bytes start (the header's length and its 8-byte size).
        data_start: usize,
    },
    /// Flattened tensors by name, with their shapes.
    Memory(std::collections::HashMap<String, (Tensor<1>, Vec<usize>)>),
}

/// A linear layer: `[in, out]` (PyTorch's `[out, in]` transposed once at load) and a bias.
pub struct Linear {
    pub w: Tensor<2>,
    pub b: Option<Tensor<1>>,
}

impl Linear {
    /// `x · W + b` over the last dimension of `[n, in]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let y = x.matmul(self.w.clone());
        match &self.b {
            Some(b) => y + b.clone().unsqueeze::<2>(),
            None => y,
        }
    }
}

/// A layer norm's (or group norm's) scale and shift.
pub struct Norm {
    pub w: Tensor<1>,
    pub b: Tensor<1>,
}

impl Weights {
    /// Reads `file` of the component folder `dir`.
    pub fn open(dir: &Path, file: &str, device: &Device) -> Result<Self, CoreError> {
        let path = dir.join(file);
        let file = std::fs::File::open(&path)
            .map_err(|e| CoreError::Weights(format!("{}: {e}", path.display())))?;
        // SAFETY: the mapping is read-only and lives while the model is built; a checkpoint
        // changed underneath a load is the operator's doing, as for the GGUF files mapped the
        // same way (formats/gguf.rs).
        let bytes = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| CoreError::Weights(format!("{}: {e}", path.display())))?;
        let (header, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| CoreError::Weights(format!("{}: {e}", path.display())))?;
        Ok(Weights {
            source: Source::Mapped {
                bytes,
                metadata,
                data_start: header + 8,
            },
            device: device.clone(),
            prefix: String::new(),
        })
    }

    /// Weights held in memory: each name's flattened tensor and its shape. The model built
    /// from them computes with these very tensors (autodiff leaves stay leaves).
    pub fn from_tensors(
        tensors: std::collections::HashMap<String, (Tensor<1>, Vec<usize>)>,
        device: &Device,
    ) -> Self {
        Weights {
            source: Source::Memory(tensors),
            device: device.clone(),
            prefix: String::new(),
        }
    }

    /// These weights with `prefix` before every name.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// The tensor `name`, which must have `D` dimensions.
    pub fn tensor<const D: usize>(&self, name: &str) -> Result<Tensor<D>, CoreError> {
        let full = format!("{}{name}", self.prefix);
        let missing = || CoreError::Weights(format!("tensor {full} not found"));
        let shape_of = |shape: &[usize]| -> Result<[usize; D], CoreError> {
            shape.try_into().map_err(|_| {
                CoreError::Weights(format!(
                    "tensor {full} has shape {shape:?}; {D} dimensions were expected"
                ))
            })
        };
        match &self.source {
            Source::Memory(map) => {
                let (t, shape) = map.get(&full).ok_or_else(missing)?;
                Ok(t.clone().reshape(shape_of(shape)?))
            }
            Source::Mapped {
                bytes,
                metadata,
                data_start,
            } => {
                let info = metadata.info(&full).ok_or_else(missing)?;
                // The header was validated against the file's length when it was read.
                let (start, end) = info.data_offsets;
                let raw = &bytes[data_start + start..data_start + end];
                let values: Vec<f32> = match info.dtype {
                    safetensors::Dtype::F32 => raw
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                    // Half-precision checkpoints (diffusers' `variant="fp16"`, and Cinder's
                    // own, half the bytes to commit) widen to f32 once, at load.
                    safetensors::Dtype::F16 => raw
                        .chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                    safetensors::Dtype::BF16 => raw
                        .chunks_exact(2)
                        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                    other => {
                        return Err(CoreError::Weights(format!(
                            "tensor {full} is {other:?}; f32, f16 and bf16 are supported"
                        )));
                    }
                };
                let dims = shape_of(&info.shape)?;
                Ok(Tensor::from_data(
                    TensorData::new(values, dims),
                    &self.device,
                ))
            }
        }
    }

    /// `prefix.weight` (transposed) and `prefix.bias` if there is one.
    pub fn linear(&self, prefix: &str) -> Result<Linear, CoreError> {
        let b = match self.has(&format!("{prefix}.bias")) {
            true => Some(self.tensor::<1>(&format!("{prefix}.bias"))?),
            false => None,
        };
        Ok(Linear {
            w: self.tensor::<2>(&format!("{prefix}.weight"))?.transpose(),
            b,
        })
    }

    pub fn norm(&self, prefix: &str) -> Result<Norm, CoreError> {
        Ok(Norm {
            w: self.tensor(&format!("{prefix}.weight"))?,
            b: self.tensor(&format!("{prefix}.bias"))?,
        })
    }

    /// Whether the tensor `name` is there.
    pub fn has(&self, name: &str) -> bool {
        let full = format!("{}{name}", self.prefix);
        match &self.source {
            Source::Mapped { metadata, .. } => metadata.info(&full).is_some(),
            Source::Memory(map) => map.contains_key(&full),
        }
    }
}

/// Layer norm over the last dimension of `[n, d]`.
pub fn layer_norm(x: Tensor<2>, n: &Norm, eps: f64) -> Tensor<2> {
    let mean = x.clone().mean_dim(1);
    let centered = x - mean;
    let var = centered.clone().powf_scalar(2.0).mean_dim(1);
    let scale = var.add_scalar(eps).sqrt().recip();
    centered * scale * n.w.clone().unsqueeze::<2>() + n.b.clone().unsqueeze::<2>()
}
