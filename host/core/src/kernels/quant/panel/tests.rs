//! Panels against the exact forms: the same weights, the integer products the portable
//! reference computes, and f32 math within what rounding the activations costs.
use super::*;
use crate::formats::ggml::dequantize_into;
use crate::kernels::quant::{Activations, QMatrix};

macro_rules! blocks {
    ($name:literal) => {
        &include_bytes!(concat!(
            "../../../../../../tests/fixtures/quants/",
            $name,
            ".bin"
        ))[..]
    };
}

fn cases() -> Vec<(GgmlType, &'static [u8])> {
    vec![
        (GgmlType::Q4_0, blocks!("q4_0")),
        (GgmlType::Q4_1, blocks!("q4_1")),
        (GgmlType::Q5_0, blocks!("q5_0")),
        (GgmlType::Q5_1, blocks!("q5_1")),
        (GgmlType::Q8_0, blocks!("q8_0")),
        (GgmlType::Q2_K, blocks!("q2_k")),
        (GgmlType::Q3_K, blocks!("q3_k")),
        (GgmlType::Q4_K, blocks!("q4_k")),
        (GgmlType::Q5_K, blocks!("q5_k")),
        (GgmlType::Q6_K, blocks!("q6_k")),
    ]
}

/// `rows` rows of `cols` from the fixture's blocks, repeated as often as needed.
fn bytes_of(ty: GgmlType, raw: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    let (per_block, block_bytes) = ty.block();
    let want = rows * cols / per_block * block_bytes;
    let whole = raw.len() / block_bytes * block_bytes;
    raw[..whole].iter().copied().cycle().take(want).collect()
}

/// The panel's products with the plain-Rust tile: the reference for the SIMD kernel.
fn portable(p: &Panel, acts: &Acts, m: usize) -> Vec<f32> {
    let (bpr, pb) = (p.bpr(), p.per_block());
    let mut out = vec![0f32; m * p.rows];
    for g in 0..p.rows.div_ceil(LANES) {
        let q = &p.quants[g * bpr * BLOCK_BYTES..(g + 1) * bpr * BLOCK_BYTES];
        let s = &p.scales[g * bpr * pb..(g + 1) * bpr * pb];
        let mn = if p.affine {
            &p.mins[g * bpr * pb..(g + 1) * bpr * pb]
        } else {
            &[][..]
        };
        for i0 in (0..m).step_by(TILE_ROWS) {
            let n = TILE_ROWS.min(m - i0);
            let mut t = [[0f32; LANES]; TILE_ROWS];
            p.tile_portable(q, s, mn, acts, i0, n, &mut t);
            for (i, vals) in t.iter().enumerate().take(n) {
                for (l, v) in vals.iter().enumerate() {
                    if g * LANES + l < p.rows {
                        out[(i0 + i) * p.rows + g * LANES + l] = *v;
                    }
                }
            }
        }
    }
    out
}

#[test]
fn panels_keep_every_type_exactly_and_multiply_as_the_integer_reference() {
    for (ty, raw) in cases() {
        let cols = if ty.block().0 == 256 { 512 } else { 96 };
        // 37 rows: two whole groups of sixteen and a padded one.
        let rows = 37;
        let bytes = bytes_of(ty, raw, rows, cols);
        let p = Panel::from_blocks(ty, rows, cols, &bytes).expect("a panel");
        // The AVX2 kernel sums four words' products in i16 for these: bytes of 5 bits.
        if p.affine || p.offset <= 16 {
            assert!(p.quants.iter().all(|&b| b <= 31), "{ty:?}");
        }
        let mut want_w = vec![0f32; rows * cols];
        dequantize_into(ty, &bytes, &mut want_w);
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            p.dequantize_row(r, &mut row);
            assert_eq!(row, want_w[r * cols..(r + 1) * cols], "{ty:?} row {r}");
        }
        // 1 (decode), 3, 8 (a whole tile), 11 (a tile and three), 70 (past a pass of 64).
        for m in [1, 3, 8, 11, 70] {
            let mut x: Vec<f32> = (0..m * cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
                .collect();
            // A block of zeros: a zero step.
            x[32..64].iter_mut().for_each(|v| *v = 0.0);
            let acts = Acts::new(&x, m, cols);
            let want = portable(&p, &acts, m);
            // The VNNI kernel where the CPU has it, then what an AVX2-only machine runs
            // (other tests meanwhile may take that path too: as correct, only slower).
            let mut got = vec![0f32; m * rows];
            for avx2 in [true, false] {
                crate::kernels::quant::avx2_only(avx2);
                p.matmul(&x, m, &mut got);
                crate::kernels::quant::avx2_only(false);
                for (k, (a, b)) in want.iter().zip(&got).enumerate() {
                    // The minimums' terms nearly cancel the products' (Q4_K): summed in
                    // another order, the last bits differ.
                    assert!(
                        (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                        "{ty:?} m={m} at {k} (AVX2 only: {avx2}): {b} against {a}"
                    );
                }
            }
            // Against f32 math: each activation is off by at most half its block's step, so
            // a product by at most Σ|d·q|·step/2 (the minimums meet exact sums).
            for i in 0..m {
                let xi = &x[i * cols..(i + 1) * cols];
                for r in 0..rows {
                    let w = &want_w[r * cols..(r + 1) * cols];
                    let exact: f64 = w.iter().zip(xi).map(|(a, b)| f64::from(a * b)).sum();
                    let mut bound = 0f64;
                    for (b, xs) in xi.chunks_exact(32).enumerate() {
                        let step = xs.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                        for k in 0..32 {
                            let s = (r / LANES * p.bpr() + b) * p.per_block()
                                + usize::from(p.halves) * (k / 16) * LANES
                                + r % LANES;
                            let min = if p.affine { p.mins[s] } else { 0.0 };
                            bound += f64::from((w[b * 32 + k] - min).abs() * step / 2.0);
                        }
                    }
                    let got = f64::from(got[i * rows + r]);
                    assert!(
                        (got - exact).abs() <= bound * 1.001 + 1e-3,
                        "{ty:?} m={m} row {r}: {got} against f32 {exact} (bound {bound})"
                    );
                }
            }
        }
    }
}

#[test]
fn a_q8_matrix_takes_a_panel_where_the_cpu_has_its_kernels_and_floats_never_do() {
    let raw = blocks!("q8_0");
    let bytes = bytes_of(GgmlType::Q8_0, raw, 16, 64);
    let w = QMatrix::from_blocks_as(GgmlType::Q8_0, 16, 64, &bytes, Activations::Q8).unwrap();
    assert_eq!(w.q8_products(), fast());
    let exact = QMatrix::from_blocks(GgmlType::Q8_0, 16, 64, &bytes).unwrap();
    assert!(!exact.q8_products());
    // Same bytes per value as the exact form: 8 bits and an f32 scale per 32.
    assert_eq!(w.resident_bytes(), exact.resident_bytes());
    let f16 = QMatrix::from_blocks_as(
        GgmlType::F16,
        4,
        32,
        &blocks!("f16")[..4 * 32 * 2],
        Activations::Q8,
    )
    .unwrap();
    assert!(!f16.q8_products());
}

#[test]
fn extreme_bytes_meet_extreme_activations_without_saturating() {
    // Q8_0 blocks of -128 and 127 (a scale of 1), against activations of ±max: AVX2's
    // pairwise i16 sums are where a kernel would overflow.
    let rows = 16;
    let cols = 64;
    let mut bytes = Vec::new();
    for r in 0..rows {
        for b in 0..cols / 32 {
            bytes.extend_from_slice(&0x3c00u16.to_le_bytes()); // f16 1.0
            bytes.extend((0..32).map(|k| match (r + b + k) % 3 {
                0 => 0x80u8, // -128
                1 => 0x7f,   // 127
                _ => 0x81,   // -127
            }));
        }
    }
    let p = Panel::from_blocks(GgmlType::Q8_0, rows, cols, &bytes).expect("a panel");
    let m = 5;
    let x: Vec<f32> = (0..m * cols)
        .map(|i| if (i / 2) % 2 == 0 { 3.0 } else { -3.0 })
        .collect();
    let acts = Acts::new(&x, m, cols);
    let want = portable(&p, &acts, m);
    for avx2 in [false, true] {
        crate::kernels::quant::avx2_only(avx2);
        let mut got = vec![0f32; m * rows];
        p.matmul(&x, m, &mut got);
        crate::kernels::quant::avx2_only(false);
        for (k, (a, b)) in want.iter().zip(&got).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "at {k} (AVX2 only: {avx2}): {b} against {a}"
            );
        }
    }
}

#[test]
fn matrices_fed_one_input_give_what_each_gives_alone() {
    let cols = 256;
    let q4k = bytes_of(GgmlType::Q4_K, blocks!("q4_k"), 20, cols);
    let q8 = bytes_of(GgmlType::Q8_0, blocks!("q8_0"), 7, cols);
    let a = QMatrix::from_blocks_as(GgmlType::Q4_K, 20, cols, &q4k, Activations::Q8).unwrap();
    let b = QMatrix::from_blocks_as(GgmlType::Q8_0, 7, cols, &q8, Activations::Q8).unwrap();
    // An exact (f32-activation) matrix among them: each goes its own way.
    let c = QMatrix::from_blocks(GgmlType::Q8_0, 7, cols, &q8).unwrap();
    let m = 3;
    let x: Vec<f32> = (0..m * cols)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
        .collect();
    let alone = |w: &QMatrix| {
        let mut out = vec![0f32; m * w.rows()];
        w.matmul(&x, m, &mut out);
        out
    };
    for set in [vec![&a, &b], vec![&a, &b, &c]] {
        let mut outs: Vec<Vec<f32>> = set.iter().map(|w| vec![0f32; m * w.rows()]).collect();
        let mut each: Vec<(&QMatrix, &mut [f32])> = set
            .iter()
            .zip(outs.iter_mut())
            .map(|(w, o)| (*w, &mut o[..]))
            .collect();
        QMatrix::matmul_each(&x, m, &mut each);
        for (w, got) in set.iter().zip(&outs) {
            assert_eq!(got, &alone(w));
        }
    }
}
