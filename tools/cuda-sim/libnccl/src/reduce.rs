//! The arithmetic of a collective: element types and reductions, always folded in rank order
//! (rank 0 ⊕ rank 1 ⊕ … ⊕ rank N−1), so a result never depends on which rank arrived first.
//! f32 and f64 accumulate in their own type; f16 and bf16 accumulate in f32 and round once at the end;
//! integers wrap.

/// NCCL's `ncclDataType_t` values (NCCL 2.24+ numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    I8,
    U8,
    I32,
    U32,
    I64,
    U64,
    F16,
    F32,
    F64,
    BF16,
}

impl DType {
    pub fn from_raw(v: u32) -> Option<DType> {
        Some(match v {
            0 => DType::I8,
            1 => DType::U8,
            2 => DType::I32,
            3 => DType::U32,
            4 => DType::I64,
            5 => DType::U64,
            6 => DType::F16,
            7 => DType::F32,
            8 => DType::F64,
            9 => DType::BF16,
            _ => return None,
        })
    }

    pub fn raw(self) -> u32 {
        match self {
            DType::I8 => 0,
            DType::U8 => 1,
            DType::I32 => 2,
            DType::U32 => 3,
            DType::I64 => 4,
            DType::U64 => 5,
            DType::F16 => 6,
            DType::F32 => 7,
            DType::F64 => 8,
            DType::BF16 => 9,
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }
}

/// NCCL's `ncclRedOp_t` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedOp {
    Sum,
    Prod,
    Max,
    Min,
    Avg,
}

impl RedOp {
    pub fn from_raw(v: u32) -> Option<RedOp> {
        Some(match v {
            0 => RedOp::Sum,
            1 => RedOp::Prod,
            2 => RedOp::Max,
            3 => RedOp::Min,
            4 => RedOp::Avg,
            _ => return None,
        })
    }

    pub fn raw(self) -> u32 {
        match self {
            RedOp::Sum => 0,
            RedOp::Prod => 1,
            RedOp::Max => 2,
            RedOp::Min => 3,
            RedOp::Avg => 4,
        }
    }
}

fn fold_f64(acc: f64, x: f64, op: RedOp) -> f64 {
    match op {
        RedOp::Sum | RedOp::Avg => acc + x,
        RedOp::Prod => acc * x,
        RedOp::Max => acc.max(x),
        RedOp::Min => acc.min(x),
    }
}

fn fold_f32(acc: f32, x: f32, op: RedOp) -> f32 {
    match op {
        RedOp::Sum | RedOp::Avg => acc + x,
        RedOp::Prod => acc * x,
        RedOp::Max => acc.max(x),
        RedOp::Min => acc.min(x),
    }
}

fn fold_i128(acc: i128, x: i128, op: RedOp) -> i128 {
    match op {
        RedOp::Sum | RedOp::Avg => acc.wrapping_add(x),
        RedOp::Prod => acc.wrapping_mul(x),
        RedOp::Max => acc.max(x),
        RedOp::Min => acc.min(x),
    }
}

/// Reduce the ranks' buffers (`inputs[r]` is rank r's, all the same length) element by element in rank order.
pub fn reduce(inputs: &[&[u8]], dtype: DType, op: RedOp) -> Vec<u8> {
    let n = inputs.len();
    let len = inputs.first().map_or(0, |b| b.len());
    let w = dtype.bytes();
    let mut out = Vec::with_capacity(len);
    for e in 0..len / w {
        let at = |r: usize| &inputs[r][e * w..(e + 1) * w];
        match dtype {
            DType::F32 => {
                let get = |r| f32::from_le_bytes(at(r).try_into().unwrap());
                let mut acc = get(0);
                for r in 1..n {
                    acc = fold_f32(acc, get(r), op);
                }
                if op == RedOp::Avg {
                    acc /= n as f32;
                }
                out.extend_from_slice(&acc.to_le_bytes());
            }
            DType::F16 | DType::BF16 => {
                let get = |r: usize| {
                    let b = u16::from_le_bytes(at(r).try_into().unwrap());
                    if dtype == DType::F16 {
                        half::f16::from_bits(b).to_f32()
                    } else {
                        half::bf16::from_bits(b).to_f32()
                    }
                };
                let mut acc = get(0);
                for r in 1..n {
                    acc = fold_f32(acc, get(r), op);
                }
                if op == RedOp::Avg {
                    acc /= n as f32;
                }
                let bits = if dtype == DType::F16 {
                    half::f16::from_f32(acc).to_bits()
                } else {
                    half::bf16::from_f32(acc).to_bits()
                };
                out.extend_from_slice(&bits.to_le_bytes());
            }
            DType::F64 => {
                let get = |r| f64::from_le_bytes(at(r).try_into().unwrap());
                let mut acc = get(0);
                for r in 1..n {
                    acc = fold_f64(acc, get(r), op);
                }
                if op == RedOp::Avg {
                    acc /= n as f64;
                }
                out.extend_from_slice(&acc.to_le_bytes());
            }
            _ => {
                let get = |r: usize| -> i128 {
                    let b = at(r);
                    match dtype {
                        DType::I8 => b[0] as i8 as i128,
                        DType::U8 => b[0] as i128,
                        DType::I32 => i32::from_le_bytes(b.try_into().unwrap()) as i128,
                        DType::U32 => u32::from_le_bytes(b.try_into().unwrap()) as i128,
                        DType::I64 => i64::from_le_bytes(b.try_into().unwrap()) as i128,
                        _ => u64::from_le_bytes(b.try_into().unwrap()) as i128,
                    }
                };
                let mut acc = get(0);
                for r in 1..n {
                    acc = fold_i128(acc, get(r), op);
                }
                if op == RedOp::Avg {
                    acc /= n as i128;
                }
                // Truncation to the element width is the wrapping NCCL's integer sums have.
                out.extend_from_slice(&acc.to_le_bytes()[..w]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn f32_sums_fold_in_rank_order() {
        // (1e8 + 1) + (−1e8) = 0 in f32 (the 1 is lost first); a different order would give 1.
        let (a, b, c) = (f32s(&[1e8, 2.0]), f32s(&[1.0, 3.0]), f32s(&[-1e8, 4.0]));
        let out = reduce(&[&a, &b, &c], DType::F32, RedOp::Sum);
        let got: Vec<f32> = out.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(got, vec![((1e8f32 + 1.0) - 1e8), 9.0]);
        assert_eq!(got[0], 0.0);
        let out = reduce(&[&c, &a, &b], DType::F32, RedOp::Sum);
        assert_eq!(f32::from_le_bytes(out[..4].try_into().unwrap()), 1.0);
    }

    #[test]
    fn bf16_accumulates_in_f32_and_rounds_once() {
        let enc = |v: &[f32]| -> Vec<u8> {
            v.iter().flat_map(|&x| half::bf16::from_f32(x).to_bits().to_le_bytes()).collect()
        };
        // 256 + 1 + 1: bf16 has 8 significant bits, so folding in bf16 would give 256; in f32, 258 (exact in bf16).
        let (a, b, c) = (enc(&[256.0]), enc(&[1.0]), enc(&[1.0]));
        let out = reduce(&[&a, &b, &c], DType::BF16, RedOp::Sum);
        assert_eq!(half::bf16::from_bits(u16::from_le_bytes([out[0], out[1]])).to_f32(), 258.0);
    }

    #[test]
    fn other_ops_and_types() {
        let i = |v: &[i32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (a, b) = (i(&[3, -7, i32::MAX]), i(&[5, 2, 1]));
        let dec = |o: Vec<u8>| -> Vec<i32> { o.chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect() };
        assert_eq!(dec(reduce(&[&a, &b], DType::I32, RedOp::Sum)), vec![8, -5, i32::MIN]);
        assert_eq!(dec(reduce(&[&a, &b], DType::I32, RedOp::Max)), vec![5, 2, i32::MAX]);
        assert_eq!(dec(reduce(&[&a, &b], DType::I32, RedOp::Min)), vec![3, -7, 1]);
        assert_eq!(dec(reduce(&[&a, &b], DType::I32, RedOp::Prod)), vec![15, -14, i32::MAX]);
        let (x, y) = (f32s(&[1.0, 3.0]), f32s(&[2.0, 6.0]));
        let out = reduce(&[&x, &y], DType::F32, RedOp::Avg);
        assert_eq!(out, f32s(&[1.5, 4.5]));
        let d = |v: f64| v.to_le_bytes().to_vec();
        assert_eq!(reduce(&[&d(0.1), &d(0.2)], DType::F64, RedOp::Sum), d(0.1 + 0.2));
    }
}
