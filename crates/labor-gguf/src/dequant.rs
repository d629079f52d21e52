//! Dequantization of the common ggml block formats to `f32` (the table in the crate docs).

use crate::{GgmlType, GgufError};

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Decodes `n_elements` elements of type `ty` from exactly the bytes they take.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, GgufError> {
    let (block, block_bytes) = match (ty, ty.block_layout()) {
        (GgmlType::Unsupported(_), _) | (_, None) => {
            return Err(GgufError::UnsupportedType { ty });
        }
        (_, Some(layout)) => layout,
    };
    if !n_elements.is_multiple_of(block) {
        return Err(GgufError::BlockMultiple {
            ty,
            n_elements,
            block,
        });
    }
    let expected = n_elements / block * block_bytes;
    if bytes.len() != expected {
        return Err(GgufError::ByteSize {
            ty,
            n_elements,
            expected,
            found: bytes.len(),
        });
    }
    let mut out = vec![0f32; n_elements];
    let blocks = bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(block));
    match ty {
        GgmlType::F32 => {
            blocks.for_each(|(b, o)| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        GgmlType::F16 => blocks.for_each(|(b, o)| o[0] = f16_at(b, 0)),
        GgmlType::BF16 => blocks.for_each(|(b, o)| {
            o[0] = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
        }),
        GgmlType::Q4_0 => blocks.for_each(|(b, o)| q4_0(b, o)),
        GgmlType::Q4_1 => blocks.for_each(|(b, o)| q4_1(b, o)),
        GgmlType::Q5_0 => blocks.for_each(|(b, o)| q5_0(b, o)),
        GgmlType::Q8_0 => blocks.for_each(|(b, o)| q8_0(b, o)),
        GgmlType::Q4_K => blocks.for_each(|(b, o)| q4_k(b, o)),
        GgmlType::Q6_K => blocks.for_each(|(b, o)| q6_k(b, o)),
        GgmlType::Unsupported(_) => unreachable!("rejected above"),
    }
    Ok(out)
}

fn q4_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        o[j] = (i32::from(qs[j] & 0xF) - 8) as f32 * d;
        o[j + 16] = (i32::from(qs[j] >> 4) - 8) as f32 * d;
    }
}

fn q4_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    for j in 0..16 {
        o[j] = f32::from(qs[j] & 0xF) * d + m;
        o[j + 16] = f32::from(qs[j] >> 4) * d + m;
    }
}

fn q5_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        o[j] = ((u32::from(qs[j] & 0xF) | h0) as i32 - 16) as f32 * d;
        o[j + 16] = ((u32::from(qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

fn q8_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in o.iter_mut().zip(&b[2..34]) {
        *o = f32::from(q as i8) * d;
    }
}

/// Scale and min of sub-block `j` (0..8) from `Q4_K`'s 12 packed bytes: for `j < 4` the low 6
/// bits of bytes `j` and `j + 4`; for `j >= 4` the nibbles of byte `j + 4` below the top 2 bits
/// of bytes `j - 4` and `j`.
fn q4_k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

fn q4_k(b: &[u8], o: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for c in 0..4 {
        let (sc0, m0) = q4_k_scale_min(2 * c, scales);
        let (sc1, m1) = q4_k_scale_min(2 * c + 1, scales);
        let (d0, min0) = (d * f32::from(sc0), dmin * f32::from(m0));
        let (d1, min1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let q = &qs[32 * c..32 * c + 32];
        let (lo, hi) = o[64 * c..64 * c + 64].split_at_mut(32);
        for l in 0..32 {
            lo[l] = d0 * f32::from(q[l] & 0xF) - min0;
            hi[l] = d1 * f32::from(q[l] >> 4) - min1;
        }
    }
}

/// `Q6_K`: per 128-element half `n`, bytes `64n..64n+64` of `ql` and `32n..32n+32` of `qh`;
/// element `128n + 32k + l` (k = 0..4, l = 0..32) has its low nibble in `ql[64n + 32(k % 2) + l]`
/// (high nibble for k >= 2) and its high 2 bits at bits `2k..2k+2` of `qh[32n + l]`.
fn q6_k(b: &[u8], o: &mut [f32]) {
    let (ql, rest) = b.split_at(128);
    let (qh, rest) = rest.split_at(64);
    let d = f16_at(rest, 16);
    let mut scale = [0f32; 16];
    for (s, &x) in scale.iter_mut().zip(&rest[..16]) {
        *s = d * f32::from(x as i8);
    }
    for n in 0..2 {
        let ql = &ql[64 * n..64 * n + 64];
        let qh = &qh[32 * n..32 * n + 32];
        let o = &mut o[128 * n..128 * n + 128];
        let scale = &scale[8 * n..8 * n + 8];
        for l in 0..32 {
            let h = qh[l];
            let q0 = i32::from((ql[l] & 0xF) | ((h & 3) << 4)) - 32;
            let q1 = i32::from((ql[l + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32;
            let q2 = i32::from((ql[l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
            let q3 = i32::from((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
            let s = l / 16;
            o[l] = scale[s] * q0 as f32;
            o[l + 32] = scale[s + 2] * q1 as f32;
            o[l + 64] = scale[s + 4] * q2 as f32;
            o[l + 96] = scale[s + 6] * q3 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // IEEE half-precision bit patterns, worked out by hand: sign | 5-bit exponent (bias 15) |
    // 10-bit mantissa.
    const H_0_125: u16 = 0x3000; // 2^-3
    const H_0_0625: u16 = 0x2C00; // 2^-4
    const H_0_03125: u16 = 0x2800; // 2^-5
    const H_0_75: u16 = 0x3A00; // 1.5 * 2^-1
    const H_1_25: u16 = 0x3D00; // 1.25 * 2^0
    const H_NEG_0_375: u16 = 0xB600; // -1.5 * 2^-2
    const H_NEG_0_5: u16 = 0xB800; // -2^-1
    const H_NEG_2: u16 = 0xC000; // -2^1

    fn h(bits: u16) -> [u8; 2] {
        bits.to_le_bytes()
    }

    fn assert_same(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "element {i}: got {g}, want {w}");
        }
    }

    #[test]
    fn f32_f16_bf16_elements() {
        let f32s = [1.5f32, -0.0, f32::MIN_POSITIVE, -123456.78];
        let bytes: Vec<u8> = f32s.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_same(&dequantize(GgmlType::F32, &bytes, 4).unwrap(), &f32s);

        // (half bits, value): 1, -2, 0x3555 = 2^-2 * (1 + 341/1024), the largest finite half,
        // the smallest subnormal 2^-24, the smallest normal 2^-14, -0 and +inf.
        let f16s: [(u16, f32); 8] = [
            (0x3C00, 1.0),
            (0xC000, -2.0),
            (0x3555, 0.25 * (1.0 + 341.0 / 1024.0)),
            (0x7BFF, 65504.0),
            (0x0001, 1.0 / 16_777_216.0),
            (0x0400, 1.0 / 16384.0),
            (0x8000, -0.0),
            (0x7C00, f32::INFINITY),
        ];
        let bytes: Vec<u8> = f16s.iter().flat_map(|(b, _)| h(*b)).collect();
        let want: Vec<f32> = f16s.iter().map(|(_, v)| *v).collect();
        assert_same(&dequantize(GgmlType::F16, &bytes, 8).unwrap(), &want);

        // bfloat16 is the top half of an f32: 0x3F80 = 1.0, 0xC040 = -3.0, 0x4049 = 3.140625,
        // 0x3E20 = 1.25 * 2^-3, 0xFF80 = -inf.
        let bf16s: [(u16, f32); 5] = [
            (0x3F80, 1.0),
            (0xC040, -3.0),
            (0x4049, 3.140625),
            (0x3E20, 0.15625),
            (0xFF80, f32::NEG_INFINITY),
        ];
        let bytes: Vec<u8> = bf16s.iter().flat_map(|(b, _)| b.to_le_bytes()).collect();
        let want: Vec<f32> = bf16s.iter().map(|(_, v)| *v).collect();
        assert_same(&dequantize(GgmlType::BF16, &bytes, 5).unwrap(), &want);
    }

    #[test]
    fn q8_0_block() {
        // d = -0.375; 32 signed quants including both extremes.
        let q: Vec<i8> = (0..32)
            .map(|i| match i {
                0 => -128,
                1 => 127,
                _ => ((i * 37) % 255 - 127) as i8,
            })
            .collect();
        let mut b = h(H_NEG_0_375).to_vec();
        b.extend(q.iter().map(|&x| x as u8));
        let want: Vec<f32> = q.iter().map(|&x| -0.375 * x as f32).collect();
        assert_same(&dequantize(GgmlType::Q8_0, &b, 32).unwrap(), &want);
    }

    #[test]
    fn q4_0_block() {
        // value = d * (q - 8); byte j holds q[j] (low nibble) and q[j + 16] (high nibble).
        let q: Vec<u8> = (0..32).map(|i| ((i * 5 + 3) % 16) as u8).collect();
        let mut b = h(H_0_75).to_vec();
        b.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
        let want: Vec<f32> = q.iter().map(|&x| 0.75 * (x as f32 - 8.0)).collect();
        assert_same(&dequantize(GgmlType::Q4_0, &b, 32).unwrap(), &want);
    }

    #[test]
    fn q4_1_block() {
        // value = d * q + m with a negative d.
        let q: Vec<u8> = (0..32).map(|i| ((i * 7 + 1) % 16) as u8).collect();
        let mut b = h(H_NEG_0_5).to_vec();
        b.extend(h(H_1_25));
        b.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
        let want: Vec<f32> = q.iter().map(|&x| -0.5 * x as f32 + 1.25).collect();
        assert_same(&dequantize(GgmlType::Q4_1, &b, 32).unwrap(), &want);
    }

    #[test]
    fn q5_0_block() {
        // 5-bit q: low 4 bits as in Q4_0, bit 4 of element i is bit i of the u32 qh.
        let q: Vec<u32> = (0..32).map(|i| (i * 11 + 5) % 32).collect();
        let qh: u32 = (0..32).map(|i| ((q[i] >> 4) & 1) << i).sum();
        assert!(
            qh & 0xFFFF != 0 && qh >> 16 != 0 && qh >> 31 == 1,
            "high bits in both halves"
        );
        let mut b = h(H_NEG_2).to_vec();
        b.extend(qh.to_le_bytes());
        b.extend((0..16).map(|j| (q[j] & 15) as u8 | (((q[j + 16] & 15) as u8) << 4)));
        let want: Vec<f32> = q.iter().map(|&x| -2.0 * (x as f32 - 16.0)).collect();
        assert_same(&dequantize(GgmlType::Q5_0, &b, 32).unwrap(), &want);
    }

    #[test]
    fn q4_k_super_block() {
        // Eight sub-blocks of 32: value = d * scale[s] * q - dmin * min[s], 6-bit scale and min.
        let scale: [u8; 8] = [1, 17, 63, 32, 5, 48, 33, 62];
        let min: [u8; 8] = [0, 63, 2, 40, 19, 7, 60, 35];
        // Packing: bytes 0..4 = scale[0..4] (6 bits) with bits 4..5 of scale[4..8] on top;
        // bytes 4..8 = min[0..4] with bits 4..5 of min[4..8] on top; bytes 8..12 = low 4 bits
        // of scale[4..8] (low nibble) and of min[4..8] (high nibble).
        let mut packed = [0u8; 12];
        for j in 0..4 {
            packed[j] = scale[j] | ((scale[j + 4] >> 4) << 6);
            packed[j + 4] = min[j] | ((min[j + 4] >> 4) << 6);
            packed[j + 8] = (scale[j + 4] & 15) | ((min[j + 4] & 15) << 4);
        }
        assert!(
            packed[..8].iter().any(|&x| x >> 6 != 0),
            "high bits of scales 4..8 used"
        );
        let q: Vec<u8> = (0..256).map(|i| ((i * 13 + i / 7) % 16) as u8).collect();
        let mut b = h(H_0_125).to_vec();
        b.extend(h(H_0_0625));
        b.extend(packed);
        // Each 64-element chunk: byte l = element l (low nibble) and element 32 + l (high).
        for c in 0..4 {
            b.extend((0..32).map(|l| q[64 * c + l] | (q[64 * c + 32 + l] << 4)));
        }
        assert_eq!(b.len(), 144);
        let want: Vec<f32> = (0..256)
            .map(|i| 0.125 * scale[i / 32] as f32 * q[i] as f32 - 0.0625 * min[i / 32] as f32)
            .collect();
        assert_same(&dequantize(GgmlType::Q4_K, &b, 256).unwrap(), &want);
    }

    #[test]
    fn q6_k_super_block() {
        // value = d * scale[i / 16] * (q - 32), signed 8-bit scales, 6-bit q.
        let scale: [i8; 16] = [
            -128, -37, -1, 0, 1, 5, 127, -64, 12, -12, 100, -100, 3, -3, 77, -77,
        ];
        let q: Vec<u8> = (0..256).map(|i| ((i * 29 + i / 5) % 64) as u8).collect();
        // Per half n (128 elements) and l in 0..32: ql[64n + l] = low nibbles of elements
        // 128n + l (low) and 128n + 64 + l (high); ql[64n + 32 + l] likewise for elements
        // 128n + 32 + l and 128n + 96 + l; qh[32n + l] = top 2 bits of elements 128n + l,
        // + 32 + l, + 64 + l, + 96 + l at bits 0, 2, 4, 6.
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for n in 0..2 {
            let e = |k: usize, l: usize| q[128 * n + 32 * k + l];
            for l in 0..32 {
                ql[64 * n + l] = (e(0, l) & 15) | ((e(2, l) & 15) << 4);
                ql[64 * n + 32 + l] = (e(1, l) & 15) | ((e(3, l) & 15) << 4);
                qh[32 * n + l] = (e(0, l) >> 4)
                    | ((e(1, l) >> 4) << 2)
                    | ((e(2, l) >> 4) << 4)
                    | ((e(3, l) >> 4) << 6);
            }
        }
        let mut b = ql.to_vec();
        b.extend(qh);
        b.extend(scale.iter().map(|&s| s as u8));
        b.extend(h(H_0_03125));
        assert_eq!(b.len(), 210);
        let want: Vec<f32> = (0..256)
            .map(|i| 0.03125 * scale[i / 16] as f32 * (q[i] as f32 - 32.0))
            .collect();
        assert_same(&dequantize(GgmlType::Q6_K, &b, 256).unwrap(), &want);
    }

    #[test]
    fn dequantize_checks_sizes_and_types() {
        let e = dequantize(GgmlType::Q4_0, &[0; 17], 32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("18 bytes") && e.contains("found 17"), "{e}");
        let e = dequantize(GgmlType::Q8_0, &[0; 34], 33)
            .unwrap_err()
            .to_string();
        assert!(e.contains("blocks of 32") && e.contains("33"), "{e}");
        let e = dequantize(GgmlType::from_id(16), &[0; 66], 256)
            .unwrap_err()
            .to_string();
        assert!(e.contains("IQ2_XXS (ggml type 16)"), "{e}");
        let e = dequantize(GgmlType::from_id(99), &[], 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ggml type 99 (unknown)"), "{e}");
        for id in [0, 1, 2, 3, 6, 8, 12, 14, 30] {
            let ty = GgmlType::from_id(id);
            assert!(ty.is_supported() && ty.id() == id && ty.name().is_some());
        }
        assert_eq!(GgmlType::Q4_K.byte_size(512), Some(288));
    }
}
