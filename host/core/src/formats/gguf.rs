//! A GGUF reader: the file is memory-mapped, metadata is parsed eagerly (it is small), tensor
//! data stays in the map until a tensor is dequantized.
//!
//! Format: magic `GGUF`, version 2 or 3, tensor count, metadata count, metadata key/values,
//! tensor infos, padding to `general.alignment`, then tensor data. All little-endian.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use super::ggml::{GgmlType, dequantize_into};
use crate::error::CoreError;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, whatever integer width the file used.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, whatever numeric type the file used.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` is the innermost (contiguous) dimension.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
    /// Which of the model's byte sources holds it: 0 for a GGUF file; a shard, or bytes
    /// made at load, for a Hugging Face folder.
    pub(crate) source: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }

    pub(crate) fn n_bytes(&self) -> usize {
        let (per_block, bytes) = self.ty.block();
        self.n_elements() / per_block * bytes
    }
}

/// Bytes tensors are read from, and where their data section starts.
pub(crate) struct Source {
    pub(crate) bytes: Bytes,
    pub(crate) data_start: usize,
}

pub(crate) enum Bytes {
    /// A file, memory-mapped.
    Map(Mmap),
    /// Made at load (a Hugging Face tensor laid out as GGUF has it).
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An opened GGUF file, or a Hugging Face folder read as the GGUF llama.cpp's converter
/// would make of it ([`super::hf`]).
pub struct Gguf {
    sources: Vec<Source>,
    pub metadata: HashMap<String, Value>,
    pub tensors: HashMap<String, TensorInfo>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                CoreError::Weights(format!(
                    "GGUF truncated at byte {} (wanted {n} more)",
                    self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CoreError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, CoreError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, CoreError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn string(&mut self) -> Result<String, CoreError> {
        let len = self.u64()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            CoreError::Weights(format!("GGUF string at byte {} is not UTF-8", self.pos))
        })
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, CoreError> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(self.array::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 if depth < 4 => {
                let elem_ty = self.u32()?;
                let n = self.u64()? as usize;
                // Guard against absurd lengths before allocating.
                if n > self.buf.len() {
                    return Err(CoreError::Weights(format!(
                        "GGUF array of {n} items is longer than the file"
                    )));
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => {
                return Err(CoreError::Weights(format!(
                    "unknown GGUF value type {other}"
                )));
            }
        })
    }
}

impl Gguf {
    /// A GGUF file, or a Hugging Face model folder (`config.json` and safetensors).
    pub fn open(path: &Path) -> Result<Self, CoreError> {
        if path.is_dir() {
            return super::hf::open(path);
        }
        let file =
            File::open(path).map_err(|e| CoreError::Weights(format!("{}: {e}", path.display())))?;
        // SAFETY: the map is read-only; Cinder's model files are not modified while served
        // (a replaced file gets a new inode, the old mapping stays valid).
        let mmap = unsafe { Mmap::map(&file) }
            .map_err(|e| CoreError::Weights(format!("{}: {e}", path.display())))?;
        Self::parse(mmap).map_err(|e| match e {
            CoreError::Weights(m) => CoreError::Weights(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    fn parse(mmap: Mmap) -> Result<Self, CoreError> {
        let mut c = Cursor { buf: &mmap, pos: 0 };
        if c.take(4)? != b"GGUF" {
            return Err(CoreError::Weights("not a GGUF file (bad magic)".into()));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(CoreError::Weights(format!(
                "GGUF version {version} is not supported (2 or 3)"
            )));
        }
        let n_tensors = c.u64()? as usize;
        let n_kv = c.u64()? as usize;
        let mut metadata = HashMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let value = c.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let mut tensors = HashMap::new();
        for _ in 0..n_tensors {
            let name = c.string()?;
            let n_dims = c.u32()? as usize;
            if n_dims > 4 {
                return Err(CoreError::Weights(format!(
                    "tensor {name} has {n_dims} dimensions"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| c.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let ty_id = c.u32()?;
            let ty = GgmlType::from_id(ty_id).map_err(|ty| {
                CoreError::Weights(format!(
                    "tensor {name} is {ty}, a tensor type Cinder cannot read yet"
                ))
            })?;
            let offset = c.u64()?;
            tensors.insert(
                name.clone(),
                TensorInfo {
                    name,
                    dims,
                    ty,
                    offset,
                    source: 0,
                },
            );
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32) as usize;
        let data_start = c.pos.div_ceil(alignment.max(1)) * alignment.max(1);
        for t in tensors.values() {
            let end = data_start as u64 + t.offset + t.n_bytes() as u64;
            if end > mmap.len() as u64 || t.n_elements() % t.ty.block().0 != 0 {
                return Err(CoreError::Weights(format!(
                    "tensor {} lies outside the file",
                    t.name
                )));
            }
        }
        Ok(Gguf {
            sources: vec![Source {
                bytes: Bytes::Map(mmap),
                data_start,
            }],
            metadata,
            tensors,
        })
    }

    /// A model assembled from parts ([`super::hf`]); every tensor must lie inside its source.
    pub(crate) fn from_parts(
        sources: Vec<Source>,
        metadata: HashMap<String, Value>,
        tensors: HashMap<String, TensorInfo>,
    ) -> Result<Self, CoreError> {
        for t in tensors.values() {
            let fits = sources.get(t.source).is_some_and(|s| {
                (s.data_start as u64 + t.offset + t.n_bytes() as u64) <= s.bytes.len() as u64
            });
            if !fits || t.n_elements() % t.ty.block().0 != 0 {
                return Err(CoreError::Weights(format!(
                    "tensor {} lies outside its file",
                    t.name
                )));
            }
        }
        Ok(Gguf {
            sources,
            metadata,
            tensors,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, CoreError> {
        self.get(key).and_then(Value::as_u64).ok_or_else(|| {
            CoreError::Weights(format!(
                "GGUF metadata `{key}` is missing or not an integer"
            ))
        })
    }

    pub fn get_f64(&self, key: &str) -> Result<f64, CoreError> {
        self.get(key).and_then(Value::as_f64).ok_or_else(|| {
            CoreError::Weights(format!("GGUF metadata `{key}` is missing or not a number"))
        })
    }

    pub fn get_str(&self, key: &str) -> Result<&str, CoreError> {
        self.get(key).and_then(Value::as_str).ok_or_else(|| {
            CoreError::Weights(format!("GGUF metadata `{key}` is missing or not a string"))
        })
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, CoreError> {
        self.tensors
            .get(name)
            .ok_or_else(|| CoreError::Weights(format!("tensor `{name}` is missing")))
    }

    fn bytes(&self, t: &TensorInfo) -> &[u8] {
        // In range: checked when the tensors were read.
        let source = &self.sources[t.source];
        let start = source.data_start + t.offset as usize;
        &source.bytes[start..start + t.n_bytes()]
    }

    /// The tensor's bytes as stored (blocks for the quantized types).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], CoreError> {
        Ok(self.bytes(self.tensor(name)?))
    }

    /// The tensor as f32 values in GGML order (row-major with `dims[0]` innermost).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, CoreError> {
        let t = self.tensor(name)?;
        let mut out = vec![0f32; t.n_elements()];
        dequantize_into(t.ty, self.bytes(t), &mut out);
        Ok(out)
    }

    /// [`Gguf::dequantize`] for a tensor files of an architecture may or may not carry
    /// (biases, RoPE factors): `None` when this one does not.
    pub fn dequantize_if_present(&self, name: &str) -> Result<Option<Vec<f32>>, CoreError> {
        match self.tensors.contains_key(name) {
            true => self.dequantize(name).map(Some),
            false => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage() {
        let dir = std::env::temp_dir().join(format!("cinder-gguf-{}", std::process::id()));
        std::fs::write(&dir, b"GGUF\x03\x00\x00\x00\xff").unwrap();
        assert!(matches!(Gguf::open(&dir), Err(CoreError::Weights(_))));
        std::fs::write(&dir, b"NOPE").unwrap();
        assert!(matches!(Gguf::open(&dir), Err(CoreError::Weights(_))));
        let _ = std::fs::remove_file(&dir);
    }
}
