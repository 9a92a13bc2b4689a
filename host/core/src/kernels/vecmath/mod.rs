//! The CPU path's vector math besides the matmuls: one attention head over its cache, the
//! SwiGLU gate, dot products. AVX2 + FMA when the CPU has it (chosen at run time), plain
//! Rust otherwise; the tests hold the two to each other.
//!
//! Attention was a sixth of a 16-stream decode step while doing a fortieth of its
//! arithmetic: scalar `exp`, one horizontal sum per position and SSE2 code (the crate is
//! built for baseline x86-64). These kernels keep a head's query and output in registers.

#[cfg(target_arch = "x86_64")]
mod x86;

/// One attention head's keys and values of consecutive positions: segment after segment
/// (the blocks of the KV cache), each `[n × head_dim]` keys and the same of values.
pub type Segments<'a> = [(&'a [f32], &'a [f32])];

/// Softmax attention of query `q` over the positions in `segs`:
/// `out = Σ_j softmax(q·k_j · scale)_j v_j`. `scores` is scratch space, reused between calls.
pub fn attend(q: &[f32], segs: &Segments<'_>, scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    let hd = q.len();
    debug_assert_eq!(out.len(), hd);
    debug_assert!(
        segs.iter()
            .all(|(k, v)| k.len() == v.len() && k.len() % hd == 0)
    );
    let len: usize = segs.iter().map(|(k, _)| k.len() / hd).sum();
    debug_assert!(len >= 1);
    // Rounded up to whole vectors so the kernels never need a scalar tail.
    scores.clear();
    scores.resize(len.div_ceil(8) * 8, f32::NEG_INFINITY);
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: AVX2 and FMA are present; every segment holds whole rows of `hd` values
        // for keys and values alike, and `scores` holds their count rounded up to 8.
        let done = unsafe {
            match hd {
                // all-MiniLM-L6-v2's heads (384 / 12): long inputs spend most of their
                // attention time here.
                32 => x86::attend::<4>(q, segs, scale, scores, out),
                64 => x86::attend::<8>(q, segs, scale, scores, out),
                128 => x86::attend::<16>(q, segs, scale, scores, out),
                // Gemma 3's heads.
                256 => x86::attend::<32>(q, segs, scale, scores, out),
                _ => false,
            }
        };
        if done {
            return;
        }
    }
    attend_portable(q, segs, scale, scores, out);
}

fn attend_portable(
    q: &[f32],
    segs: &Segments<'_>,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let hd = q.len();
    let keys = segs.iter().flat_map(|(k, _)| k.chunks_exact(hd));
    let mut len = 0;
    for (s, k) in scores.iter_mut().zip(keys) {
        *s = dot(q, k) * scale;
        len += 1;
    }
    let scores = &mut scores[..len];
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    let values = segs.iter().flat_map(|(_, v)| v.chunks_exact(hd));
    for (p, v) in scores.iter().zip(values) {
        for (o, v) in out.iter_mut().zip(v) {
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

/// GeGLU's gate: `gate[i] = gelu(gate[i]) · up[i]`, with GELU's tanh form (Gemma's
/// `gelu_pytorch_tanh`) computed as ggml computes it, so logits stay equal to llama.cpp's
/// (to ~1e-4 instead of ~3e-3 on a tiny Gemma 3): looked up in a table of f16 results by the
/// input rounded to f16, `0` below −10 and `x` above 10. A lookup is also cheaper than `tanh`.
pub fn gelu_tanh_mul(gate: &mut [f32], up: &[f32]) {
    debug_assert_eq!(gate.len(), up.len());
    let table = gelu_table();
    for (g, u) in gate.iter_mut().zip(up) {
        let x = *g;
        let gelu = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x
        } else {
            table[usize::from(half::f16::from_f32(x).to_bits())]
        };
        *g = gelu * u;
    }
}

/// GELU (tanh form, in f32) of every f16 value, rounded to f16, indexed by the input's bits.
fn gelu_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        const COEF: f32 = 0.044_715;
        (0..=u16::MAX)
            .map(|bits| {
                let x = half::f16::from_bits(bits).to_f32();
                let y = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF * x * x)).tanh());
                half::f16::from_f32(y).to_f32()
            })
            .collect()
    })
}

/// The error function's approximation 7.1.26 of Abramowitz and Stegun (absolute error under
/// 1.5e-7): `erf(z) = 1 − t·(a1 + a2·t + … + a5·t⁴)·e^(−z²)`, `t = 1/(1 + p·z)`, z ≥ 0.
mod erf {
    pub(super) const P: f32 = 0.327_591_1;
    pub(super) const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_72,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];

    pub(super) fn erf(z: f32) -> f32 {
        let a = z.abs();
        let t = 1.0 / (1.0 + P * a);
        let poly = A.iter().rev().fold(0.0, |acc, c| acc * t + c) * t;
        (1.0 - poly * (-a * a).exp()).copysign(z)
    }
}

/// BERT's exact GELU, in place: `x · (1 + erf(x/√2)) / 2`.
pub fn gelu(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: AVX2 and FMA are present.
        unsafe { x86::gelu(x) };
        return;
    }
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf::erf(*v * std::f32::consts::FRAC_1_SQRT_2));
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

    /// Softmax attention in f64, straight from the definition, over contiguous rows.
    fn reference(q: &[f32], keys: &[f32], values: &[f32], scale: f32) -> Vec<f64> {
        let hd = q.len();
        let s: Vec<f64> = keys
            .chunks_exact(hd)
            .map(|k| {
                q.iter()
                    .zip(k)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum::<f64>()
                    * f64::from(scale)
            })
            .collect();
        let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        let mut out = vec![0f64; hd];
        for (p, v) in e.iter().zip(values.chunks_exact(hd)) {
            for (o, &v) in out.iter_mut().zip(v) {
                *o += p / sum * f64::from(v);
            }
        }
        out
    }

    #[test]
    fn attention_matches_f64_math_on_every_path() {
        let mut scores = Vec::new();
        for hd in [32, 64, 128, 256, 48] {
            for len in [1, 3, 4, 5, 8, 9, 31, 200] {
                // Large scores make the softmax peaky, as trained models' often are.
                let keys: Vec<f32> = noise(len * hd, 7).iter().map(|v| v * 4.0).collect();
                let values = noise(len * hd, 8);
                let q = noise(hd, len as u32);
                let scale = 1.0 / (hd as f32).sqrt();
                let want = reference(&q, &keys, &values, scale);
                // Whole rows in segments of uneven sizes (1, 2, 3, … positions), as blocks
                // of a cache with a partial last one.
                let mut segs = Vec::new();
                let (mut at, mut n) = (0, 1);
                while at < len {
                    let take = n.min(len - at);
                    let r = at * hd..(at + take) * hd;
                    segs.push((&keys[r.clone()], &values[r]));
                    at += take;
                    n += 1;
                }
                let mut fast = vec![f32::NAN; hd];
                attend(&q, &segs, scale, &mut scores, &mut fast);
                let mut slow = vec![f32::NAN; hd];
                scores.clear();
                scores.resize(len.div_ceil(8) * 8, f32::NEG_INFINITY);
                attend_portable(&q, &segs, scale, &mut scores, &mut slow);
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
    fn gelu_gate_matches_f64_math_to_f16_precision_and_is_exact_outside_ten() {
        let x: Vec<f32> = noise(4001, 5).iter().map(|v| v * 24.0).collect();
        let up = noise(4001, 6);
        let mut gate = x.clone();
        gelu_tanh_mul(&mut gate, &up);
        for ((&g, &x), &u) in gate.iter().zip(&x).zip(&up) {
            if x <= -10.0 || x >= 10.0 {
                assert_eq!(g, if x > 0.0 { x * u } else { 0.0 });
                continue;
            }
            let x = f64::from(x);
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let want = 0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh()) * f64::from(u);
            // Input and output rounded to f16: relative 2⁻¹⁰ each, and GELU's slope ≤ 1.13.
            let tol = 3e-3 * (want.abs() + x.abs() * f64::from(u).abs()) + 1e-6;
            assert!((f64::from(g) - want).abs() <= tol, "{x}: {g} vs {want}");
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

    /// erf in f64: its Taylor series up to |z| = 3 (at most 3 digits lost to cancellation),
    /// the asymptotic series of erfc beyond.
    fn erf64(z: f64) -> f64 {
        if z.abs() > 3.0 {
            let a = z.abs();
            let (mut term, mut sum) = (1.0, 1.0);
            for n in 1..8 {
                term *= -((2 * n - 1) as f64) / (2.0 * a * a);
                sum += term;
            }
            let erfc = (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * sum;
            return (1.0 - erfc).copysign(z);
        }
        let (mut term, mut sum) = (z, z);
        for n in 1..200 {
            term *= -z * z / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn gelu_matches_the_exact_erf_form() {
        let xs: Vec<f32> = (-800..=800)
            .map(|i| i as f32 / 100.0)
            .chain([0.0, -0.0])
            .collect();
        let mut got = xs.clone();
        gelu(&mut got);
        let mut portable = xs.clone();
        for v in portable.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf::erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
        for ((x, g), p) in xs.iter().zip(&got).zip(&portable) {
            let x64 = f64::from(*x);
            let want = 0.5 * x64 * (1.0 + erf64(x64 / std::f64::consts::SQRT_2));
            let tol = 2e-7 * (1.0 + x64.abs());
            assert!(
                (f64::from(*g) - want).abs() <= tol,
                "gelu({x}) = {g}, want {want}"
            );
            assert!(
                (f64::from(*p) - want).abs() <= tol,
                "portable gelu({x}) = {p}, want {want}"
            );
        }
    }
}
