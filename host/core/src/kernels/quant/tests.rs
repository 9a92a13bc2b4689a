//! QMatrix against dequantize-then-dot references: every kernel path, every GGUF type.
use super::*;
use crate::formats::ggml::dequantize_into;

/// A pseudo-random matrix of the given kind.
fn matrix(q4: bool, rows: usize, cols: usize, seed: u32) -> QMatrix {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as u8
    };
    let blocks = rows * cols / 32;
    let values = if q4 {
        Values::Q4_1 {
            scales: (0..blocks)
                .map(|_| {
                    [
                        f32::from(next()) / 2000.0 + 0.001,
                        -f32::from(next()) / 300.0,
                    ]
                })
                .collect(),
            quants: (0..blocks)
                .map(|_| std::array::from_fn(|_| next()))
                .collect(),
        }
    } else {
        Values::Q8_0 {
            scales: (0..blocks)
                .map(|_| f32::from(next()) / 2000.0 + 0.001)
                .collect(),
            quants: (0..blocks)
                .map(|_| std::array::from_fn(|_| next() as i8))
                .collect(),
        }
    };
    QMatrix {
        rows,
        cols,
        values,
        q8_decode: false.into(),
    }
}

fn reference(w: &QMatrix, x: &[f32], m: usize) -> Vec<f32> {
    let mut row = vec![0f32; w.cols];
    let mut out = vec![0f32; m * w.rows];
    for r in 0..w.rows {
        w.dequantize_row(r, &mut row);
        for i in 0..m {
            let acc: f64 = row
                .iter()
                .zip(&x[i * w.cols..(i + 1) * w.cols])
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            out[i * w.rows + r] = acc as f32;
        }
    }
    out
}

fn worst(want: &[f32], got: &[f32]) -> f32 {
    want.iter()
        .zip(got)
        .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
        .fold(0f32, f32::max)
}

#[test]
fn every_kernel_matches_dequantized_f64_math() {
    for (q4, rows) in [(true, 300), (false, 300), (true, 301), (false, 301)] {
        let w = matrix(q4, rows, 96, 7);
        // 1 and 2 rows: fused, scales after the products; 3, 10 and 11: fused on
        // dequantized blocks (10 and 11 in two groups, the last of 2 and 3 rows), or, with
        // AVX-512VL, 8 rows through the tile kernel and the rest one row at a time; 8,
        // 16 and 19: tiles of 2 × 8 (19 leaves 3 rows; 301 weight rows leave one); 40:
        // tiled through gemm. The tiles need AVX-512VL (this project's machines have it);
        // elsewhere 8 to 16 rows take the fused kernel and 19 the gemm path.
        for m in [1, 2, 3, 8, 10, 11, 16, 19, 40] {
            let x: Vec<f32> = (0..m * 96)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
                .collect();
            let want = reference(&w, &x, m);
            let mut got = vec![0f32; m * w.rows];
            w.matmul(&x, m, &mut got);
            let e = worst(&want, &got);
            // gemm sums in another order; values are sums of ~100 products.
            assert!(e < 1e-4, "q4={q4} m={m}: {e}");
            // The portable loop (CPUs without AVX2) agrees too.
            let mut one = vec![0f32; m];
            w.row_portable(5, &x, m, &mut one);
            let want5: Vec<f32> = (0..m).map(|i| want[i * w.rows + 5]).collect();
            assert!(worst(&want5, &one) < 1e-5, "portable q4={q4} m={m}");
        }
    }
}

/// Every GGUF type, as the loader keeps it, through every kernel path against its
/// dequantized values (`tests/fixtures/quants`: random blocks of each type).
#[test]
fn every_gguf_type_multiplies_as_its_dequantized_values() {
    macro_rules! blocks {
        ($name:literal) => {
            &include_bytes!(concat!(
                "../../../../../tests/fixtures/quants/",
                $name,
                ".bin"
            ))[..]
        };
    }
    let cases = [
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
        (GgmlType::F16, blocks!("f16")),
        (GgmlType::BF16, blocks!("bf16")),
    ];
    for (ty, raw) in cases {
        let (per_block, block_bytes) = ty.block();
        // Rows of one K-quant super-block (eight blocks of 32) or two blocks of 32; an
        // odd number of rows, so the tile kernels leave one.
        let cols = if per_block == 256 { 256 } else { 64 };
        let n = (raw.len() / block_bytes * per_block / cols).min(9);
        let rows = if n % 2 == 0 { n - 1 } else { n };
        let bytes = &raw[..rows * cols / per_block * block_bytes];
        let w = QMatrix::from_blocks(ty, rows, cols, bytes).unwrap();
        // Kept in a form of its own, never widened to f32 (at most 16 bits a value).
        assert!(w.resident_bytes() <= rows * cols * 2, "{ty:?} kept as f32");
        let mut want_w = vec![0f32; rows * cols];
        dequantize_into(ty, bytes, &mut want_w);
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            w.dequantize_row(r, &mut row);
            let d = worst(&want_w[r * cols..(r + 1) * cols], &row);
            assert!(d < 1e-6, "{ty:?} row {r}: {d}");
        }
        for m in [1, 3, 8, 19, 40] {
            let x: Vec<f32> = (0..m * cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
                .collect();
            let want = reference(&w, &x, m);
            let mut got = vec![0f32; m * rows];
            w.matmul(&x, m, &mut got);
            assert!(worst(&want, &got) < 1e-4, "{ty:?} m={m}");
            // What an AVX2-only machine runs (no AVX-512VL tiles) agrees too. Other tests
            // running meanwhile may take that path as well: it is as correct, only slower.
            super::avx2_only(true);
            w.matmul(&x, m, &mut got);
            super::avx2_only(false);
            assert!(worst(&want, &got) < 1e-4, "AVX2 only: {ty:?} m={m}");
            // The portable loop (CPUs without AVX2) agrees too.
            let n = m.min(8);
            let mut one = vec![0f32; n];
            w.row_portable(rows - 1, &x, n, &mut one);
            let last: Vec<f32> = (0..n).map(|i| want[i * rows + rows - 1]).collect();
            assert!(worst(&last, &one) < 1e-5, "portable {ty:?} m={m}");
        }
    }
    let short = QMatrix::from_blocks(GgmlType::Q4_K, 2, 256, &[0u8; 144]);
    assert!(short.is_err_and(|e| e.contains("Q4_K")));
}

/// f16 and f32 rows whose width is not a whole number of blocks: the SIMD kernels' tails.
#[test]
fn f32_rows_with_a_tail_match_the_reference() {
    let raw = include_bytes!("../../../../../tests/fixtures/quants/f16.bin");
    let (rows, cols) = (7, 37);
    let half = QMatrix::from_blocks(GgmlType::F16, rows, cols, &raw[..rows * cols * 2]).unwrap();
    let mut values = vec![0f32; rows * cols];
    dequantize_into(GgmlType::F16, &raw[..rows * cols * 2], &mut values);
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let full = QMatrix::from_blocks(GgmlType::F32, rows, cols, &bytes).unwrap();
    for (w, m) in [&half, &full]
        .into_iter()
        .flat_map(|w| [1, 3, 8, 11].map(|m| (w, m)))
    {
        let x: Vec<f32> = (0..m * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let want = reference(w, &x, m);
        let mut got = vec![0f32; m * rows];
        w.matmul(&x, m, &mut got);
        assert!(worst(&want, &got) < 1e-5, "m={m}");
    }
}
