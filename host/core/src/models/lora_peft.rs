//! Adapters as PEFT keeps them: a folder with `adapter_config.json` (`r`, `lora_alpha`,
//! `target_modules`) and `adapter_model.safetensors` (`base_model.model.model.layers.{i}.
//! {self_attn|mlp}.{module}.lora_{A|B}.weight`, f32, f16 or bf16), rows in Hugging Face's
//! order. Read into the model's order (q and k `B` rows permuted for Llama files) and written
//! back, so an adapter trained with PEFT serves here and one trained here loads in PEFT.
//! What Cinder's adapters cannot express (DoRA, rsLoRA's scaling, per-module ranks, biases,
//! extra trained modules) is refused by name rather than served wrong.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};

use crate::error::CoreError;
use crate::models::llama::LlamaConfig;
use crate::models::lora::{
    LoraConfig, LoraPair, LoraTarget, LoraWeights, gguf_rows_to_hf, hf_rows_to_gguf, permutes_qk,
};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

fn bad(dir: &Path, why: impl std::fmt::Display) -> CoreError {
    CoreError::Adapter(format!("{}: {why}", dir.display()))
}

fn tensor_name(layer: usize, target: LoraTarget, matrix: char) -> String {
    let block = match target {
        LoraTarget::Q | LoraTarget::K | LoraTarget::V | LoraTarget::O => "self_attn",
        LoraTarget::Gate | LoraTarget::Up | LoraTarget::Down => "mlp",
    };
    format!(
        "base_model.model.model.layers.{layer}.{block}.{}.lora_{matrix}.weight",
        target.module_name()
    )
}

/// Heads whose rows a `B` matrix of `target` holds, where the model keeps them permuted.
fn permuted(arch: &str, c: &LlamaConfig, target: LoraTarget) -> Option<usize> {
    match (permutes_qk(arch), target) {
        (true, LoraTarget::Q) => Some(c.n_heads),
        (true, LoraTarget::K) => Some(c.n_kv_heads),
        _ => None,
    }
}

/// The adapter in PEFT folder `dir`, for a model of `c` whose architecture is `arch`.
pub fn read_peft(dir: &Path, c: &LlamaConfig, arch: &str) -> Result<LoraWeights, CoreError> {
    let text = std::fs::read_to_string(dir.join(CONFIG_FILE)).map_err(|e| bad(dir, e))?;
    let cfg: Value = serde_json::from_str(&text).map_err(|e| bad(dir, e))?;
    if cfg
        .get("peft_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "LORA")
    {
        return Err(bad(dir, "only LoRA adapters are read (peft_type LORA)"));
    }
    let flag = |k: &str| cfg.get(k).and_then(Value::as_bool).unwrap_or(false);
    let present = |k: &str| {
        cfg.get(k)
            .is_some_and(|v| !(v.is_null() || v.as_object().is_some_and(|o| o.is_empty())))
    };
    for (key, on) in [
        ("use_dora", flag("use_dora")),
        ("use_rslora", flag("use_rslora")),
        ("fan_in_fan_out", flag("fan_in_fan_out")),
        ("rank_pattern", present("rank_pattern")),
        ("alpha_pattern", present("alpha_pattern")),
        ("modules_to_save", present("modules_to_save")),
        ("layers_to_transform", present("layers_to_transform")),
    ] {
        if on {
            return Err(bad(
                dir,
                format!("`{key}` is not supported by Cinder's adapters"),
            ));
        }
    }
    if cfg
        .get("bias")
        .and_then(Value::as_str)
        .is_some_and(|b| b != "none")
    {
        return Err(bad(dir, "`bias` other than \"none\" is not supported"));
    }
    let rank = cfg
        .get("r")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(dir, "no `r`"))? as usize;
    let alpha = cfg
        .get("lora_alpha")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad(dir, "no `lora_alpha`"))? as f32;
    let modules = cfg
        .get("target_modules")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(dir, "`target_modules` must be a list of module names"))?;
    let mut targets = modules
        .iter()
        .map(|m| {
            let name = m.as_str().unwrap_or_default();
            LoraTarget::from_module_name(name).ok_or_else(|| {
                bad(
                    dir,
                    format!("target module `{name}` is not one Cinder adapts"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    targets.sort();
    targets.dedup();
    let config = LoraConfig {
        rank,
        alpha,
        targets,
    };
    config.check()?;
    let bytes = std::fs::read(dir.join(WEIGHTS_FILE)).map_err(|e| bad(dir, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(dir, e))?;
    let floats = |name: &str| -> Result<Vec<f32>, CoreError> {
        let t = st
            .tensor(name)
            .map_err(|e| bad(dir, format!("{name}: {e}")))?;
        let d = t.data();
        Ok(match t.dtype() {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(bad(
                    dir,
                    format!("{name} is {other:?}; f32, f16 or bf16 are read"),
                ));
            }
        })
    };
    let mut pairs = BTreeMap::new();
    for layer in 0..c.n_layers {
        for &target in &config.targets {
            let a = floats(&tensor_name(layer, target, 'A'))?;
            let mut b = floats(&tensor_name(layer, target, 'B'))?;
            if let Some(heads) = permuted(arch, c, target) {
                b = hf_rows_to_gguf(&b, heads, rank);
            }
            pairs.insert((layer, target), LoraPair { a, b });
        }
    }
    let w = LoraWeights { config, pairs };
    w.check_shapes(c)?;
    Ok(w)
}

/// Writes `w` (for a model of `c`, architecture `arch`) into `dir` as PEFT would, f32, naming
/// `base` as the base model.
pub fn write_peft(
    w: &LoraWeights,
    dir: &Path,
    c: &LlamaConfig,
    arch: &str,
    base: &str,
) -> Result<(), CoreError> {
    w.check_shapes(c)?;
    std::fs::create_dir_all(dir).map_err(|e| bad(dir, e))?;
    let r = w.config.rank;
    let mut raw: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for (&(layer, target), p) in &w.pairs {
        let b = match permuted(arch, c, target) {
            Some(heads) => gguf_rows_to_hf(&p.b, heads, r),
            None => p.b.clone(),
        };
        let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        raw.push((
            tensor_name(layer, target, 'A'),
            le(&p.a),
            vec![r, p.a.len() / r],
        ));
        raw.push((
            tensor_name(layer, target, 'B'),
            le(&b),
            vec![b.len() / r, r],
        ));
    }
    let views = raw
        .iter()
        .map(|(n, b, s)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(dir, e))?;
    safetensors::serialize_to_file(views, None, &dir.join(WEIGHTS_FILE))
        .map_err(|e| bad(dir, e))?;
    let modules: Vec<&str> = w.config.targets.iter().map(|t| t.module_name()).collect();
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": r,
        "lora_alpha": w.config.alpha,
        "lora_dropout": 0.0,
        "target_modules": modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_dora": false,
        "use_rslora": false,
        "inference_mode": true,
    });
    let text = serde_json::to_string_pretty(&config).map_err(|e| bad(dir, e))?;
    std::fs::write(dir.join(CONFIG_FILE), text).map_err(|e| bad(dir, e))
}
