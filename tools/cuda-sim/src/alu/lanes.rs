//! `eval_lanes`: one op over the active lanes of a warp. Matches on the op once per warp-instruction and loops over
//! the lanes inside each arm; the common forms (32/64-bit integer arithmetic, f32 round-to-nearest arithmetic,
//! comparisons, moves) have their own loops, everything else runs `eval` per lane. Results are bit-identical to
//! `eval` (the unit tests compare the two on random and special operands).

use super::*;

/// Warp width `eval_lanes` works on.
pub const LANES: usize = 32;

/// `for each lane l in mask: d[l] = f(a[l], b[l], c[l])`, with the full mask as a plain counted loop.
macro_rules! each {
    ($mask:expr, $d:expr, $a:expr, $b:expr, $c:expr, |$x:ident, $y:ident, $z:ident| $body:expr) => {{
        let (d, a, b, c, mask) = ($d, $a, $b, $c, $mask);
        #[allow(unused_variables)]
        let f = |$x: u64, $y: u64, $z: u64| -> u64 { $body };
        if mask == u32::MAX {
            for l in 0..LANES {
                *d.add(l) = f(*a.add(l), *b.add(l), *c.add(l));
            }
        } else {
            let mut m = mask;
            while m != 0 {
                let l = m.trailing_zeros() as usize;
                m &= m - 1;
                *d.add(l) = f(*a.add(l), *b.add(l), *c.add(l));
            }
        }
    }};
}

/// An f32 op over the lanes: `$x, $y, $z` are the operands as f32 (`.ftz`: subnormals flushed), `$body` the f32
/// result (NaN made canonical, `.ftz` flushing it). The loop is specialised on `ftz`, so the common non-`.ftz`
/// form has no subnormal tests.
macro_rules! each_f32 {
    ($ftz:expr, $mask:expr, $d:expr, $a:expr, $b:expr, $c:expr, |$x:ident, $y:ident, $z:ident| $body:expr) => {{
        if $ftz {
            each!($mask, $d, $a, $b, $c, |p, q, r| {
                #[allow(unused_variables)]
                let ($x, $y, $z) = (f32v(p, true), f32v(q, true), f32v(r, true));
                f32b($body, true)
            })
        } else {
            each!($mask, $d, $a, $b, $c, |p, q, r| {
                #[allow(unused_variables)]
                let ($x, $y, $z) = (f32::from_bits(p as u32), f32::from_bits(q as u32), f32::from_bits(r as u32));
                let v: f32 = $body;
                if v.is_nan() {
                    F32_QNAN
                } else {
                    v.to_bits() as u64
                }
            })
        }
    }};
}

/// `d[l] = eval(op, a[l], b[l], c[l])` for every lane `l` whose bit is set in `mask`; other lanes of `d` are left
/// as they were.
///
/// # Safety
/// `d`, `a`, `b` and `c` must each address 32 valid u64 (`d` writable). `d` may be the same array as a source
/// (each lane reads its sources before it writes its destination), but must not partially overlap one.
pub unsafe fn eval_lanes(op: &AluOp, d: *mut u64, a: *const u64, b: *const u64, c: *const u64, mask: u32) {
    match *op {
        AluOp::Mov { bits: 1 } => each!(mask, d, a, b, c, |x, y, z| (x != 0) as u64),
        AluOp::Mov { bits: 64 } => each!(mask, d, a, b, c, |x, y, z| x),
        AluOp::Mov { bits } => {
            let m = mask_bits(bits as u32);
            each!(mask, d, a, b, c, |x, y, z| x & m)
        }
        AluOp::IAdd { ty, sat: false } if tbits(ty) == 32 => {
            each!(mask, d, a, b, c, |x, y, z| (x as u32).wrapping_add(y as u32) as u64)
        }
        AluOp::IAdd { ty, sat: false } if tbits(ty) == 64 => each!(mask, d, a, b, c, |x, y, z| x.wrapping_add(y)),
        AluOp::ISub { ty, sat: false } if tbits(ty) == 32 => {
            each!(mask, d, a, b, c, |x, y, z| (x as u32).wrapping_sub(y as u32) as u64)
        }
        AluOp::ISub { ty, sat: false } if tbits(ty) == 64 => each!(mask, d, a, b, c, |x, y, z| x.wrapping_sub(y)),
        AluOp::IMul { ty, mode: MulMode::Lo } if tbits(ty) == 32 => {
            each!(mask, d, a, b, c, |x, y, z| (x as u32).wrapping_mul(y as u32) as u64)
        }
        AluOp::IMul { ty, mode: MulMode::Lo } if tbits(ty) == 64 => {
            each!(mask, d, a, b, c, |x, y, z| x.wrapping_mul(y))
        }
        AluOp::IMul { ty: Ty::S32, mode: MulMode::Wide } => {
            each!(mask, d, a, b, c, |x, y, z| (x as u32 as i32 as i64).wrapping_mul(y as u32 as i32 as i64) as u64)
        }
        AluOp::IMul { ty: Ty::U32, mode: MulMode::Wide } => {
            each!(mask, d, a, b, c, |x, y, z| (x as u32 as u64) * (y as u32 as u64))
        }
        AluOp::IMad { ty, mode: MulMode::Lo, sat: false } if tbits(ty) == 32 => {
            each!(mask, d, a, b, c, |x, y, z| (x as u32).wrapping_mul(y as u32).wrapping_add(z as u32) as u64)
        }
        AluOp::IMad { ty, mode: MulMode::Lo, sat: false } if tbits(ty) == 64 => {
            each!(mask, d, a, b, c, |x, y, z| x.wrapping_mul(y).wrapping_add(z))
        }
        AluOp::IMad { ty: Ty::S32, mode: MulMode::Wide, sat: false } => each!(mask, d, a, b, c, |x, y, z| {
            ((x as u32 as i32 as i64).wrapping_mul(y as u32 as i32 as i64) as u64).wrapping_add(z)
        }),
        AluOp::IMad { ty: Ty::U32, mode: MulMode::Wide, sat: false } => {
            each!(mask, d, a, b, c, |x, y, z| ((x as u32 as u64) * (y as u32 as u64)).wrapping_add(z))
        }
        AluOp::IDiv { ty: Ty::S32 } => each!(mask, d, a, b, c, |x, y, z| {
            let (x, y) = (x as u32 as i32, y as u32 as i32);
            if y == 0 {
                0xFFFF_FFFF
            } else {
                x.wrapping_div(y) as u32 as u64
            }
        }),
        AluOp::IDiv { ty: Ty::U32 } => {
            each!(mask, d, a, b, c, |x, y, z| (x as u32).checked_div(y as u32).map_or(0xFFFF_FFFF, u64::from))
        }
        AluOp::IRem { ty: Ty::S32 } => each!(mask, d, a, b, c, |x, y, z| {
            let (x, y) = (x as u32 as i32, y as u32 as i32);
            if y == 0 {
                x as u32 as u64
            } else {
                x.wrapping_rem(y) as u32 as u64
            }
        }),
        AluOp::IRem { ty: Ty::U32 } => {
            each!(mask, d, a, b, c, |x, y, z| (x as u32).checked_rem(y as u32).unwrap_or(x as u32) as u64)
        }
        AluOp::IMin { ty: Ty::S32 } => {
            each!(mask, d, a, b, c, |x, y, z| (x as u32 as i32).min(y as u32 as i32) as u32 as u64)
        }
        AluOp::IMax { ty: Ty::S32 } => {
            each!(mask, d, a, b, c, |x, y, z| (x as u32 as i32).max(y as u32 as i32) as u32 as u64)
        }
        AluOp::IMin { ty: Ty::U32 | Ty::B32 } => each!(mask, d, a, b, c, |x, y, z| (x as u32).min(y as u32) as u64),
        AluOp::IMax { ty: Ty::U32 | Ty::B32 } => each!(mask, d, a, b, c, |x, y, z| (x as u32).max(y as u32) as u64),
        AluOp::And { bits } => {
            let m = mask_bits(bits as u32);
            each!(mask, d, a, b, c, |x, y, z| x & y & m)
        }
        AluOp::Or { bits } => {
            let m = mask_bits(bits as u32);
            each!(mask, d, a, b, c, |x, y, z| (x | y) & m)
        }
        AluOp::Xor { bits } => {
            let m = mask_bits(bits as u32);
            each!(mask, d, a, b, c, |x, y, z| (x ^ y) & m)
        }
        AluOp::Not { bits } => {
            let m = mask_bits(bits as u32);
            each!(mask, d, a, b, c, |x, y, z| !x & m)
        }
        AluOp::Shl { bits: 32 } => {
            each!(mask, d, a, b, c, |x, y, z| if y & 0xFFFF_FFFF >= 32 { 0 } else { ((x as u32) << (y as u32)) as u64 })
        }
        AluOp::Shl { bits: 64 } => {
            each!(mask, d, a, b, c, |x, y, z| if y & 0xFFFF_FFFF >= 64 { 0 } else { x << (y as u32) })
        }
        AluOp::Shr { ty: Ty::S32 } => {
            each!(mask, d, a, b, c, |x, y, z| ((x as u32 as i32) >> (y & 0xFFFF_FFFF).min(31) as u32) as u32 as u64)
        }
        AluOp::Shr { ty: Ty::U32 | Ty::B32 } => {
            each!(mask, d, a, b, c, |x, y, z| if y & 0xFFFF_FFFF >= 32 { 0 } else { ((x as u32) >> (y as u32)) as u64 })
        }
        AluOp::Shr { ty: Ty::S64 } => {
            each!(mask, d, a, b, c, |x, y, z| ((x as i64) >> (y & 0xFFFF_FFFF).min(63) as u32) as u64)
        }
        AluOp::Shr { ty: Ty::U64 | Ty::B64 } => {
            each!(mask, d, a, b, c, |x, y, z| if y & 0xFFFF_FFFF >= 64 { 0 } else { x >> (y as u32) })
        }
        AluOp::Selp { bits } => {
            let m = mask_bits(bits as u32);
            each!(mask, d, a, b, c, |x, y, z| if z != 0 { x & m } else { y & m })
        }
        AluOp::Setp { cmp, ty, ftz, comb, neg_c, invert } => {
            let comb = |r: bool, z: u64| -> u64 {
                let r = r ^ invert;
                let p = (z != 0) ^ neg_c;
                (match comb {
                    None => r,
                    Some(BoolOp::And) => r && p,
                    Some(BoolOp::Or) => r || p,
                    Some(BoolOp::Xor) => r ^ p,
                }) as u64
            };
            match ty {
                Ty::F32 => each!(mask, d, a, b, c, |x, y, z| comb(fcmp32(cmp, f32v(x, ftz), f32v(y, ftz)), z)),
                Ty::S32 => {
                    each!(mask, d, a, b, c, |x, y, z| comb(
                        icmp64(cmp, x as u32 as i32 as i64, y as u32 as i32 as i64),
                        z
                    ))
                }
                Ty::U32 | Ty::B32 => {
                    each!(mask, d, a, b, c, |x, y, z| comb(icmp64(cmp, x as u32 as i64, y as u32 as i64), z))
                }
                Ty::S64 => each!(mask, d, a, b, c, |x, y, z| comb(icmp64(cmp, x as i64, y as i64), z)),
                _ => each!(mask, d, a, b, c, |x, y, z| eval(op, x, y, z)),
            }
        }
        AluOp::Cvt { dst, src, rnd: None, int_rnd: false, sat: false, ftz: _ }
            if !dst.is_float() && !src.is_float() && dst != Ty::Pred && src != Ty::Pred =>
        {
            let (sbits, dm) = (tbits(src), mask_bits(tbits(dst)));
            if src.is_signed() {
                each!(mask, d, a, b, c, |x, y, z| (sext(x, sbits) as u64) & dm)
            } else {
                let sm = mask_bits(sbits);
                each!(mask, d, a, b, c, |x, y, z| x & sm & dm)
            }
        }
        AluOp::FAdd { ty: Ty::F32, rnd: Rnd::Rn, ftz, sat: false } => {
            each_f32!(ftz, mask, d, a, b, c, |x, y, z| x + y)
        }
        AluOp::FSub { ty: Ty::F32, rnd: Rnd::Rn, ftz, sat: false } => {
            each_f32!(ftz, mask, d, a, b, c, |x, y, z| x - y)
        }
        AluOp::FMul { ty: Ty::F32, rnd: Rnd::Rn, ftz, sat: false } => {
            each_f32!(ftz, mask, d, a, b, c, |x, y, z| x * y)
        }
        AluOp::Fma { ty: Ty::F32, rnd: Rnd::Rn, ftz, sat: false } => fma_f32_lanes(d, a, b, c, mask, ftz),
        AluOp::FNeg { ty: Ty::F32, ftz } => {
            each!(mask, d, a, b, c, |x, y, z| (f32v(x, ftz).to_bits() ^ 0x8000_0000) as u64)
        }
        AluOp::FAbs { ty: Ty::F32, ftz } => {
            each!(mask, d, a, b, c, |x, y, z| (f32v(x, ftz).to_bits() & 0x7FFF_FFFF) as u64)
        }
        _ => each!(mask, d, a, b, c, |x, y, z| eval(op, x, y, z)),
    }
}

fn mask_bits(bits: u32) -> u64 {
    mask(bits)
}

/// `cmp` on two f32 (as `fcmp` does on their exact f64 values).
#[inline(always)]
fn fcmp32(cmp: Cmp, x: f32, y: f32) -> bool {
    let un = x.is_nan() || y.is_nan();
    match cmp {
        Cmp::Eq => x == y,
        Cmp::Ne => !un && x != y,
        Cmp::Lt | Cmp::Lo => x < y,
        Cmp::Le | Cmp::Ls => x <= y,
        Cmp::Gt | Cmp::Hi => x > y,
        Cmp::Ge | Cmp::Hs => x >= y,
        Cmp::Equ => un || x == y,
        Cmp::Neu => un || x != y,
        Cmp::Ltu => un || x < y,
        Cmp::Leu => un || x <= y,
        Cmp::Gtu => un || x > y,
        Cmp::Geu => un || x >= y,
        Cmp::Num => !un,
        Cmp::Nan => un,
    }
}

/// `cmp` on integers already extended to i64 per their type (the unsigned `lo/ls/hi/hs` forms compare the
/// zero-extended values, which callers pass for unsigned types; for `.s32` the operands are re-read unsigned).
#[inline(always)]
fn icmp64(cmp: Cmp, x: i64, y: i64) -> bool {
    match cmp {
        Cmp::Eq | Cmp::Equ => x == y,
        Cmp::Ne | Cmp::Neu => x != y,
        Cmp::Lt | Cmp::Ltu => x < y,
        Cmp::Le | Cmp::Leu => x <= y,
        Cmp::Gt | Cmp::Gtu => x > y,
        Cmp::Ge | Cmp::Geu => x >= y,
        // unsigned comparisons of the low `bits` (the callers' i64 values carry the type's bits)
        Cmp::Lo => (x as u64) < (y as u64),
        Cmp::Ls => (x as u64) <= (y as u64),
        Cmp::Hi => (x as u64) > (y as u64),
        Cmp::Hs => (x as u64) >= (y as u64),
        Cmp::Num => true,
        Cmp::Nan => false,
    }
}

/// `fma.rn(.ftz).f32` over the lanes, with the hardware fused multiply-add where the host has one.
#[inline]
unsafe fn fma_f32_lanes(d: *mut u64, a: *const u64, b: *const u64, c: *const u64, mask: u32, ftz: bool) {
    #[cfg(all(target_arch = "x86_64", not(target_feature = "fma")))]
    {
        if std::arch::is_x86_feature_detected!("fma") {
            return fma_f32_lanes_hw(d, a, b, c, mask, ftz);
        }
    }
    fma_f32_lanes_sw(d, a, b, c, mask, ftz)
}

#[inline(always)]
unsafe fn fma_f32_lanes_sw(d: *mut u64, a: *const u64, b: *const u64, c: *const u64, mask: u32, ftz: bool) {
    each_f32!(ftz, mask, d, a, b, c, |x, y, z| x.mul_add(y, z))
}

#[cfg(all(target_arch = "x86_64", not(target_feature = "fma")))]
#[target_feature(enable = "fma")]
unsafe fn fma_f32_lanes_hw(d: *mut u64, a: *const u64, b: *const u64, c: *const u64, mask: u32, ftz: bool) {
    fma_f32_lanes_sw(d, a, b, c, mask, ftz)
}
