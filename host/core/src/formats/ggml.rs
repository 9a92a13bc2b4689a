//! GGML tensor types: their ids and names, block layouts, and the scalar dequantization of
//! each (ggml's `dequantize_row_*`), which the SIMD kernels are tested against. Checked
//! against llama.cpp's own `gguf` package on random blocks (`tests/fixtures/quants`).

use half::{bf16, f16};

/// GGML tensor types Cinder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

/// Elements in one K-quant super-block.
const QK_K: usize = 256;

/// A K-quant super-block whose scales cover runs of 16 (Q3_K, Q6_K): its values as small
/// integers and each run's scale (value = scale · integer).
pub(crate) type Runs16 = ([i8; QK_K], [f32; 16]);

/// A K-quant super-block whose runs of 32 have a scale and a minimum (Q5_K): its values and
/// each run's `[d, m]` (value = d·q + m).
pub(crate) type Runs32 = ([u8; QK_K], [[f32; 2]; 8]);

impl GgmlType {
    /// The type with GGML id `id`, or the id's name (`IQ2_XXS`, ...) when Cinder cannot
    /// read it yet.
    pub fn from_id(id: u32) -> Result<Self, String> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            10 => GgmlType::Q2_K,
            11 => GgmlType::Q3_K,
            12 => GgmlType::Q4_K,
            13 => GgmlType::Q5_K,
            14 => GgmlType::Q6_K,
            30 => GgmlType::BF16,
            other => return Err(unreadable_name(other)),
        })
    }

    /// GGML's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q2_K => "Q2_K",
            GgmlType::Q3_K => "Q3_K",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q6_K => "Q6_K",
        }
    }

    /// (elements per block, bytes per block).
    pub fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q2_K => (QK_K, 84),
            GgmlType::Q3_K => (QK_K, 110),
            GgmlType::Q4_K => (QK_K, 144),
            GgmlType::Q5_K => (QK_K, 176),
            GgmlType::Q6_K => (QK_K, 210),
        }
    }
}

/// The name of a GGML type id Cinder does not read (so the error names what the file has).
fn unreadable_name(id: u32) -> String {
    let name = match id {
        4 | 5 => "Q4_2/Q4_3 (removed from GGML)",
        9 => "Q8_1",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return format!("GGML type {id}"),
    };
    name.to_string()
}

/// The little-endian f16 at byte `i` of `b`, as f32.
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `bytes` of type `ty` into `out` (whose length is the element count; a
/// trailing partial block of `bytes` is ignored).
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    let (per_block, block_bytes) = ty.block();
    for (blk, y) in bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(per_block))
    {
        match ty {
            GgmlType::F32 => y[0] = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]),
            GgmlType::F16 => y[0] = f16_at(blk, 0),
            GgmlType::BF16 => y[0] = bf16::from_le_bytes([blk[0], blk[1]]).to_f32(),
            GgmlType::Q8_0 => {
                let d = f16_at(blk, 0);
                for (o, &q) in y.iter_mut().zip(&blk[2..34]) {
                    *o = d * f32::from(q as i8);
                }
            }
            GgmlType::Q4_0 => {
                let d = f16_at(blk, 0);
                for (j, &q) in blk[2..18].iter().enumerate() {
                    y[j] = d * (f32::from(q & 0x0f) - 8.0);
                    y[j + 16] = d * (f32::from(q >> 4) - 8.0);
                }
            }
            GgmlType::Q4_1 => {
                let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
                for (j, &q) in blk[4..20].iter().enumerate() {
                    y[j] = d * f32::from(q & 0x0f) + m;
                    y[j + 16] = d * f32::from(q >> 4) + m;
                }
            }
            GgmlType::Q5_0 => {
                let d = f16_at(blk, 0);
                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                for (j, &q) in blk[6..22].iter().enumerate() {
                    let (lo, hi) = q5_pair(q, qh, j);
                    y[j] = d * (f32::from(lo) - 16.0);
                    y[j + 16] = d * (f32::from(hi) - 16.0);
                }
            }
            GgmlType::Q5_1 => {
                let (q, [d, m]) = q5_1_parts(blk);
                for (o, &v) in y.iter_mut().zip(&q) {
                    *o = d * f32::from(v) + m;
                }
            }
            GgmlType::Q2_K => q2_k(blk, y),
            GgmlType::Q3_K => q3_k(blk, y),
            GgmlType::Q4_K => q4_k(blk, y),
            GgmlType::Q5_K => q5_k(blk, y),
            GgmlType::Q6_K => q6_k(blk, y),
        }
    }
}

/// The two 5-bit values of byte `j` of a Q5_0/Q5_1 block: its nibbles with their fifth bits
/// (bit `j` and bit `j + 16` of `qh`).
pub(crate) fn q5_pair(q: u8, qh: u32, j: usize) -> (u8, u8) {
    let lo = u32::from(q & 0x0f) | (((qh >> j) << 4) & 0x10);
    let hi = u32::from(q >> 4) | ((qh >> (j + 12)) & 0x10);
    (lo as u8, hi as u8)
}

/// A Q5_1 block as its 32 values (0 to 31) and `[d, m]` (value = d·q + m).
pub(crate) fn q5_1_parts(blk: &[u8]) -> ([u8; 32], [f32; 2]) {
    let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
    let mut q = [0u8; 32];
    for (j, &byte) in blk[8..24].iter().enumerate() {
        (q[j], q[j + 16]) = q5_pair(byte, qh, j);
    }
    (q, [f16_at(blk, 0), f16_at(blk, 2)])
}

/// Scale and minimum `j` (of 8, six bits each) packed in a Q4_K/Q5_K block's 12 bytes.
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q2_K: 16 sub-blocks of 16, each with a 4-bit scale and a 4-bit minimum; 2-bit values.
fn q2_k(blk: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&blk[0..16], &blk[16..80]);
    let (d, min) = (f16_at(blk, 80), f16_at(blk, 82));
    let mut is = 0;
    for (half, q) in qs.chunks_exact(32).enumerate() {
        for (j, shift) in [0u32, 2, 4, 6].into_iter().enumerate() {
            for part in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * f32::from(sc & 0x0f);
                let ml = min * f32::from(sc >> 4);
                let base = half * 128 + j * 32 + part * 16;
                for l in 0..16 {
                    let v = (q[part * 16 + l] >> shift) & 3;
                    y[base + l] = dl * f32::from(v) - ml;
                }
            }
        }
    }
}

/// Q3_K's 16 six-bit scales, unpacked from 12 bytes.
fn q3_k_scales(packed: &[u8]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word =
        |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (a0, a1, tmp) = (word(0), word(4), word(8));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (i, w) in aux.iter().enumerate() {
        for (k, b) in w.to_le_bytes().into_iter().enumerate() {
            out[i * 4 + k] = b as i8;
        }
    }
    out
}

/// A Q3_K super-block as 256 small integers (−4 to 3) and the scale of each run of 16
/// (value = scale · integer): 2-bit values plus a high bit in `hmask` (set: no offset;
/// clear: minus 4), 6-bit scales.
pub(crate) fn q3_k_parts(blk: &[u8]) -> Runs16 {
    let (hmask, qs) = (&blk[0..32], &blk[32..96]);
    let packed = q3_k_scales(&blk[96..108]);
    let d = f16_at(blk, 108);
    let scales = std::array::from_fn(|i| d * f32::from(i16::from(packed[i]) - 32));
    let mut q = [0i8; QK_K];
    let mut m = 1u8;
    for (half, qs) in qs.chunks_exact(32).enumerate() {
        for (j, shift) in [0u32, 2, 4, 6].into_iter().enumerate() {
            for (i, &byte) in qs.iter().enumerate() {
                let low = ((byte >> shift) & 3) as i8;
                q[half * 128 + j * 32 + i] = low - if hmask[i] & m != 0 { 0 } else { 4 };
            }
            m <<= 1;
        }
    }
    (q, scales)
}

/// Q3_K: 16 runs of 16 values with 6-bit scales.
fn q3_k(blk: &[u8], y: &mut [f32]) {
    let (q, scales) = q3_k_parts(blk);
    for (p, (o, &v)) in y.iter_mut().zip(&q).enumerate() {
        *o = scales[p / 16] * f32::from(v);
    }
}

/// Q4_K: 8 sub-blocks of 32 with 6-bit scales and minimums; 4-bit values.
fn q4_k(blk: &[u8], y: &mut [f32]) {
    let (d, min) = (f16_at(blk, 0), f16_at(blk, 2));
    let (scales, qs) = (&blk[4..16], &blk[16..144]);
    for (k, q) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * k, scales);
        let (sc2, m2) = scale_min_k4(2 * k + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        for l in 0..32 {
            y[k * 64 + l] = d1 * f32::from(q[l] & 0x0f) - m1;
            y[k * 64 + 32 + l] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

/// A Q5_K super-block as 256 values (0 to 31) and `[d, −m]` of each run of 32 (value =
/// d·q − m): Q4_K with a fifth bit per value in `qh`.
pub(crate) fn q5_k_parts(blk: &[u8]) -> Runs32 {
    let (d, min) = (f16_at(blk, 0), f16_at(blk, 2));
    let (packed, qh, qs) = (&blk[4..16], &blk[16..48], &blk[48..176]);
    let scales = std::array::from_fn(|run| {
        let (sc, m) = scale_min_k4(run, packed);
        [d * f32::from(sc), -(min * f32::from(m))]
    });
    let mut q = [0u8; QK_K];
    for (k, ql) in qs.chunks_exact(32).enumerate() {
        let (u1, u2) = (1u8 << (2 * k), 2u8 << (2 * k));
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            q[k * 64 + l] = (ql[l] & 0x0f) + h1;
            q[k * 64 + 32 + l] = (ql[l] >> 4) + h2;
        }
    }
    (q, scales)
}

/// Q5_K: 8 runs of 32 with 6-bit scales and minimums; 5-bit values.
fn q5_k(blk: &[u8], y: &mut [f32]) {
    let (q, scales) = q5_k_parts(blk);
    for (p, (o, &v)) in y.iter_mut().zip(&q).enumerate() {
        let [d, m] = scales[p / 32];
        *o = d * f32::from(v) + m;
    }
}

/// A Q6_K super-block as 256 integers (−32 to 31) and the scale of each run of 16 (value =
/// scale · integer): 6-bit values (4 low bits in `ql`, 2 high in `qh`), 8-bit scales.
pub(crate) fn q6_k_parts(blk: &[u8]) -> Runs16 {
    let d = f16_at(blk, 208);
    let scales = std::array::from_fn(|i| d * f32::from(blk[192 + i] as i8));
    let mut q = [0i8; QK_K];
    for n in 0..2 {
        let ql = &blk[n * 64..n * 64 + 64];
        let qh = &blk[128 + n * 32..128 + n * 32 + 32];
        let q = &mut q[n * 128..n * 128 + 128];
        for l in 0..32 {
            q[l] = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i8 - 32;
            q[l + 32] = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            q[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            q[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    (q, scales)
}

/// Q6_K: 16 runs of 16 values with 8-bit scales, offset by 32.
fn q6_k(blk: &[u8], y: &mut [f32]) {
    let (q, scales) = q6_k_parts(blk);
    for (p, (o, &v)) in y.iter_mut().zip(&q).enumerate() {
        *o = scales[p / 16] * f32::from(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type against llama.cpp's `gguf` package on random blocks
    /// (`tests/fixtures/quants/make_quants.py`).
    #[test]
    fn every_type_matches_the_gguf_reference() {
        macro_rules! fixture {
            ($name:literal) => {
                (
                    &include_bytes!(concat!("../../../../tests/fixtures/quants/", $name, ".bin"))[..],
                    &include_bytes!(concat!("../../../../tests/fixtures/quants/", $name, ".f32"))[..],
                )
            };
        }
        let cases = [
            (GgmlType::Q4_0, fixture!("q4_0")),
            (GgmlType::Q4_1, fixture!("q4_1")),
            (GgmlType::Q5_0, fixture!("q5_0")),
            (GgmlType::Q5_1, fixture!("q5_1")),
            (GgmlType::Q8_0, fixture!("q8_0")),
            (GgmlType::Q2_K, fixture!("q2_k")),
            (GgmlType::Q3_K, fixture!("q3_k")),
            (GgmlType::Q4_K, fixture!("q4_k")),
            (GgmlType::Q5_K, fixture!("q5_k")),
            (GgmlType::Q6_K, fixture!("q6_k")),
            (GgmlType::F16, fixture!("f16")),
            (GgmlType::BF16, fixture!("bf16")),
        ];
        for (ty, (raw, reference)) in cases {
            let want: Vec<f32> = reference
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let (per_block, block_bytes) = ty.block();
            assert_eq!(raw.len() / block_bytes * per_block, want.len(), "{ty:?}");
            let mut got = vec![f32::NAN; want.len()];
            dequantize_into(ty, raw, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                // The same products in the same order as ggml, up to where numpy rounds an
                // intermediate scale.
                let tol = 1e-6 * w.abs().max(1e-3);
                assert!((g - w).abs() <= tol, "{ty:?} value {i}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn unreadable_types_are_named() {
        assert_eq!(GgmlType::from_id(16), Err("IQ2_XXS".to_string()));
        assert_eq!(GgmlType::from_id(23), Err("IQ4_XS".to_string()));
        assert_eq!(GgmlType::from_id(999), Err("GGML type 999".to_string()));
        assert_eq!(GgmlType::from_id(12).map(GgmlType::name), Ok("Q4_K"));
    }

    #[test]
    fn q4_1_block_low_nibbles_first() {
        let mut blk = Vec::new();
        blk.extend_from_slice(&f16::from_f32(0.5).to_le_bytes());
        blk.extend_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        blk.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = [0f32; 32];
        dequantize_into(GgmlType::Q4_1, &blk, &mut out);
        assert_eq!(out[0], -1.0);
        assert_eq!(out[15], 0.5 * 15.0 - 1.0);
        assert_eq!(out[16], 0.5 * 15.0 - 1.0);
        assert_eq!(out[31], -1.0);
    }

    #[test]
    fn q8_0_and_q4_0_blocks() {
        let mut blk = f16::from_f32(0.25).to_le_bytes().to_vec();
        blk.extend((0..32i8).map(|i| (i - 16) as u8));
        let mut out = [0f32; 32];
        dequantize_into(GgmlType::Q8_0, &blk, &mut out);
        assert_eq!(out[0], -4.0);
        assert_eq!(out[31], 15.0 * 0.25);

        let mut blk = f16::from_f32(2.0).to_le_bytes().to_vec();
        blk.extend(std::iter::repeat_n(0x8fu8, 16));
        dequantize_into(GgmlType::Q4_0, &blk, &mut out);
        assert_eq!(out[0], 14.0);
        assert_eq!(out[16], 0.0);
    }
}
