//! One test (at least) per opcode form, against hand-computed results.

use super::*;

fn f(x: f32) -> u64 {
    x.to_bits() as u64
}
fn d(x: f64) -> u64 {
    x.to_bits()
}
fn ff(b: u64) -> f32 {
    f32::from_bits(b as u32)
}
fn p2(e: i32) -> f32 {
    2f32.powi(e)
}
fn p2d(e: i32) -> f64 {
    2f64.powi(e)
}

const F32: Ty = Ty::F32;
const F64: Ty = Ty::F64;

fn fma32(rnd: Rnd) -> AluOp {
    AluOp::Fma { ty: F32, rnd, ftz: false, sat: false }
}
fn add32(rnd: Rnd) -> AluOp {
    AluOp::FAdd { ty: F32, rnd, ftz: false, sat: false }
}
fn mul32(rnd: Rnd) -> AluOp {
    AluOp::FMul { ty: F32, rnd, ftz: false, sat: false }
}
fn cvt(dst: Ty, src: Ty, rnd: Option<Rnd>, int_rnd: bool) -> AluOp {
    AluOp::Cvt { dst, src, rnd, int_rnd, sat: false, ftz: false }
}
fn setp(cmp: Cmp, ty: Ty) -> AluOp {
    AluOp::Setp { cmp, ty, ftz: false, comb: None, neg_c: false, invert: false }
}
fn is_nan32(b: u64) -> bool {
    ff(b).is_nan()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self) -> f32 {
        // finite values over a wide exponent range
        let b = self.next() as u32;
        let e = 100 + (b >> 24) % 56;
        f32::from_bits((b & 0x807F_FFFF) | (e << 23))
    }
}

#[test]
fn fma_directed_rounding_f32() {
    let a = f32::from_bits(0x3F80_0001); // 1 + 2^-23; a*a = 1 + 2^-22 + 2^-46
    assert_eq!(eval(&fma32(Rnd::Rn), f(a), f(a), f(0.0)), 0x3F80_0002);
    assert_eq!(eval(&fma32(Rnd::Rz), f(a), f(a), f(0.0)), 0x3F80_0002);
    assert_eq!(eval(&fma32(Rnd::Rm), f(a), f(a), f(0.0)), 0x3F80_0002);
    assert_eq!(eval(&fma32(Rnd::Rp), f(a), f(a), f(0.0)), 0x3F80_0003);
    // negative: rm goes away from zero
    assert_eq!(eval(&fma32(Rnd::Rm), f(-a), f(a), f(0.0)), 0xBF80_0003);
    assert_eq!(eval(&fma32(Rnd::Rp), f(-a), f(a), f(0.0)), 0xBF80_0002);
    assert_eq!(eval(&fma32(Rnd::Rz), f(-a), f(a), f(0.0)), 0xBF80_0002);
    // 1*1 - 2^-60: the f64 sum rounds to 1.0, the error term decides the direction
    let t = f(-p2(-60));
    assert_eq!(eval(&fma32(Rnd::Rn), f(1.0), f(1.0), t), f(1.0));
    assert_eq!(eval(&fma32(Rnd::Rp), f(1.0), f(1.0), t), f(1.0));
    assert_eq!(eval(&fma32(Rnd::Rm), f(1.0), f(1.0), t), 0x3F7F_FFFF);
    assert_eq!(eval(&fma32(Rnd::Rz), f(1.0), f(1.0), t), 0x3F7F_FFFF);
    assert_eq!(simt_flops(&fma32(Rnd::Rn)), 2);
}

#[test]
fn fma_directed_rounding_property() {
    let mut r = Rng(0x1234_5678_9ABC_DEF1);
    for _ in 0..20000 {
        let (a, b, c) = (r.f32(), r.f32(), r.f32());
        let rm = ff(eval(&fma32(Rnd::Rm), f(a), f(b), f(c)));
        let rp = ff(eval(&fma32(Rnd::Rp), f(a), f(b), f(c)));
        let rn = ff(eval(&fma32(Rnd::Rn), f(a), f(b), f(c)));
        let rz = ff(eval(&fma32(Rnd::Rz), f(a), f(b), f(c)));
        assert!(rm <= rp, "{a} {b} {c}");
        assert!(rn == rm || rn == rp);
        assert!(rz == if rn >= 0.0 { rm } else { rp } || rm == rp);
        if rm != rp && rm.is_finite() && rp.is_finite() {
            assert_eq!(rp, f32::from_bits(if rm >= 0.0 { rm.to_bits() + 1 } else { rm.to_bits() - 1 }));
        }
        // the exact value lies in [rm, rp]: check with f64 (exact product) and a second error term
        let p = a as f64 * b as f64;
        let (s, e) = two_sum(p, c as f64);
        assert!(rm as f64 <= s && s <= rp as f64 || (rm as f64 == s && e >= 0.0) || (rp as f64 == s && e <= 0.0));
    }
}

#[test]
fn add_mul_directed_f32() {
    assert_eq!(eval(&add32(Rnd::Rm), f(1.0), f(p2(-30)), 0), f(1.0));
    assert_eq!(eval(&add32(Rnd::Rz), f(1.0), f(p2(-30)), 0), f(1.0));
    assert_eq!(eval(&add32(Rnd::Rp), f(1.0), f(p2(-30)), 0), 0x3F80_0001);
    // ties to even
    assert_eq!(eval(&add32(Rnd::Rn), f(1.0), f(p2(-24)), 0), f(1.0));
    assert_eq!(eval(&add32(Rnd::Rn), 0x3F80_0001, f(p2(-24)), 0), 0x3F80_0002);
    let sub = AluOp::FSub { ty: F32, rnd: Rnd::Rm, ftz: false, sat: false };
    assert_eq!(eval(&sub, f(1.0), f(p2(-30)), 0), 0x3F7F_FFFF);
    let a = 0x3F80_0001;
    assert_eq!(eval(&mul32(Rnd::Rn), a, a, 0), 0x3F80_0002);
    assert_eq!(eval(&mul32(Rnd::Rz), a, a, 0), 0x3F80_0002);
    assert_eq!(eval(&mul32(Rnd::Rp), a, a, 0), 0x3F80_0003);
    // overflow: rz saturates at MAX, rn goes to inf
    assert_eq!(eval(&mul32(Rnd::Rz), f(f32::MAX), f(2.0), 0), f(f32::MAX));
    assert_eq!(eval(&mul32(Rnd::Rn), f(f32::MAX), f(2.0), 0), f(f32::INFINITY));
    assert_eq!(eval(&mul32(Rnd::Rm), f(f32::MAX), f(-2.0), 0), f(f32::NEG_INFINITY));
    assert_eq!(eval(&mul32(Rnd::Rp), f(f32::MAX), f(-2.0), 0), f(-f32::MAX));
    // NaN results are canonical
    assert_eq!(eval(&add32(Rnd::Rn), f(f32::INFINITY), f(f32::NEG_INFINITY), 0), 0x7FFF_FFFF);
    assert_eq!(simt_flops(&add32(Rnd::Rn)), 1);
}

#[test]
fn directed_f64() {
    let add = |rnd| AluOp::FAdd { ty: F64, rnd, ftz: false, sat: false };
    let mul = |rnd| AluOp::FMul { ty: F64, rnd, ftz: false, sat: false };
    let fma = |rnd| AluOp::Fma { ty: F64, rnd, ftz: false, sat: false };
    let up1 = 1.0 + p2d(-52);
    assert_eq!(eval(&add(Rnd::Rp), d(1.0), d(p2d(-80)), 0), d(up1));
    assert_eq!(eval(&add(Rnd::Rm), d(1.0), d(p2d(-80)), 0), d(1.0));
    assert_eq!(eval(&add(Rnd::Rn), d(1.0), d(2.0), 0), d(3.0));
    // (1+2^-52)^2 = 1 + 2^-51 + 2^-104
    assert_eq!(eval(&mul(Rnd::Rm), d(up1), d(up1), 0), d(1.0 + p2d(-51)));
    assert_eq!(eval(&mul(Rnd::Rp), d(up1), d(up1), 0), d(1.0 + p2d(-51) + p2d(-52)));
    assert_eq!(eval(&mul(Rnd::Rn), d(up1), d(up1), 0), d(1.0 + p2d(-51)));
    assert_eq!(eval(&fma(Rnd::Rm), d(1.0), d(1.0), d(-p2d(-80))), d(1.0 - p2d(-53)));
    assert_eq!(eval(&fma(Rnd::Rp), d(1.0), d(1.0), d(-p2d(-80))), d(1.0));
    assert_eq!(eval(&fma(Rnd::Rz), d(up1), d(up1), d(0.0)), d(1.0 + p2d(-51)));
    assert_eq!(eval(&fma(Rnd::Rn), d(2.0), d(3.0), d(1.0)), d(7.0));
}

#[test]
fn float_division_rcp_sqrt() {
    let div = |ty, r| AluOp::FDiv { ty, kind: DivKind::Ieee(r), ftz: false };
    assert_eq!(eval(&div(F32, Rnd::Rn), f(1.0), f(3.0), 0), 0x3EAA_AAAB);
    assert_eq!(eval(&div(F32, Rnd::Rz), f(1.0), f(3.0), 0), 0x3EAA_AAAA);
    assert_eq!(eval(&div(F32, Rnd::Rm), f(1.0), f(3.0), 0), 0x3EAA_AAAA);
    assert_eq!(eval(&div(F32, Rnd::Rp), f(1.0), f(3.0), 0), 0x3EAA_AAAB);
    assert_eq!(eval(&div(F32, Rnd::Rm), f(-1.0), f(3.0), 0), 0xBEAA_AAAB);
    assert_eq!(eval(&div(F64, Rnd::Rn), d(1.0), d(3.0), 0), 0x3FD5_5555_5555_5555);
    assert_eq!(eval(&div(F64, Rnd::Rp), d(1.0), d(3.0), 0), 0x3FD5_5555_5555_5556);
    assert_eq!(eval(&div(F32, Rnd::Rn), f(1.0), f(0.0), 0), f(f32::INFINITY));
    let approx = AluOp::FDiv { ty: F32, kind: DivKind::Approx, ftz: false };
    assert_eq!(eval(&approx, f(6.0), f(3.0), 0), f(2.0));
    let full = AluOp::FDiv { ty: F32, kind: DivKind::Full, ftz: false };
    assert_eq!(eval(&full, f(1.0), f(4.0), 0), f(0.25));
    assert_eq!(eval(&AluOp::Rcp { ty: F32, rnd: Rnd::Rn, ftz: false }, f(3.0), 0, 0), 0x3EAA_AAAB);
    assert_eq!(eval(&AluOp::Rcp { ty: F32, rnd: Rnd::Rz, ftz: false }, f(3.0), 0, 0), 0x3EAA_AAAA);
    assert_eq!(eval(&AluOp::Rcp { ty: F64, rnd: Rnd::Rn, ftz: false }, d(4.0), 0, 0), d(0.25));
    let sqrt = |ty, rnd| AluOp::Sqrt { ty, rnd, ftz: false };
    assert_eq!(eval(&sqrt(F32, Rnd::Rn), f(2.0), 0, 0), 0x3FB5_04F3);
    assert_eq!(eval(&sqrt(F32, Rnd::Rz), f(2.0), 0, 0), 0x3FB5_04F3);
    assert_eq!(eval(&sqrt(F32, Rnd::Rp), f(2.0), 0, 0), 0x3FB5_04F4);
    assert_eq!(eval(&sqrt(F64, Rnd::Rn), d(2.0), 0, 0), 0x3FF6_A09E_667F_3BCD);
    assert_eq!(eval(&sqrt(F32, Rnd::Rn), f(-1.0), 0, 0), 0x7FFF_FFFF);
    assert_eq!(eval(&sqrt(F32, Rnd::Rn), f(-0.0), 0, 0), f(-0.0));
}

#[test]
fn approx_functions() {
    let ap = |fnc| AluOp::Approx { f: fnc, ty: F32, ftz: false };
    assert_eq!(eval(&ap(FloatFn::Ex2), f(3.0), 0, 0), f(8.0));
    assert_eq!(eval(&ap(FloatFn::Ex2), f(f32::NEG_INFINITY), 0, 0), f(0.0));
    assert_eq!(eval(&ap(FloatFn::Lg2), f(8.0), 0, 0), f(3.0));
    assert_eq!(eval(&ap(FloatFn::Lg2), f(0.0), 0, 0), f(f32::NEG_INFINITY));
    assert_eq!(eval(&ap(FloatFn::Sin), f(0.0), 0, 0), f(0.0));
    assert_eq!(eval(&ap(FloatFn::Cos), f(0.0), 0, 0), f(1.0));
    assert_eq!(eval(&ap(FloatFn::Tanh), f(0.0), 0, 0), f(0.0));
    assert_eq!(eval(&ap(FloatFn::Rsqrt), f(4.0), 0, 0), f(0.5));
    assert_eq!(eval(&ap(FloatFn::RcpApprox), f(4.0), 0, 0), f(0.25));
    assert_eq!(eval(&ap(FloatFn::SqrtApprox), f(9.0), 0, 0), f(3.0));
    // within the ISA's stated errors of the exact values
    for i in 1..200 {
        let x = i as f32 * 0.0731 - 7.0;
        let rel = |got: u64, want: f64| ((ff(got) as f64 - want) / want).abs();
        assert!(rel(eval(&ap(FloatFn::Ex2), f(x), 0, 0), (x as f64).exp2()) < p2d(-22));
        assert!((ff(eval(&ap(FloatFn::Sin), f(x), 0, 0)) as f64 - (x as f64).sin()).abs() < p2d(-20));
        assert!((ff(eval(&ap(FloatFn::Cos), f(x), 0, 0)) as f64 - (x as f64).cos()).abs() < p2d(-20));
        let ax = x.abs() + 0.01;
        assert!((ff(eval(&ap(FloatFn::Lg2), f(ax), 0, 0)) as f64 - (ax as f64).log2()).abs() < p2d(-21));
        assert!(rel(eval(&ap(FloatFn::Rsqrt), f(ax), 0, 0), 1.0 / (ax as f64).sqrt()) < p2d(-22));
        assert!((ff(eval(&ap(FloatFn::Tanh), f(x), 0, 0)) as f64 - (x as f64).tanh()).abs() < p2d(-10));
    }
    // .ftz: a subnormal input is 0
    let ex2ftz = AluOp::Approx { f: FloatFn::Ex2, ty: F32, ftz: true };
    assert_eq!(eval(&ex2ftz, 1, 0, 0), f(1.0));
    assert_eq!(eval(&AluOp::Approx { f: FloatFn::RcpApprox, ty: F64, ftz: true }, d(2.0), 0, 0), d(0.5));
    assert_eq!(simt_flops(&ap(FloatFn::Ex2)), 1);
}

#[test]
fn ftz_and_sat() {
    let sub = 0x0000_0001u64; // smallest subnormal
    let addftz = AluOp::FAdd { ty: F32, rnd: Rnd::Rn, ftz: true, sat: false };
    assert_eq!(eval(&addftz, sub, f(0.0), 0), f(0.0));
    assert_eq!(eval(&addftz, sub | 0x8000_0000, f(-0.0), 0), f(-0.0));
    assert_eq!(eval(&add32(Rnd::Rn), sub, f(0.0), 0), sub);
    let mulftz = AluOp::FMul { ty: F32, rnd: Rnd::Rn, ftz: true, sat: false };
    assert_eq!(eval(&mulftz, f(p2(-100)), f(p2(-30)), 0), f(0.0));
    assert_eq!(eval(&mulftz, f(-p2(-100)), f(p2(-30)), 0), 0x8000_0000);
    assert_eq!(eval(&mul32(Rnd::Rn), f(p2(-100)), f(p2(-30)), 0), f(p2(-130)));
    let fmaftz = AluOp::Fma { ty: F32, rnd: Rnd::Rn, ftz: true, sat: false };
    assert_eq!(eval(&fmaftz, sub, f(p2(100)), f(1.0)), f(1.0));
    let addsat = AluOp::FAdd { ty: F32, rnd: Rnd::Rn, ftz: false, sat: true };
    assert_eq!(eval(&addsat, f(0.7), f(0.6), 0), f(1.0));
    assert_eq!(eval(&addsat, f(-1.0), f(0.5), 0), f(0.0));
    assert_eq!(eval(&addsat, f(0.25), f(0.5), 0), f(0.75));
    let fmasat = AluOp::Fma { ty: F32, rnd: Rnd::Rn, ftz: false, sat: true };
    assert_eq!(eval(&fmasat, f(f32::NAN), f(1.0), f(1.0)), f(0.0));
    let absftz = AluOp::FAbs { ty: F32, ftz: true };
    assert_eq!(eval(&absftz, sub | 0x8000_0000, 0, 0), 0);
}

#[test]
fn float_sign_min_max() {
    let (mn, mx) = (AluOp::FMin { ty: F32, ftz: false }, AluOp::FMax { ty: F32, ftz: false });
    assert_eq!(eval(&mn, f(f32::NAN), f(1.0), 0), f(1.0));
    assert_eq!(eval(&mn, f(1.0), f(f32::NAN), 0), f(1.0));
    assert_eq!(eval(&mx, f(f32::NAN), f(-3.0), 0), f(-3.0));
    assert_eq!(eval(&mx, f(f32::NAN), f(f32::NAN), 0), 0x7FFF_FFFF);
    assert_eq!(eval(&mn, f(2.0), f(-3.0), 0), f(-3.0));
    assert_eq!(eval(&mx, f(2.0), f(-3.0), 0), f(2.0));
    assert_eq!(eval(&mn, f(0.0), f(-0.0), 0), f(-0.0));
    assert_eq!(eval(&mx, f(-0.0), f(0.0), 0), f(0.0));
    let mn64 = AluOp::FMin { ty: F64, ftz: false };
    assert_eq!(eval(&mn64, d(f64::NAN), d(1.5), 0), d(1.5));
    assert_eq!(eval(&AluOp::FNeg { ty: F32, ftz: false }, f(1.5), 0, 0), f(-1.5));
    assert_eq!(eval(&AluOp::FNeg { ty: F64, ftz: false }, d(1.5), 0, 0), d(-1.5));
    assert_eq!(eval(&AluOp::FAbs { ty: F32, ftz: false }, f(-0.0), 0, 0), f(0.0));
    assert_eq!(eval(&AluOp::FAbs { ty: F64, ftz: false }, d(-2.5), 0, 0), d(2.5));
    assert_eq!(eval(&AluOp::CopySign { ty: F32 }, f(-1.0), f(2.5), 0), f(-2.5));
    assert_eq!(eval(&AluOp::CopySign { ty: F64 }, d(1.0), d(-2.5), 0), d(2.5));
    assert_eq!(simt_flops(&mn), 1);
    assert_eq!(simt_flops(&AluOp::FNeg { ty: F32, ftz: false }), 0);
}

#[test]
fn integer_arith() {
    let s32 = Ty::S32;
    let u32_ = Ty::U32;
    let m = 0xFFFF_FFFFu64;
    assert_eq!(eval(&AluOp::IAdd { ty: s32, sat: false }, 0x7FFF_FFFF, 1, 0), 0x8000_0000);
    assert_eq!(eval(&AluOp::IAdd { ty: s32, sat: true }, 0x7FFF_FFFF, 1, 0), 0x7FFF_FFFF);
    assert_eq!(eval(&AluOp::ISub { ty: s32, sat: true }, 0x8000_0000, 1, 0), 0x8000_0000);
    assert_eq!(eval(&AluOp::ISub { ty: s32, sat: false }, 0, 1, 0), m);
    assert_eq!(eval(&AluOp::IAdd { ty: Ty::S64, sat: false }, 5, u64::MAX, 0), 4);
    assert_eq!(eval(&AluOp::IAdd { ty: Ty::U16, sat: false }, 0xFFFF, 2, 0), 1);
    let mul = |ty, mode| AluOp::IMul { ty, mode };
    assert_eq!(eval(&mul(u32_, MulMode::Hi), m, m, 0), 0xFFFF_FFFE);
    assert_eq!(eval(&mul(s32, MulMode::Hi), (-2i32) as u32 as u64, 0x4000_0000, 0), m);
    assert_eq!(eval(&mul(s32, MulMode::Lo), (-3i32) as u32 as u64, 5, 0), (-15i32) as u32 as u64);
    assert_eq!(eval(&mul(s32, MulMode::Wide), (-3i32) as u32 as u64, 4, 0), (-12i64) as u64);
    assert_eq!(eval(&mul(u32_, MulMode::Wide), m, 2, 0), 0x1_FFFF_FFFE);
    assert_eq!(eval(&mul(Ty::S64, MulMode::Lo), u64::MAX, 3, 0), (-3i64) as u64);
    assert_eq!(eval(&mul(Ty::U64, MulMode::Hi), u64::MAX, u64::MAX, 0), u64::MAX - 1);
    let mad = |ty, mode| AluOp::IMad { ty, mode, sat: false };
    assert_eq!(eval(&mad(s32, MulMode::Lo), 3, 4, (-20i32) as u32 as u64), (-8i32) as u32 as u64);
    assert_eq!(eval(&mad(u32_, MulMode::Wide), m, 2, 0x1_0000_0000), 0x2_FFFF_FFFE);
    assert_eq!(eval(&mad(s32, MulMode::Wide), (-1i32) as u32 as u64, 2, 10), 8);
    assert_eq!(eval(&mad(u32_, MulMode::Hi), m, m, 1), 0xFFFF_FFFF);
    let madsat = AluOp::IMad { ty: s32, mode: MulMode::Hi, sat: true };
    assert_eq!(eval(&madsat, 0x4000_0000, 4, 0x7FFF_FFFF), 0x7FFF_FFFF);
    // division and remainder, including by zero (all ones / the dividend, never a panic)
    assert_eq!(eval(&AluOp::IDiv { ty: s32 }, 7, (-2i32) as u32 as u64, 0), (-3i32) as u32 as u64);
    assert_eq!(eval(&AluOp::IRem { ty: s32 }, (-7i32) as u32 as u64, 2, 0), m);
    assert_eq!(eval(&AluOp::IDiv { ty: u32_ }, 7, 0, 0), m);
    assert_eq!(eval(&AluOp::IDiv { ty: s32 }, 7, 0, 0), m);
    assert_eq!(eval(&AluOp::IDiv { ty: Ty::S64 }, 7, 0, 0), u64::MAX);
    assert_eq!(eval(&AluOp::IRem { ty: u32_ }, 5, 0, 0), 5);
    assert_eq!(eval(&AluOp::IDiv { ty: s32 }, 0x8000_0000, m, 0), 0x8000_0000);
    assert_eq!(eval(&AluOp::IRem { ty: s32 }, 0x8000_0000, m, 0), 0);
    assert_eq!(eval(&AluOp::IDiv { ty: u32_ }, m, 2, 0), 0x7FFF_FFFF);
    assert_eq!(eval(&AluOp::IDiv { ty: Ty::U64 }, u64::MAX, 2, 0), u64::MAX / 2);
    assert_eq!(eval(&AluOp::IAbs { ty: s32 }, (-5i32) as u32 as u64, 0, 0), 5);
    assert_eq!(eval(&AluOp::IAbs { ty: s32 }, 0x8000_0000, 0, 0), 0x8000_0000);
    assert_eq!(eval(&AluOp::INeg { ty: s32 }, 5, 0, 0), (-5i32) as u32 as u64);
    assert_eq!(eval(&AluOp::INeg { ty: s32 }, 0x8000_0000, 0, 0), 0x8000_0000);
    assert_eq!(eval(&AluOp::IMin { ty: s32 }, m, 1, 0), m);
    assert_eq!(eval(&AluOp::IMin { ty: u32_ }, m, 1, 0), 1);
    assert_eq!(eval(&AluOp::IMax { ty: s32 }, m, 1, 0), 1);
    assert_eq!(eval(&AluOp::IMax { ty: u32_ }, m, 1, 0), m);
    assert_eq!(simt_flops(&AluOp::IMad { ty: s32, mode: MulMode::Lo, sat: false }), 0);
}

#[test]
fn bits_and_shifts() {
    let m = 0xFFFF_FFFFu64;
    assert_eq!(eval(&AluOp::Mov { bits: 32 }, u64::MAX, 0, 0), m);
    assert_eq!(eval(&AluOp::Mov { bits: 1 }, m, 0, 0), 1);
    assert_eq!(eval(&AluOp::And { bits: 32 }, 0xF0F0, 0xFF00, 0), 0xF000);
    assert_eq!(eval(&AluOp::Or { bits: 1 }, 0, 1, 0), 1);
    assert_eq!(eval(&AluOp::Xor { bits: 32 }, m, 1, 0), m - 1);
    assert_eq!(eval(&AluOp::Not { bits: 32 }, 0, 0, 0), m);
    assert_eq!(eval(&AluOp::Not { bits: 1 }, 1, 0, 0), 0);
    assert_eq!(eval(&AluOp::Not { bits: 1 }, 0, 0, 0), 1);
    assert_eq!(eval(&AluOp::CNot { bits: 32 }, 0, 0, 0), 1);
    assert_eq!(eval(&AluOp::CNot { bits: 32 }, 7, 0, 0), 0);
    assert_eq!(eval(&AluOp::Shl { bits: 32 }, 1, 31, 0), 0x8000_0000);
    assert_eq!(eval(&AluOp::Shl { bits: 32 }, 1, 32, 0), 0);
    assert_eq!(eval(&AluOp::Shl { bits: 64 }, 3, 62, 0), 0xC000_0000_0000_0000);
    assert_eq!(eval(&AluOp::Shr { ty: Ty::U32 }, 0x8000_0000, 40, 0), 0);
    assert_eq!(eval(&AluOp::Shr { ty: Ty::S32 }, 0x8000_0000, 40, 0), m);
    assert_eq!(eval(&AluOp::Shr { ty: Ty::S32 }, 0x8000_0000, 4, 0), 0xF800_0000);
    assert_eq!(eval(&AluOp::Shr { ty: Ty::B32 }, 0x8000_0000, 4, 0), 0x0800_0000);
    assert_eq!(eval(&AluOp::Shr { ty: Ty::S64 }, 1 << 63, 63, 0), u64::MAX);
    assert_eq!(eval(&AluOp::Shr { ty: Ty::U64 }, 1 << 63, 63, 0), 1);
    assert_eq!(eval(&AluOp::Bfe { ty: Ty::U32 }, 0xABCD_1234, 8, 8), 0x12);
    assert_eq!(eval(&AluOp::Bfe { ty: Ty::S32 }, 0x0000_F000, 12, 4), m);
    assert_eq!(eval(&AluOp::Bfe { ty: Ty::S32 }, 0x0000_7000, 12, 4), 7);
    assert_eq!(eval(&AluOp::Bfe { ty: Ty::S32 }, 0xFFFF_FFFF, 12, 0), 0);
    assert_eq!(eval(&AluOp::Bfe { ty: Ty::U32 }, 0xFFFF_FFFF, 40, 8), 0);
    assert_eq!(eval(&AluOp::Bfe { ty: Ty::S32 }, 0x8000_0000, 28, 8), 0xFFFF_FFF8); // field 0b1000, sign = bit 31
    assert_eq!(eval(&AluOp::Bfi { bits: 32, pos: Some(4), len: Some(4) }, 0xF, 0, 0), 0xF0);
    assert_eq!(eval(&AluOp::Bfi { bits: 64, pos: Some(32), len: Some(32) }, 0x1234, m, 0), 0x0000_1234_FFFF_FFFF);
    assert_eq!(eval(&AluOp::Bfi { bits: 32, pos: Some(8), len: None }, 0xAB, 0, 8), 0xAB00);
    assert_eq!(eval(&AluOp::Bfi { bits: 32, pos: None, len: Some(4) }, 0xFF, 0, 28), 0xF000_0000);
    assert_eq!(eval(&AluOp::Bfi { bits: 32, pos: Some(30), len: Some(8) }, 0xFF, 0, 0), 0xC000_0000);
    assert_eq!(eval(&AluOp::Popc { bits: 32 }, 0xF0F0_0001, 0, 0), 9);
    assert_eq!(eval(&AluOp::Popc { bits: 64 }, u64::MAX, 0, 0), 64);
    assert_eq!(eval(&AluOp::Clz { bits: 32 }, 1, 0, 0), 31);
    assert_eq!(eval(&AluOp::Clz { bits: 32 }, 0, 0, 0), 32);
    assert_eq!(eval(&AluOp::Clz { bits: 64 }, 1, 0, 0), 63);
    assert_eq!(eval(&AluOp::Brev { bits: 32 }, 1, 0, 0), 0x8000_0000);
    assert_eq!(eval(&AluOp::Brev { bits: 64 }, 1, 0, 0), 1 << 63);
    assert_eq!(eval(&AluOp::Prmt, 0x3322_1100, 0x7766_5544, 0x3210), 0x3322_1100);
    assert_eq!(eval(&AluOp::Prmt, 0x3322_1100, 0x7766_5544, 0x7654), 0x7766_5544);
    assert_eq!(eval(&AluOp::Prmt, 0x3322_1100, 0x7766_5544, 0x0123), 0x0011_2233);
    assert_eq!(eval(&AluOp::Prmt, 0x0000_0080, 0, 0x0008), 0x8080_80FF);
    assert_eq!(eval(&AluOp::Selp { bits: 32 }, 1, 2, 1), 1);
    assert_eq!(eval(&AluOp::Selp { bits: 32 }, 1, 2, 0), 2);
    let slct = AluOp::Slct { bits: 32, cty: Ty::S32, ftz: false };
    assert_eq!(eval(&slct, 1, 2, 0), 1);
    assert_eq!(eval(&slct, 1, 2, m), 2);
    let slctf = AluOp::Slct { bits: 32, cty: Ty::F32, ftz: false };
    assert_eq!(eval(&slctf, 1, 2, f(-0.0)), 1);
    assert_eq!(eval(&slctf, 1, 2, f(-1.0)), 2);
    assert_eq!(eval(&slctf, 1, 2, f(f32::NAN)), 2);
}

#[test]
fn setp_forms() {
    let nan = f(f32::NAN);
    assert_eq!(eval(&setp(Cmp::Lt, F32), nan, f(1.0), 0), 0);
    assert_eq!(eval(&setp(Cmp::Ltu, F32), nan, f(1.0), 0), 1);
    assert_eq!(eval(&setp(Cmp::Ne, F32), nan, f(1.0), 0), 0);
    assert_eq!(eval(&setp(Cmp::Neu, F32), nan, f(1.0), 0), 1);
    assert_eq!(eval(&setp(Cmp::Eq, F32), nan, nan, 0), 0);
    assert_eq!(eval(&setp(Cmp::Equ, F32), nan, nan, 0), 1);
    assert_eq!(eval(&setp(Cmp::Leu, F32), f(2.0), f(1.0), 0), 0);
    assert_eq!(eval(&setp(Cmp::Gtu, F32), f(2.0), f(1.0), 0), 1);
    assert_eq!(eval(&setp(Cmp::Geu, F32), nan, f(1.0), 0), 1);
    assert_eq!(eval(&setp(Cmp::Ge, F32), f(1.0), f(1.0), 0), 1);
    assert_eq!(eval(&setp(Cmp::Num, F32), f(1.0), f(1.0), 0), 1);
    assert_eq!(eval(&setp(Cmp::Num, F32), f(1.0), nan, 0), 0);
    assert_eq!(eval(&setp(Cmp::Nan, F32), f(1.0), nan, 0), 1);
    assert_eq!(eval(&setp(Cmp::Eq, F32), f(0.0), f(-0.0), 0), 1);
    assert_eq!(eval(&setp(Cmp::Lt, F64), d(-1.0), d(0.0), 0), 1);
    let m1 = 0xFFFF_FFFFu64;
    assert_eq!(eval(&setp(Cmp::Lt, Ty::S32), m1, 0, 0), 1);
    assert_eq!(eval(&setp(Cmp::Lt, Ty::U32), m1, 0, 0), 0);
    assert_eq!(eval(&setp(Cmp::Lo, Ty::S32), m1, 0, 0), 0);
    assert_eq!(eval(&setp(Cmp::Hi, Ty::S32), m1, 0, 0), 1);
    assert_eq!(eval(&setp(Cmp::Ls, Ty::U32), 3, 3, 0), 1);
    assert_eq!(eval(&setp(Cmp::Hs, Ty::U32), 2, 3, 0), 0);
    assert_eq!(eval(&setp(Cmp::Gt, Ty::S64), 0, u64::MAX, 0), 1);
    assert_eq!(eval(&setp(Cmp::Le, Ty::S32), 5, 5, 0), 1);
    assert_eq!(eval(&setp(Cmp::Ne, Ty::B32), 5, 5, 0), 0);
    assert_eq!(eval(&setp(Cmp::Eq, Ty::B32), 5, 5, 0), 1);
    let comb =
        |comb, neg_c, invert| AluOp::Setp { cmp: Cmp::Eq, ty: Ty::S32, ftz: false, comb: Some(comb), neg_c, invert };
    assert_eq!(eval(&comb(BoolOp::And, false, false), 1, 1, 1), 1);
    assert_eq!(eval(&comb(BoolOp::And, false, false), 1, 1, 0), 0);
    assert_eq!(eval(&comb(BoolOp::And, true, false), 1, 1, 0), 1);
    assert_eq!(eval(&comb(BoolOp::Or, false, false), 1, 2, 1), 1);
    assert_eq!(eval(&comb(BoolOp::Xor, false, false), 1, 1, 1), 0);
    // the `q` of `p|q` is the complement of the comparison, combined the same way
    assert_eq!(eval(&comb(BoolOp::And, false, true), 1, 2, 1), 1);
    assert_eq!(eval(&comb(BoolOp::Or, false, true), 1, 1, 0), 0);
    let ftz = AluOp::Setp { cmp: Cmp::Eq, ty: F32, ftz: true, comb: None, neg_c: false, invert: false };
    assert_eq!(eval(&ftz, 1, f(0.0), 0), 1);
    assert_eq!(eval(&setp(Cmp::Eq, F32), 1, f(0.0), 0), 0);
}

#[test]
fn cvt_float_to_int() {
    let rni = cvt(Ty::S32, F32, Some(Rnd::Rn), true);
    assert_eq!(eval(&rni, f(2.5), 0, 0), 2);
    assert_eq!(eval(&rni, f(3.5), 0, 0), 4);
    assert_eq!(eval(&rni, f(-2.5), 0, 0), (-2i32) as u32 as u64);
    let rzi = cvt(Ty::S32, F32, Some(Rnd::Rz), true);
    assert_eq!(eval(&rzi, f(-2.7), 0, 0), (-2i32) as u32 as u64);
    assert_eq!(eval(&rzi, f(2.7), 0, 0), 2);
    assert_eq!(eval(&cvt(Ty::S32, F32, Some(Rnd::Rm), true), f(-2.2), 0, 0), (-3i32) as u32 as u64);
    assert_eq!(eval(&cvt(Ty::S32, F32, Some(Rnd::Rp), true), f(-2.7), 0, 0), (-2i32) as u32 as u64);
    assert_eq!(eval(&cvt(Ty::S32, F32, Some(Rnd::Rp), true), f(2.1), 0, 0), 3);
    // saturation and NaN -> 0
    assert_eq!(eval(&rzi, f(3e9), 0, 0), 0x7FFF_FFFF);
    assert_eq!(eval(&rzi, f(-1e20), 0, 0), 0x8000_0000);
    assert_eq!(eval(&rzi, f(f32::NAN), 0, 0), 0);
    assert_eq!(eval(&rzi, f(f32::INFINITY), 0, 0), 0x7FFF_FFFF);
    assert_eq!(eval(&cvt(Ty::U32, F32, Some(Rnd::Rz), true), f(-5.0), 0, 0), 0);
    assert_eq!(eval(&cvt(Ty::U32, F32, Some(Rnd::Rz), true), f(5e9), 0, 0), 0xFFFF_FFFF);
    assert_eq!(eval(&cvt(Ty::S64, F32, Some(Rnd::Rz), true), f(1e30), 0, 0), i64::MAX as u64);
    assert_eq!(eval(&cvt(Ty::S64, F32, Some(Rnd::Rz), true), f(-3.5), 0, 0), (-3i64) as u64);
    assert_eq!(eval(&cvt(Ty::U8, F32, Some(Rnd::Rn), true), f(300.0), 0, 0), 255);
    assert_eq!(eval(&cvt(Ty::S32, F64, Some(Rnd::Rz), true), d(-7.9), 0, 0), (-7i32) as u32 as u64);
    assert_eq!(eval(&cvt(Ty::S16, F32, Some(Rnd::Rn), true), f(-40000.0), 0, 0), 0x8000);
}

#[test]
fn cvt_int_to_int() {
    let m = 0xFFFF_FFFFu64;
    assert_eq!(eval(&cvt(Ty::S64, Ty::S32, None, false), m, 0, 0), u64::MAX);
    assert_eq!(eval(&cvt(Ty::U64, Ty::U32, None, false), m, 0, 0), m);
    assert_eq!(eval(&cvt(Ty::S64, Ty::U32, None, false), m, 0, 0), m);
    assert_eq!(eval(&cvt(Ty::U32, Ty::U64, None, false), 0x1_2345_6789, 0, 0), 0x2345_6789);
    assert_eq!(eval(&cvt(Ty::S8, Ty::S32, None, false), 300, 0, 0), 44);
    assert_eq!(eval(&cvt(Ty::U16, Ty::S8, None, false), 0x80, 0, 0), 0xFF80);
    let sat = |dst, src| AluOp::Cvt { dst, src, rnd: None, int_rnd: false, sat: true, ftz: false };
    assert_eq!(eval(&sat(Ty::S8, Ty::S32), 300, 0, 0), 127);
    assert_eq!(eval(&sat(Ty::U8, Ty::S32), (-5i32) as u32 as u64, 0, 0), 0);
    assert_eq!(eval(&sat(Ty::U32, Ty::S64), u64::MAX, 0, 0), 0);
    assert_eq!(eval(&sat(Ty::S32, Ty::U32), m, 0, 0), 0x7FFF_FFFF);
}

#[test]
fn cvt_int_to_float() {
    let i = |v: i64| v as u64;
    assert_eq!(eval(&cvt(F32, Ty::S32, Some(Rnd::Rn), false), i(16_777_217), 0, 0), f(16_777_216.0));
    assert_eq!(eval(&cvt(F32, Ty::S32, Some(Rnd::Rn), false), i(16_777_219), 0, 0), f(16_777_220.0));
    assert_eq!(eval(&cvt(F32, Ty::S32, Some(Rnd::Rz), false), i(16_777_219), 0, 0), f(16_777_218.0));
    assert_eq!(eval(&cvt(F32, Ty::S32, Some(Rnd::Rp), false), i(16_777_217), 0, 0), f(16_777_218.0));
    assert_eq!(eval(&cvt(F32, Ty::S32, Some(Rnd::Rm), false), (-16_777_217i32) as u32 as u64, 0, 0), f(-16_777_218.0));
    assert_eq!(eval(&cvt(F32, Ty::S32, Some(Rnd::Rn), false), 0xFFFF_FFFF, 0, 0), f(-1.0));
    assert_eq!(eval(&cvt(F32, Ty::U32, Some(Rnd::Rn), false), 0xFFFF_FFFF, 0, 0), f(4_294_967_296.0));
    assert_eq!(eval(&cvt(F64, Ty::S64, Some(Rnd::Rn), false), i((1 << 53) + 1), 0, 0), d(p2d(53)));
    assert_eq!(eval(&cvt(F64, Ty::S64, Some(Rnd::Rp), false), i((1 << 53) + 1), 0, 0), d(p2d(53) + 2.0));
    assert_eq!(eval(&cvt(F64, Ty::U64, Some(Rnd::Rn), false), u64::MAX, 0, 0), d(p2d(64)));
    // double-rounding trap: 2^60 + 2^36 + 1 is just above the f32 midpoint 2^60 + 2^36, but rounds to it in f64
    let v = (1i64 << 60) + (1 << 36) + 1;
    assert_eq!(eval(&cvt(F32, Ty::S64, Some(Rnd::Rn), false), i(v), 0, 0), f(p2(60) + p2(37)));
    assert_eq!(eval(&cvt(F32, Ty::S64, Some(Rnd::Rn), false), i((1 << 60) + (1 << 36)), 0, 0), f(p2(60)));
    assert_eq!(eval(&cvt(F32, Ty::U8, Some(Rnd::Rn), false), 0xFF, 0, 0), f(255.0));
    assert_eq!(eval(&cvt(F32, Ty::S8, Some(Rnd::Rn), false), 0xFF, 0, 0), f(-1.0));
}

#[test]
fn cvt_float_to_float() {
    assert_eq!(eval(&cvt(F64, F32, None, false), f(0.1), 0, 0), d(0.1f32 as f64));
    let third = d(1.0 / 3.0);
    assert_eq!(eval(&cvt(F32, F64, Some(Rnd::Rn), false), third, 0, 0), 0x3EAA_AAAB);
    assert_eq!(eval(&cvt(F32, F64, Some(Rnd::Rz), false), third, 0, 0), 0x3EAA_AAAA);
    assert_eq!(eval(&cvt(F32, F64, Some(Rnd::Rn), false), d(1e300), 0, 0), f(f32::INFINITY));
    assert_eq!(eval(&cvt(F32, F64, Some(Rnd::Rz), false), d(1e300), 0, 0), f(f32::MAX));
    assert_eq!(eval(&cvt(F32, F64, Some(Rnd::Rn), false), d(1e-50), 0, 0), 0);
    assert_eq!(eval(&cvt(F32, F64, Some(Rnd::Rp), false), d(1e-50), 0, 0), 1);
    assert_eq!(eval(&cvt(F32, F64, Some(Rnd::Rn), false), d(p2d(-140)), 0, 0), 0x200);
    assert!(is_nan32(eval(&cvt(F32, F64, Some(Rnd::Rn), false), d(f64::NAN), 0, 0)));
    assert!(f64::from_bits(eval(&cvt(F64, F32, None, false), f(f32::NAN), 0, 0)).is_nan());
    let sat = AluOp::Cvt { dst: F32, src: F32, rnd: None, int_rnd: false, sat: true, ftz: false };
    assert_eq!(eval(&sat, f(1.5), 0, 0), f(1.0));
    assert_eq!(eval(&sat, f(-0.5), 0, 0), f(0.0));
    assert_eq!(eval(&sat, f(f32::NAN), 0, 0), f(0.0));
    assert_eq!(eval(&sat, f(0.5), 0, 0), f(0.5));
    assert_eq!(eval(&cvt(F32, F32, Some(Rnd::Rn), true), f(2.5), 0, 0), f(2.0));
    assert_eq!(eval(&cvt(F32, F32, Some(Rnd::Rm), true), f(-2.5), 0, 0), f(-3.0));
    assert_eq!(eval(&cvt(F64, F64, Some(Rnd::Rp), true), d(2.1), 0, 0), d(3.0));
    let ftz = AluOp::Cvt { dst: F32, src: F32, rnd: None, int_rnd: false, sat: false, ftz: true };
    assert_eq!(eval(&ftz, 0x8000_0001, 0, 0), 0x8000_0000);
    assert_eq!(eval(&cvt(F32, F32, None, false), 0x8000_0001, 0, 0), 0x8000_0001);
}

#[test]
fn cvt_half_and_bf16() {
    let bf = cvt(Ty::BF16, F32, Some(Rnd::Rn), false);
    assert_eq!(eval(&bf, f(1.0), 0, 0), 0x3F80);
    assert_eq!(eval(&bf, f(1.0 + p2(-8)), 0, 0), 0x3F80); // tie -> even
    assert_eq!(eval(&bf, f(1.0 + 3.0 * p2(-8)), 0, 0), 0x3F82); // tie -> even (up)
    assert_eq!(eval(&bf, f(1.0 + p2(-8) + p2(-20)), 0, 0), 0x3F81);
    assert_eq!(eval(&bf, f(-2.0), 0, 0), 0xC000);
    assert_eq!(eval(&bf, f(f32::MAX), 0, 0), 0x7F80); // rounds up to inf
    assert_eq!(eval(&cvt(Ty::BF16, F32, Some(Rnd::Rz), false), f(f32::MAX), 0, 0), 0x7F7F);
    let n = eval(&bf, f(f32::NAN), 0, 0);
    assert!(n & 0x7F80 == 0x7F80 && n & 0x7F != 0, "{n:#x}");
    let h = cvt(Ty::F16, F32, Some(Rnd::Rn), false);
    assert_eq!(eval(&h, f(1.0), 0, 0), 0x3C00);
    assert_eq!(eval(&h, f(-2.0), 0, 0), 0xC000);
    assert_eq!(eval(&h, f(65504.0), 0, 0), 0x7BFF);
    assert_eq!(eval(&h, f(65519.0), 0, 0), 0x7BFF);
    assert_eq!(eval(&h, f(65520.0), 0, 0), 0x7C00);
    assert_eq!(eval(&cvt(Ty::F16, F32, Some(Rnd::Rz), false), f(1e6), 0, 0), 0x7BFF);
    assert_eq!(eval(&h, f(p2(-24)), 0, 0), 0x0001);
    assert_eq!(eval(&h, f(p2(-25)), 0, 0), 0x0000);
    assert_eq!(eval(&h, f(3.0 * p2(-26)), 0, 0), 0x0001);
    assert_eq!(eval(&h, f(p2(-14)), 0, 0), 0x0400);
    assert_eq!(eval(&h, f(1.0 + p2(-11)), 0, 0), 0x3C00);
    assert_eq!(eval(&h, f(1.0 + 3.0 * p2(-11)), 0, 0), 0x3C02);
    let n = eval(&h, f(f32::NAN), 0, 0);
    assert!(n & 0x7C00 == 0x7C00 && n & 0x3FF != 0);
    let hf = cvt(F32, Ty::F16, None, false);
    assert_eq!(eval(&hf, 0x3C00, 0, 0), f(1.0));
    assert_eq!(eval(&hf, 0x0001, 0, 0), f(p2(-24)));
    assert_eq!(eval(&hf, 0xFC00, 0, 0), f(f32::NEG_INFINITY));
    assert!(is_nan32(eval(&hf, 0x7E00, 0, 0)));
    let bff = cvt(F32, Ty::BF16, None, false);
    assert_eq!(eval(&bff, 0x3F80, 0, 0), f(1.0));
    assert_eq!(eval(&bff, 0xC049, 0, 0), f(f32::from_bits(0xC049_0000)));
    // packed pairs: a -> upper half, b -> lower half
    let bf2 = AluOp::CvtPack { dst: Ty::BF16x2, rnd: Rnd::Rn, relu: false };
    assert_eq!(eval(&bf2, f(1.0), f(2.0), 0), 0x3F80_4000);
    let h2 = AluOp::CvtPack { dst: Ty::F16x2, rnd: Rnd::Rn, relu: false };
    assert_eq!(eval(&h2, f(1.0), f(-2.0), 0), 0x3C00_C000);
    let relu = AluOp::CvtPack { dst: Ty::BF16x2, rnd: Rnd::Rn, relu: true };
    assert_eq!(eval(&relu, f(-1.0), f(2.0), 0), 0x0000_4000);
}

#[test]
fn round_f64_matches_host_f32_rounding() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..100_000 {
        let b = r.next();
        // f64 values around the f32 range, including subnormal f32 results and overflow
        let e = 1023 - 160 + (b >> 52) % 300;
        let x = f64::from_bits((b & 0x800F_FFFF_FFFF_FFFF) | (e << 52));
        assert_eq!(round_f64(x, 0, 23, 8, Rnd::Rn), (x as f32).to_bits() as u64, "{x:e}");
        let rz = round_f64(x, 0, 23, 8, Rnd::Rz);
        let t = f32::from_bits(rz as u32) as f64;
        assert!(t.abs() <= x.abs());
    }
}

#[test]
fn half_precision_arithmetic() {
    let (one, two, three) = (0x3C00u64, 0x4000u64, 0x4200u64); // f16
    let add = |ty| AluOp::FAdd { ty, rnd: Rnd::Rn, ftz: false, sat: false };
    assert_eq!(eval(&add(Ty::F16), one, two, 0), three);
    // 1 + 2^-11 is a tie in f16: even -> 1.0; 2^-11 + 2^-24 breaks it upwards
    assert_eq!(eval(&add(Ty::F16), one, 0x1000, 0), one);
    let fma = |ty, rnd| AluOp::Fma { ty, rnd, ftz: false, sat: false };
    assert_eq!(eval(&fma(Ty::F16, Rnd::Rn), one, 0x1000, one), one); // 1 + 2^-11 -> 1 (tie, even)
    assert_eq!(eval(&fma(Ty::F16, Rnd::Rp), one, 0x1000, one), 0x3C01);
    assert_eq!(eval(&fma(Ty::F16, Rnd::Rn), two, three, one), 0x4700); // 7
                                                                       // x2: lanes independent, low half = element 0
    let a = (two << 16) | one;
    let b = (one << 16) | two;
    assert_eq!(eval(&add(Ty::F16x2), a, b, 0), (three << 16) | three);
    let (b1, b2) = (0x3F80u64, 0x4000u64); // bf16 1, 2
    assert_eq!(eval(&AluOp::FMul { ty: Ty::BF16, rnd: Rnd::Rn, ftz: false, sat: false }, b2, b2, 0), 0x4080);
    assert_eq!(eval(&fma(Ty::BF16x2, Rnd::Rn), (b2 << 16) | b1, (b2 << 16) | b2, 0), (0x4080 << 16) | b2);
    // bf16 add with a huge exponent gap: 1 + 2^-100 rounds to 1 (rn), up (rp)
    let tiny = 0x0D80u64; // bf16 2^-100
    assert_eq!(eval(&add(Ty::BF16), b1, tiny, 0), b1);
    assert_eq!(eval(&AluOp::FAdd { ty: Ty::BF16, rnd: Rnd::Rp, ftz: false, sat: false }, b1, tiny, 0), 0x3F81);
    let (mn, mx) = (AluOp::FMin { ty: Ty::BF16, ftz: false }, AluOp::FMax { ty: Ty::F16x2, ftz: false });
    assert_eq!(eval(&mn, 0x7FC0, b2, 0), b2); // NaN, 2 -> 2
    assert_eq!(eval(&mx, (0x7E00 << 16) | one, (two << 16) | two, 0), (two << 16) | two);
    assert_eq!(eval(&AluOp::FNeg { ty: Ty::F16, ftz: false }, one, 0, 0), 0xBC00);
    assert_eq!(eval(&AluOp::FNeg { ty: Ty::BF16x2, ftz: false }, 0x3F80_3F80, 0, 0), 0xBF80_BF80);
    assert_eq!(eval(&AluOp::FAbs { ty: Ty::F16x2, ftz: false }, 0xBC00_3C00, 0, 0), 0x3C00_3C00);
    // ftz flushes f16 subnormals; sat clamps
    let ftz = AluOp::FAdd { ty: Ty::F16, rnd: Rnd::Rn, ftz: true, sat: false };
    assert_eq!(eval(&ftz, 0x0001, 0, 0), 0);
    assert_eq!(eval(&add(Ty::F16), 0x0001, 0, 0), 1);
    let sat = AluOp::FAdd { ty: Ty::F16, rnd: Rnd::Rn, ftz: false, sat: true };
    assert_eq!(eval(&sat, one, two, 0), one);
    assert_eq!(eval(&add(Ty::F16), 0x7C00, 0xFC00, 0), 0x7FFF); // inf - inf = canonical NaN
    assert_eq!(simt_flops(&fma(Ty::BF16x2, Rnd::Rn)), 4);
}

/// `eval_lanes` (the executor's batched form, with its own loops for the common ops) gives exactly `eval`'s bits,
/// for random and special operands, full and partial masks, and a destination that is also a source.
#[test]
fn eval_lanes_matches_eval() {
    let mut ops = vec![
        AluOp::Mov { bits: 1 },
        AluOp::Mov { bits: 16 },
        AluOp::Mov { bits: 32 },
        AluOp::Mov { bits: 64 },
        AluOp::Not { bits: 1 },
        AluOp::Prmt,
        AluOp::Bfe { ty: Ty::U32 },
        AluOp::Approx { f: FloatFn::Ex2, ty: F32, ftz: true },
        AluOp::CvtPack { dst: Ty::BF16x2, rnd: Rnd::Rn, relu: false },
    ];
    let ints = [Ty::S32, Ty::U32, Ty::S64, Ty::U64, Ty::B32, Ty::B64, Ty::S16, Ty::U16];
    for &ty in &ints {
        let bits = (ty.bytes() * 8) as u8;
        for sat in [false, true] {
            ops.push(AluOp::IAdd { ty, sat });
            ops.push(AluOp::ISub { ty, sat });
        }
        for mode in [MulMode::Lo, MulMode::Hi, MulMode::Wide] {
            ops.push(AluOp::IMul { ty, mode });
            ops.push(AluOp::IMad { ty, mode, sat: false });
        }
        ops.extend([
            AluOp::IDiv { ty },
            AluOp::IRem { ty },
            AluOp::IMin { ty },
            AluOp::IMax { ty },
            AluOp::Shr { ty },
            AluOp::Shl { bits },
            AluOp::And { bits },
            AluOp::Or { bits },
            AluOp::Xor { bits },
            AluOp::Not { bits },
            AluOp::Selp { bits },
        ]);
        for &src in &ints {
            ops.push(AluOp::Cvt { dst: ty, src, rnd: None, int_rnd: false, sat: false, ftz: false });
        }
        ops.push(AluOp::Cvt { dst: F32, src: ty, rnd: Some(Rnd::Rn), int_rnd: false, sat: false, ftz: false });
    }
    let cmps = [
        Cmp::Eq,
        Cmp::Ne,
        Cmp::Lt,
        Cmp::Le,
        Cmp::Gt,
        Cmp::Ge,
        Cmp::Lo,
        Cmp::Ls,
        Cmp::Hi,
        Cmp::Hs,
        Cmp::Equ,
        Cmp::Neu,
        Cmp::Ltu,
        Cmp::Leu,
        Cmp::Gtu,
        Cmp::Geu,
        Cmp::Num,
        Cmp::Nan,
    ];
    for &cmp in &cmps {
        for ty in [Ty::S32, Ty::U32, Ty::B32, Ty::S64, Ty::U64, F32, F64] {
            for comb in [None, Some(BoolOp::And), Some(BoolOp::Or), Some(BoolOp::Xor)] {
                for (neg_c, invert, ftz) in [(false, false, false), (true, true, true)] {
                    ops.push(AluOp::Setp { cmp, ty, ftz, comb, neg_c, invert });
                }
            }
        }
    }
    for ty in [F32, F64, Ty::F16x2] {
        for rnd in [Rnd::Rn, Rnd::Rz] {
            for ftz in [false, true] {
                for sat in [false, true] {
                    ops.push(AluOp::FAdd { ty, rnd, ftz, sat });
                    ops.push(AluOp::FSub { ty, rnd, ftz, sat });
                    ops.push(AluOp::FMul { ty, rnd, ftz, sat });
                    ops.push(AluOp::Fma { ty, rnd, ftz, sat });
                }
            }
        }
        for ftz in [false, true] {
            ops.push(AluOp::FNeg { ty, ftz });
            ops.push(AluOp::FAbs { ty, ftz });
            ops.push(AluOp::FMin { ty, ftz });
        }
    }
    let specials: [u64; 24] = [
        0,
        1,
        2,
        31,
        32,
        33,
        63,
        64,
        0x7FFF_FFFF,
        0x8000_0000,
        0xFFFF_FFFF,
        0x1_0000_0003,
        u64::MAX,
        0x8000_0000_0000_0000,
        f(1.0),
        f(-0.0),
        f(f32::INFINITY),
        f(f32::MIN_POSITIVE / 4.0),
        f(-f32::MIN_POSITIVE * 0.75),
        0x7FC0_0001,
        f(f32::MAX),
        f(3.0e-39),
        d(1.5),
        0xFFFF_FFFF_8000_0000,
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut pick = || {
        let r = rnd();
        match r % 4 {
            0 => specials[(r >> 8) as usize % specials.len()],
            1 => r >> 32,
            2 => f((r >> 40) as f32 / 65536.0 - 64.0) ^ ((r >> 8) & 0x8000_0000),
            _ => r,
        }
    };
    for op in &ops {
        for round in 0..24 {
            let a: [u64; LANES] = std::array::from_fn(|_| pick());
            let b: [u64; LANES] = std::array::from_fn(|_| pick());
            let c: [u64; LANES] = std::array::from_fn(|_| pick());
            let mask = match round % 3 {
                0 => u32::MAX,
                1 => 0x5A5A_F00F,
                _ => 0x8000_0001,
            };
            let old: [u64; LANES] = std::array::from_fn(|l| l as u64 * 7);
            let mut out = old;
            // SAFETY: four distinct arrays of 32 u64.
            unsafe { eval_lanes(op, out.as_mut_ptr(), a.as_ptr(), b.as_ptr(), c.as_ptr(), mask) };
            // the destination as the first source
            let mut alias = a;
            let p = alias.as_mut_ptr();
            // SAFETY: `alias` is both the destination and the first source, as a register row can be.
            unsafe { eval_lanes(op, p, p, b.as_ptr(), c.as_ptr(), mask) };
            for l in 0..LANES {
                let want = if mask & (1 << l) != 0 { eval(op, a[l], b[l], c[l]) } else { old[l] };
                assert_eq!(out[l], want, "{op:?} lane {l}: a {:#x} b {:#x} c {:#x}", a[l], b[l], c[l]);
                let want = if mask & (1 << l) != 0 { want } else { a[l] };
                assert_eq!(alias[l], want, "{op:?} aliased, lane {l}");
            }
        }
    }
}
