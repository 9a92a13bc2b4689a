//! The pipeline of `POST /v1/embeddings`: validate, embed every input in one host call (the
//! core batches it with other requests), shorten vectors to `dimensions`, encode, answer.

use cinder_sdk::Host;
use cinder_sdk::openai::embeddings::{
    Embedding, EmbeddingResponse, EmbeddingUsage, EmbeddingVector,
};
use cinder_sdk::{Error, Request};

use crate::openai_ids::{TokenIds, decode_cl100k};
use crate::plan::{Encoding, Plan, plan};

/// The pipeline's seams: [`crate::FirstParty`] takes every default; tests override
/// `prepare` to see that the seam holds.
pub trait Embeddings {
    /// Sees the parsed, validated request before anything runs, and may change it (another
    /// model, refuse long inputs) or refuse it with an error.
    fn prepare(&self, plan: Plan) -> Result<Plan, Error> {
        Ok(plan)
    }

    /// Handles the whole request; override only to replace the pipeline itself.
    fn embed(&self, request: Request, host: &dyn Host) -> Result<(), Error> {
        embed(self, request, host)
    }
}

/// The first-party pipeline: validate, embed every input in one host call (the core batches
/// it with other requests), shorten vectors to `dimensions`, encode, answer.
pub fn embed<E: Embeddings + ?Sized>(
    family: &E,
    request: Request,
    host: &dyn Host,
) -> Result<(), Error> {
    // The host calls the inputs `inputs`; OpenAI's parameter is `input`.
    run(family, request, host).map_err(|e| e.naming(&[("inputs", "input")]))
}

fn run<E: Embeddings + ?Sized>(family: &E, request: Request, host: &dyn Host) -> Result<(), Error> {
    let mut plan = family.prepare(plan(&request.body, host)?)?;
    let info = host.describe_embedder(&plan.model)?;
    if plan.token_ids == TokenIds::Cl100k {
        plan.inputs = decode_cl100k(std::mem::take(&mut plan.inputs))?;
    }
    if let Some(d) = plan.dimensions
        && (d == 0 || d > info.dimensions)
    {
        return Err(cinder_sdk::invalid_request(
            &format!(
                "dimensions must be between 1 and {} for `{}`, got {d}",
                info.dimensions, plan.model
            ),
            Some("dimensions"),
        ));
    }
    let out = host.embed_within(&plan.model, &plan.inputs, plan.overflow, plan.max_tokens)?;
    if out.truncated > 0 {
        cinder_sdk::debug(&format!(
            "{} input(s) cut to the model's {} tokens",
            out.truncated, info.max_tokens
        ));
    }
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let v = match plan.dimensions {
                Some(d) => shorten(v, d as usize, info.normalized),
                None => v,
            };
            Embedding {
                object: "embedding".into(),
                index: i as u32,
                embedding: match plan.encoding {
                    Encoding::Float => EmbeddingVector::Float(v),
                    Encoding::Base64 => EmbeddingVector::Base64(base64_f32(&v)),
                },
            }
        })
        .collect();
    host.respond_json(
        200,
        &EmbeddingResponse {
            object: "list".into(),
            data,
            model: plan.model,
            usage: EmbeddingUsage {
                prompt_tokens: out.prompt_tokens,
                total_tokens: out.prompt_tokens,
            },
        },
    )
}

/// The first `d` components, with unit length again when the model's vectors have it (what
/// OpenAI's `dimensions` does for its own models).
pub fn shorten(mut v: Vec<f32>, d: usize, normalized: bool) -> Vec<f32> {
    v.truncate(d);
    if normalized {
        let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let inv = 1.0 / norm.max(1e-12);
        for x in &mut v {
            *x = (f64::from(*x) * inv) as f32;
        }
    }
    v
}

/// Little-endian float32 bytes in standard base64 (with padding): what OpenAI's SDKs decode
/// when they ask for `encoding_format: "base64"`.
pub fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        // 1.0f32 = 00 00 80 3f; two floats = 8 bytes = one padding '='.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(base64_f32(&[]), "");
        assert_eq!(base64_f32(&[0.0, 0.0, 0.0]), "AAAAAAAAAAAAAAAA");
    }

    #[test]
    fn shortening_renormalises_only_unit_vectors() {
        let v = vec![0.6, 0.0, 0.8];
        assert_eq!(shorten(v.clone(), 1, true), vec![1.0]);
        assert_eq!(shorten(v, 2, false), vec![0.6, 0.0]);
    }
}
