//! The CPU path's vector math besides the matmuls: one attention head over its cache, the
//! SwiGLU gate, dot products. AVX2 + FMA when the CPU has it (chosen at run time), plain
//! Rust otherwise; the tests hold the two to each other.
//!
//! Attention was a sixth of a 16-stream decode step while doing a fortieth of its
//! arithmetic: scalar `exp`, one horizontal sum per position and SSE2 code (the crate is
//! built for baseline x86-64). These kernels keep a head's query and output in registers.

#[cfg(target_arch = "x86_64")]
mod x86;

/// One attention head's view of a sequence's cache: position `j`'s key is
/// `keys[j · stride + offset ..][..head_dim]`, its value likewise in `values`.
#[derive(Clone, Copy)]
pub struct HeadCache<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub stride: usize,
    pub offset: usize,
    /// Positions attended to: `0..len`.
    pub len: usize,
}

/// Softmax attention of query `q` over `cache`: `out = Σ_j softmax(q·k_j · scale)_j v_j`.
/// `scores` is scratch space, reused between calls to save allocations.
pub fn attend(q: &[f32], cache: HeadCache<'_>, scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    let hd = q.len();
    debug_assert_eq!(out.len(), hd);
    debug_assert!(cache.len >= 1);
    debug_assert!((cache.len - 1) * cache.stride + cache.offset + hd <= cache.keys.len());
    debug_assert!((cache.len - 1) * cache.stride + cache.offset + hd <= cache.values.len());
    // Rounded up to whole vectors so the kernels never need a scalar tail.
    scores.clear();
    scores.resize(cache.len.div_ceil(8) * 8, f32::NEG_INFINITY);
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: AVX2 and FMA are present; the asserts above are the kernel's bounds, and
        // `scores` holds `len` rounded up to a multiple of 8.
        let done = unsafe {
            match hd {
                64 => x86::attend::<8>(q, cache, scale, scores, out),
                128 => x86::attend::<16>(q, cache, scale, scores, out),
                _ => false,
            }
        };
        if done {
            return;
        }
    }
    attend_portable(q, cache, scale, scores, out);
}

fn attend_portable(
    q: &[f32],
    cache: HeadCache<'_>,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let hd = q.len();
    let at = |j: usize| j * cache.stride + cache.offset..j * cache.stride + cache.offset + hd;
    for (j, s) in scores.iter_mut().enumerate().take(cache.len) {
        *s = dot(q, &cache.keys[at(j)]) * scale;
    }
    let scores = &mut scores[..cache.len];
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    for (j, p) in scores.iter().enumerate() {
        for (o, v) in out.iter_mut().zip(&cache.values[at(j)]) {
            *o += p * v;
        }
    }
    let inv = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// SwiGLU's gate: `gate[i] = silu(gate[i]) · up[i]`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    debug_assert_eq!(gate.len(), up.len());
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: AVX2 and FMA are present; the slices have equal lengths.
        unsafe { x86::silu_mul(gate, up) };
        return;
    }
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// A dot product in eight lanes, which the compiler turns into SIMD.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 20_000) as f32 / 10_000.0 - 1.0
            })
            .collect()
    }

    /// Softmax attention in f64, straight from the definition.
    fn reference(q: &[f32], c: HeadCache<'_>, scale: f32) -> Vec<f64> {
        let hd = q.len();
        let row = |m: &[f32], j: usize| -> Vec<f64> {
            let at = j * c.stride + c.offset;
            m[at..at + hd].iter().map(|&v| f64::from(v)).collect()
        };
        let s: Vec<f64> = (0..c.len)
            .map(|j| {
                let k = row(c.keys, j);
                q.iter()
                    .zip(&k)
                    .map(|(&a, b)| f64::from(a) * b)
                    .sum::<f64>()
                    * f64::from(scale)
            })
            .collect();
        let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        let mut out = vec![0f64; hd];
        for (j, p) in e.iter().enumerate() {
            for (o, v) in out.iter_mut().zip(row(c.values, j)) {
                *o += p / sum * v;
            }
        }
        out
    }

    #[test]
    fn attention_matches_f64_math_on_every_path() {
        let mut scores = Vec::new();
        for hd in [64, 128, 48] {
            for len in [1, 3, 4, 5, 8, 9, 31, 200] {
                let (heads, offset) = (3, hd);
                let stride = heads * hd;
                // Large scores make the softmax peaky, as trained models' often are.
                let keys: Vec<f32> = noise(len * stride, 7).iter().map(|v| v * 4.0).collect();
                let values = noise(len * stride, 8);
                let q = noise(hd, len as u32);
                let cache = HeadCache {
                    keys: &keys,
                    values: &values,
                    stride,
                    offset,
                    len,
                };
                let scale = 1.0 / (hd as f32).sqrt();
                let want = reference(&q, cache, scale);
                let mut fast = vec![f32::NAN; hd];
                attend(&q, cache, scale, &mut scores, &mut fast);
                let mut slow = vec![f32::NAN; hd];
                scores.clear();
                scores.resize(len.div_ceil(8) * 8, f32::NEG_INFINITY);
                attend_portable(&q, cache, scale, &mut scores, &mut slow);
                for (got, name) in [(&fast, "dispatched"), (&slow, "portable")] {
                    let worst = got
                        .iter()
                        .zip(&want)
                        .map(|(&g, w)| (f64::from(g) - w).abs())
                        .fold(0f64, f64::max);
                    assert!(worst < 2e-6, "{name} hd {hd} len {len}: off by {worst}");
                }
            }
        }
    }

    #[test]
    fn silu_gate_matches_f64_math_including_extremes() {
        for n in [1, 7, 8, 9, 1536 * 2 + 5] {
            let mut gate: Vec<f32> = noise(n, 3).iter().map(|v| v * 30.0).collect();
            if n > 8 {
                gate[0] = 200.0;
                gate[1] = -200.0;
                gate[2] = 0.0;
            }
            let up = noise(n, 4);
            let want: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(&g, &u)| {
                    let g = f64::from(g);
                    g / (1.0 + (-g).exp()) * f64::from(u)
                })
                .collect();
            silu_mul(&mut gate, &up);
            for (i, (g, w)) in gate.iter().zip(&want).enumerate() {
                let tol = 1e-6 * w.abs().max(1.0);
                assert!((f64::from(*g) - w).abs() <= tol, "n {n} at {i}: {g} vs {w}");
            }
        }
    }
}
