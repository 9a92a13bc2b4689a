//! A SentencePiece `tokenizer.model` (a protobuf `ModelProto`) as GGUF's `llama` tokenizer
//! metadata: each piece with its score and type, and whether a space is put before the text
//! (`normalizer_spec.add_dummy_prefix`). Only these fields are read; the protobuf wire
//! format they need is a few lines, so no protobuf crate is pulled in for them.

use std::collections::HashMap;
use std::path::Path;

use super::gguf::Value;
use super::hf_vocab::Pieces;
use super::spm::TYPE_NORMAL;
use crate::error::CoreError;

/// A protobuf message's fields, one at a time.
struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
    Fixed64,
}

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    /// The next field number and value; `None` at the end, `Some(Err)` on a malformed one.
    fn next(&mut self) -> Option<Result<(u64, Field<'a>), ()>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let field = (|| {
            let key = self.varint()?;
            let value = match key & 7 {
                0 => Field::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Field::Fixed64
                }
                2 => {
                    let n = usize::try_from(self.varint()?).ok()?;
                    Field::Bytes(self.take(n)?)
                }
                5 => Field::Fixed32(self.take(4)?.try_into().ok()?),
                _ => return None,
            };
            Some((key >> 3, value))
        })();
        Some(field.ok_or(()))
    }
}

/// Reads `path`: the pieces by id and their GGUF types (SentencePiece numbers its types as
/// GGUF does: normal 1, unknown 2, control 3, user-defined 4, unused 5, byte 6), with the
/// scores and the rest of the `llama` tokenizer's metadata put in `m`.
pub(crate) fn read(path: &Path, m: &mut HashMap<String, Value>) -> Result<Pieces, CoreError> {
    let bad = |why: &str| CoreError::Tokenizer(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(&e.to_string()))?;
    let (mut tokens, mut types, mut scores) = (Vec::new(), Vec::new(), Vec::new());
    let mut add_dummy_prefix = true;
    let mut wire = Wire {
        buf: &bytes,
        pos: 0,
    };
    while let Some(field) = wire.next() {
        match field.map_err(|()| bad("not a SentencePiece model"))? {
            // ModelProto.pieces
            (1, Field::Bytes(piece)) => {
                let (mut text, mut score, mut ty) = (None, 0f32, TYPE_NORMAL);
                let mut p = Wire { buf: piece, pos: 0 };
                while let Some(f) = p.next() {
                    match f.map_err(|()| bad("a malformed piece"))? {
                        (1, Field::Bytes(t)) => {
                            text = Some(
                                String::from_utf8(t.to_vec())
                                    .map_err(|_| bad("a piece is not UTF-8"))?,
                            )
                        }
                        (2, Field::Fixed32(s)) => score = f32::from_le_bytes(s),
                        (3, Field::Varint(t)) => ty = i64::try_from(t).unwrap_or(TYPE_NORMAL),
                        _ => {}
                    }
                }
                tokens.push(Some(text.ok_or_else(|| bad("a piece without text"))?));
                scores.push(Value::F32(score));
                types.push(ty);
            }
            // ModelProto.normalizer_spec
            (3, Field::Bytes(spec)) => {
                let mut s = Wire { buf: spec, pos: 0 };
                while let Some(f) = s.next() {
                    if let Ok((3, Field::Varint(v))) = f {
                        add_dummy_prefix = v != 0;
                    }
                }
            }
            _ => {}
        }
    }
    if tokens.is_empty() {
        return Err(bad("a SentencePiece model without pieces"));
    }
    m.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
    m.insert("tokenizer.ggml.scores".into(), Value::Array(scores));
    m.insert(
        "tokenizer.ggml.add_space_prefix".into(),
        Value::Bool(add_dummy_prefix),
    );
    Ok((tokens, types))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes_field(n: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(n << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend(b);
    }

    #[test]
    fn pieces_scores_types_and_the_dummy_prefix_are_read() {
        let mut model = Vec::new();
        for (text, score, ty) in [
            ("<unk>", 0.0f32, 2u64),
            ("▁the", -1.5, 1),
            ("<0x0A>", 0.0, 6),
        ] {
            let mut p = Vec::new();
            bytes_field(1, text.as_bytes(), &mut p);
            varint(2 << 3 | 5, &mut p);
            p.extend(score.to_le_bytes());
            varint(3 << 3, &mut p);
            varint(ty, &mut p);
            bytes_field(1, &p, &mut model);
        }
        // trainer_spec with a fixed64 and a varint the reader skips.
        let mut trainer = Vec::new();
        varint(9 << 3 | 1, &mut trainer);
        trainer.extend([0u8; 8]);
        bytes_field(2, &trainer, &mut model);
        let mut normalizer = Vec::new();
        varint(3 << 3, &mut normalizer);
        varint(0, &mut normalizer);
        bytes_field(3, &normalizer, &mut model);
        let path = std::env::temp_dir().join(format!("cinder-spm-{}.model", std::process::id()));
        std::fs::write(&path, &model).unwrap();
        let mut m = HashMap::new();
        let (tokens, types) = read(&path, &mut m).unwrap();
        assert_eq!(
            tokens,
            [
                Some("<unk>".into()),
                Some("▁the".into()),
                Some("<0x0A>".into())
            ]
        );
        assert_eq!(types, [2, 1, 6]);
        assert_eq!(
            m["tokenizer.ggml.scores"].as_array().unwrap()[1],
            Value::F32(-1.5)
        );
        assert_eq!(m["tokenizer.ggml.add_space_prefix"], Value::Bool(false));
        // Cut short: an error, not a panic.
        std::fs::write(&path, &model[..model.len() - 3]).unwrap();
        assert!(read(&path, &mut HashMap::new()).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
