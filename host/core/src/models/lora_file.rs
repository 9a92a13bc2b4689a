//! An adapter as bytes: a safetensors file of its matrices (f32, each `[rank, in]` or
//! `[out, rank]`, named `layers.{l}.{module}.lora_A` / `.lora_B` in the model's row order),
//! with its rank, alpha and targets in the header's metadata. A training state adds AdamW's
//! moments (`.m`, `.v` after a matrix's name) and the step count, so that a job taken up
//! after a restart goes on exactly where its last saved step left it.

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::CoreError;
use crate::models::lora::{LoraConfig, LoraPair, LoraTarget, LoraWeights};

fn bad(e: impl std::fmt::Display) -> CoreError {
    CoreError::Adapter(format!("an adapter file: {e}"))
}

fn name(layer: usize, target: LoraTarget, matrix: &str) -> String {
    format!("layers.{layer}.{}.{matrix}", target.module_name())
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Matrices by name, each `(values, shape)`, and the metadata; into safetensors bytes.
fn write(
    tensors: Vec<(String, Vec<f32>, Vec<usize>)>,
    meta: HashMap<String, String>,
) -> Result<Vec<u8>, CoreError> {
    let raw: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .into_iter()
        .map(|(n, v, s)| (n, bytes_of(&v), s))
        .collect();
    let views = raw
        .iter()
        .map(|(n, b, s)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(bad)
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(meta)).map_err(bad)
}

fn meta_of(config: &LoraConfig) -> HashMap<String, String> {
    let targets: Vec<&str> = config.targets.iter().map(|t| t.module_name()).collect();
    HashMap::from([
        ("rank".into(), config.rank.to_string()),
        ("alpha".into(), config.alpha.to_string()),
        ("targets".into(), targets.join(",")),
    ])
}

fn matrices(w: &LoraWeights) -> Vec<(String, Vec<f32>, Vec<usize>)> {
    let r = w.config.rank;
    let mut out = Vec::new();
    for (&(layer, target), p) in &w.pairs {
        out.push((
            name(layer, target, "lora_A"),
            p.a.clone(),
            vec![r, p.a.len() / r],
        ));
        out.push((
            name(layer, target, "lora_B"),
            p.b.clone(),
            vec![p.b.len() / r, r],
        ));
    }
    out
}

/// The adapter as a safetensors file.
pub fn to_bytes(w: &LoraWeights) -> Result<Vec<u8>, CoreError> {
    write(matrices(w), meta_of(&w.config))
}

/// The file's tensors by name and its metadata.
fn read(bytes: &[u8]) -> Result<(SafeTensors<'_>, HashMap<String, String>), CoreError> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(bad)?;
    let meta = header.metadata().clone().unwrap_or_default();
    Ok((SafeTensors::deserialize(bytes).map_err(bad)?, meta))
}

fn floats(st: &SafeTensors<'_>, n: &str) -> Result<Vec<f32>, CoreError> {
    let t = st.tensor(n).map_err(|e| bad(format!("{n}: {e}")))?;
    if t.dtype() != Dtype::F32 {
        return Err(bad(format!("{n} is {:?}, not F32", t.dtype())));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn config_of(meta: &HashMap<String, String>) -> Result<LoraConfig, CoreError> {
    let get = |k: &str| {
        meta.get(k)
            .ok_or_else(|| bad(format!("no `{k}` in its metadata")))
    };
    let targets = get("targets")?
        .split(',')
        .map(|t| {
            LoraTarget::from_module_name(t).ok_or_else(|| bad(format!("unknown target `{t}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = LoraConfig {
        rank: get("rank")?.parse().map_err(bad)?,
        alpha: get("alpha")?.parse().map_err(bad)?,
        targets,
    };
    config.check()?;
    Ok(config)
}

/// An adapter from [`to_bytes`]' file, for a model of `layers` layers.
pub fn from_bytes(bytes: &[u8], layers: usize) -> Result<LoraWeights, CoreError> {
    let (st, meta) = read(bytes)?;
    let config = config_of(&meta)?;
    let mut pairs = BTreeMap::new();
    for layer in 0..layers {
        for &target in &config.targets {
            let a = floats(&st, &name(layer, target, "lora_A"))?;
            let b = floats(&st, &name(layer, target, "lora_B"))?;
            pairs.insert((layer, target), LoraPair { a, b });
        }
    }
    Ok(LoraWeights { config, pairs })
}

/// A training state: the adapter, AdamW's moments per matrix (in the adapter's pair order:
/// `[(m, v) of A, (m, v) of B]`) and the steps taken.
pub type Moments = Vec<[(Vec<f32>, Vec<f32>); 2]>;

pub fn state_to_bytes(w: &LoraWeights, moments: &Moments, step: i32) -> Result<Vec<u8>, CoreError> {
    let mut tensors = matrices(w);
    let r = w.config.rank;
    for ((&(layer, target), p), [(ma, va), (mb, vb)]) in w.pairs.iter().zip(moments) {
        let (sa, sb) = (vec![r, p.a.len() / r], vec![p.b.len() / r, r]);
        for (m, v, matrix, shape) in [(ma, va, "lora_A", sa), (mb, vb, "lora_B", sb)] {
            let n = name(layer, target, matrix);
            tensors.push((format!("{n}.m"), m.clone(), shape.clone()));
            tensors.push((format!("{n}.v"), v.clone(), shape));
        }
    }
    let mut meta = meta_of(&w.config);
    meta.insert("step".into(), step.to_string());
    write(tensors, meta)
}

pub fn state_from_bytes(
    bytes: &[u8],
    layers: usize,
) -> Result<(LoraWeights, Moments, i32), CoreError> {
    let w = from_bytes(bytes, layers)?;
    let (st, meta) = read(bytes)?;
    let step = meta
        .get("step")
        .ok_or_else(|| bad("a training state without its step"))?
        .parse()
        .map_err(bad)?;
    let mut moments = Vec::with_capacity(w.pairs.len());
    for &(layer, target) in w.pairs.keys() {
        let mv = |matrix: &str| -> Result<(Vec<f32>, Vec<f32>), CoreError> {
            let n = name(layer, target, matrix);
            Ok((
                floats(&st, &format!("{n}.m"))?,
                floats(&st, &format!("{n}.v"))?,
            ))
        };
        moments.push([mv("lora_A")?, mv("lora_B")?]);
    }
    Ok((w, moments, step))
}
