//! GGUF block types re-laid into the forms the kernels read, where that loses nothing: Q4_0
//! and Q4_K as Q4_1 blocks (value = d·q + m with q in 0..16), Q5_0 as Q8_0 blocks (value =
//! d·q with q in -16..16), Q6_K and Q3_K, whose scales cover 16 values, as blocks of 32
//! signed bytes with two scales, Q5_1 and Q5_K (a minimum per 32 values) as blocks of 32
//! unsigned bytes with a scale and a minimum; F16 and BF16 stay 16-bit. Each value is the same
//! f32 product of f16 scales and small integers that ggml's dequantization computes. Also the
//! way back: a row of any form as f32 (`QMatrix::dequantize_row`).

use super::{QMatrix, Values};
use crate::formats::ggml::{
    GgmlType, Runs16, dequantize_into, f16_at, q3_k_parts, q5_1_parts, q5_k_parts, q6_k_parts,
    scale_min_k4,
};

/// One 16-bit float as f32.
pub(super) fn half_to_f32(bits: u16, brain: bool) -> f32 {
    if brain {
        f32::from_bits(u32::from(bits) << 16)
    } else {
        half::f16::from_bits(bits).to_f32()
    }
}

impl Values {
    /// Bytes the values take in memory.
    pub(super) fn bytes(&self) -> usize {
        use std::mem::size_of_val;
        match self {
            Values::Q4_1 { scales, quants } => size_of_val(&scales[..]) + size_of_val(&quants[..]),
            Values::Q8_0 { scales, quants } => size_of_val(&scales[..]) + size_of_val(&quants[..]),
            Values::Q8x16 { scales, quants } => size_of_val(&scales[..]) + size_of_val(&quants[..]),
            Values::U8Affine { scales, quants } => {
                size_of_val(&scales[..]) + size_of_val(&quants[..])
            }
            Values::U8Affine16 { scales, quants } => {
                size_of_val(&scales[..]) + size_of_val(&quants[..])
            }
            Values::Half { bits, .. } => size_of_val(&bits[..]),
            Values::F32(v) => size_of_val(&v[..]),
            Values::Panel(p) => p.bytes(),
        }
    }
}

/// How a `[rows, cols]` matrix of GGUF type `ty` (whole blocks, checked by the caller) is
/// kept: re-laid for a kernel where that loses nothing, as f32 otherwise.
pub(super) fn values(ty: GgmlType, rows: usize, cols: usize, bytes: &[u8]) -> Values {
    // Blocks of 32 for the kernels (a row of another width takes the f32 path).
    let blocked = cols.is_multiple_of(32);
    match ty {
        GgmlType::Q4_1 if blocked => {
            let blocks = bytes.chunks_exact(20);
            Values::Q4_1 {
                scales: blocks
                    .clone()
                    .map(|b| [f16_at(b, 0), f16_at(b, 2)])
                    .collect(),
                quants: blocks.map(|b| std::array::from_fn(|i| b[4 + i])).collect(),
            }
        }
        GgmlType::Q8_0 if blocked => {
            let blocks = bytes.chunks_exact(34);
            Values::Q8_0 {
                scales: blocks.clone().map(|b| f16_at(b, 0)).collect(),
                quants: blocks
                    .map(|b| std::array::from_fn(|i| b[2 + i] as i8))
                    .collect(),
            }
        }
        GgmlType::Q4_0 if blocked => q4_0(bytes),
        GgmlType::Q5_0 if blocked => q5_0(bytes),
        GgmlType::Q4_K => q4_k(bytes),
        GgmlType::Q6_K => q6_k(bytes),
        GgmlType::Q3_K => q3_k(bytes),
        GgmlType::Q5_1 if blocked => q5_1(bytes),
        GgmlType::Q5_K => q5_k(bytes),
        GgmlType::Q2_K => q2_k(bytes),
        GgmlType::F16 | GgmlType::BF16 => Values::Half {
            bits: bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect(),
            brain: ty == GgmlType::BF16,
        },
        // The rest (rows not a whole number of blocks) is kept as f32: correct, but several
        // times the bytes per token of its GGUF form.
        _ => {
            let mut v = vec![0f32; rows * cols];
            dequantize_into(ty, bytes, &mut v);
            Values::F32(v)
        }
    }
}

/// Q4_0 (value = d·(q − 8)) as Q4_1 with minimum −8·d.
pub(super) fn q4_0(bytes: &[u8]) -> Values {
    let blocks = bytes.chunks_exact(18);
    Values::Q4_1 {
        scales: blocks
            .clone()
            .map(|b| {
                let d = f16_at(b, 0);
                [d, -8.0 * d]
            })
            .collect(),
        quants: blocks.map(|b| std::array::from_fn(|i| b[2 + i])).collect(),
    }
}

/// Q5_0 (value = d·(q − 16), q of 5 bits) as Q8_0 with q − 16 as a signed byte.
pub(super) fn q5_0(bytes: &[u8]) -> Values {
    let blocks = bytes.chunks_exact(22);
    Values::Q8_0 {
        scales: blocks.clone().map(|b| f16_at(b, 0)).collect(),
        quants: blocks
            .map(|b| {
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                let mut q = [0i8; 32];
                for (j, &byte) in b[6..22].iter().enumerate() {
                    let lo = u32::from(byte & 0x0f) | (((qh >> j) << 4) & 0x10);
                    let hi = u32::from(byte >> 4) | ((qh >> (j + 12)) & 0x10);
                    q[j] = lo as i8 - 16;
                    q[j + 16] = hi as i8 - 16;
                }
                q
            })
            .collect(),
    }
}

/// Q4_K: each super-block's 8 runs of 32 values (scale d·sc, minimum −dmin·m) as 8 Q4_1
/// blocks. Q4_K keeps run 2k in the low nibbles of 32 bytes and run 2k + 1 in their high
/// nibbles; Q4_1 keeps value j in byte j's low nibble and value j + 16 in its high one.
pub(super) fn q4_k(bytes: &[u8]) -> Values {
    let n = bytes.len() / 144 * 8;
    let mut scales = Vec::with_capacity(n);
    let mut quants = Vec::with_capacity(n);
    for b in bytes.chunks_exact(144) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let packed = &b[4..16];
        for (k, q) in b[16..144].chunks_exact(32).enumerate() {
            for (run, shift) in [(2 * k, 0u8), (2 * k + 1, 4)] {
                let (sc, m) = scale_min_k4(run, packed);
                scales.push([d * f32::from(sc), -(dmin * f32::from(m))]);
                let v = |i: usize| (q[i] >> shift) & 0x0f;
                quants.push(std::array::from_fn(|j| v(j) | (v(j + 16) << 4)));
            }
        }
    }
    Values::Q4_1 { scales, quants }
}

/// Q6_K or Q3_K super-blocks (`block_bytes` each, split by `parts`) as blocks of 32 signed
/// bytes with one scale per 16.
pub(super) fn runs_of_16(bytes: &[u8], block_bytes: usize, parts: fn(&[u8]) -> Runs16) -> Values {
    let n = bytes.len() / block_bytes * 8;
    let mut scales = Vec::with_capacity(n);
    let mut quants = Vec::with_capacity(n);
    for b in bytes.chunks_exact(block_bytes) {
        let (q, s) = parts(b);
        for k in 0..8 {
            scales.push([s[2 * k], s[2 * k + 1]]);
            quants.push(std::array::from_fn(|j| q[32 * k + j]));
        }
    }
    Values::Q8x16 { scales, quants }
}

pub(super) fn q6_k(bytes: &[u8]) -> Values {
    runs_of_16(bytes, 210, q6_k_parts)
}

pub(super) fn q3_k(bytes: &[u8]) -> Values {
    runs_of_16(bytes, 110, q3_k_parts)
}

pub(super) fn q5_1(bytes: &[u8]) -> Values {
    let (quants, scales) = bytes.chunks_exact(24).map(q5_1_parts).unzip();
    Values::U8Affine { scales, quants }
}

pub(super) fn q5_k(bytes: &[u8]) -> Values {
    let n = bytes.len() / 176 * 8;
    let mut scales = Vec::with_capacity(n);
    let mut quants = Vec::with_capacity(n);
    for b in bytes.chunks_exact(176) {
        let (q, s) = q5_k_parts(b);
        for (k, s) in s.into_iter().enumerate() {
            scales.push(s);
            quants.push(std::array::from_fn(|j| q[32 * k + j]));
        }
    }
    Values::U8Affine { scales, quants }
}

/// Q2_K super-blocks (84 bytes: 16 scale bytes, each a 4-bit scale and a 4-bit minimum for
/// a run of 16; 64 bytes of 2-bit values, four to a byte; `d` and `dmin` as f16) as blocks
/// of 32 unsigned bytes with a scale and a minimum per 16: 12 bits a value instead of 32.
/// The order is llama.cpp's: each 32 bytes of values give 128 outputs, two bits at a time.
pub(super) fn q2_k(bytes: &[u8]) -> Values {
    let n = bytes.len() / 84 * 8;
    let mut scales = Vec::with_capacity(n);
    let mut quants = Vec::with_capacity(n);
    for b in bytes.chunks_exact(84) {
        let (sc, qs) = (&b[0..16], &b[16..80]);
        let (d, min) = (f16_at(b, 80), f16_at(b, 82));
        let params = |i: usize| (d * f32::from(sc[i] & 0x0f), -min * f32::from(sc[i] >> 4));
        for k in 0..8 {
            let (half, shift) = (k / 4, 2 * (k % 4));
            let q = &qs[half * 32..half * 32 + 32];
            let ((d0, m0), (d1, m1)) = (params(2 * k), params(2 * k + 1));
            scales.push([d0, m0, d1, m1]);
            quants.push(std::array::from_fn(|j| (q[j] >> shift) & 3));
        }
    }
    Values::U8Affine16 { scales, quants }
}

impl QMatrix {
    /// Row `r` as f32 values (an embedding lookup; a tile of the tiled kernel).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let bpr = self.cols / 32;
        #[cfg(target_arch = "x86_64")]
        if self.simd_ready() {
            let blocks = r * bpr..(r + 1) * bpr;
            // SAFETY: AVX2 and FMA are present; `out` has room for the row's `bpr` blocks.
            match &self.values {
                Values::Q4_1 { scales, quants } => {
                    return unsafe {
                        super::simd::dequant_q4_1(&scales[blocks.clone()], &quants[blocks], out)
                    };
                }
                Values::Q8_0 { scales, quants } => {
                    return unsafe {
                        super::simd::dequant_q8_0(&scales[blocks.clone()], &quants[blocks], out)
                    };
                }
                Values::Q8x16 { scales, quants } => {
                    return unsafe {
                        super::simd::dequant_q8x16(&scales[blocks.clone()], &quants[blocks], out)
                    };
                }
                Values::U8Affine { scales, quants } => {
                    return unsafe {
                        super::simd::dequant_u8_affine(
                            &scales[blocks.clone()],
                            &quants[blocks],
                            out,
                        )
                    };
                }
                Values::U8Affine16 { scales, quants } => {
                    return unsafe {
                        super::simd::dequant_u8_affine16(
                            &scales[blocks.clone()],
                            &quants[blocks],
                            out,
                        )
                    };
                }
                Values::Half { bits, brain } => {
                    let row = &bits[r * self.cols..(r + 1) * self.cols];
                    // SAFETY: F16C is present too (`simd_ready`); `out` has the row's room.
                    return unsafe { super::simd::half_to_f32s(row, *brain, out) };
                }
                Values::F32(_) | Values::Panel(_) => {}
            }
        }
        match &self.values {
            Values::Q4_1 { scales, quants } => {
                for (b, dst) in (r * bpr..(r + 1) * bpr).zip(out.chunks_exact_mut(32)) {
                    let [d, m] = scales[b];
                    for (j, &q) in quants[b].iter().enumerate() {
                        dst[j] = d * f32::from(q & 0x0f) + m;
                        dst[j + 16] = d * f32::from(q >> 4) + m;
                    }
                }
            }
            Values::Q8_0 { scales, quants } => {
                for (b, dst) in (r * bpr..(r + 1) * bpr).zip(out.chunks_exact_mut(32)) {
                    for (o, &q) in dst.iter_mut().zip(&quants[b]) {
                        *o = scales[b] * f32::from(q);
                    }
                }
            }
            Values::Q8x16 { scales, quants } => {
                for (b, dst) in (r * bpr..(r + 1) * bpr).zip(out.chunks_exact_mut(32)) {
                    for (j, (o, &q)) in dst.iter_mut().zip(&quants[b]).enumerate() {
                        *o = scales[b][j / 16] * f32::from(q);
                    }
                }
            }
            Values::U8Affine { scales, quants } => {
                for (b, dst) in (r * bpr..(r + 1) * bpr).zip(out.chunks_exact_mut(32)) {
                    let [d, m] = scales[b];
                    for (o, &q) in dst.iter_mut().zip(&quants[b]) {
                        *o = d * f32::from(q) + m;
                    }
                }
            }
            Values::U8Affine16 { scales, quants } => {
                for (b, dst) in (r * bpr..(r + 1) * bpr).zip(out.chunks_exact_mut(32)) {
                    let s = scales[b];
                    for (j, (o, &q)) in dst.iter_mut().zip(&quants[b]).enumerate() {
                        let h = 2 * (j / 16);
                        *o = s[h] * f32::from(q) + s[h + 1];
                    }
                }
            }
            Values::Half { bits, brain } => {
                for (o, &b) in out
                    .iter_mut()
                    .zip(&bits[r * self.cols..(r + 1) * self.cols])
                {
                    *o = half_to_f32(b, *brain);
                }
            }
            Values::F32(v) => out.copy_from_slice(&v[r * self.cols..(r + 1) * self.cols]),
            Values::Panel(p) => p.dequantize_row(r, out),
        }
    }
}
