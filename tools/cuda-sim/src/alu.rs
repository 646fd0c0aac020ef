//! Lane-local semantics of PTX arithmetic, logic, comparison and conversion instructions, exactly as the PTX ISA
//! specifies them (rounding modes, `.ftz`, `.sat`, NaN handling; `.approx` functions within their documented
//! error). Operands and results are raw bits in a u64 (zero-extended), typed by the op.
//! (The `.approx` error bounds quoted beside `FloatFn` are the PTX ISA manual's as recalled, not re-checked here;
//! the simulator computes these functions at least as accurately as a GPU.)
//!
//! Every op is decoded once (`parse`) into an `AluOp` with its type and modifiers resolved; `eval` then only
//! matches on it. Adding an opcode is one variant, one match arm in `eval` (and `simt_flops`), one unit test.
//!
//! Floating point: f32 ops in round-to-nearest use the host's IEEE f32 arithmetic (`mul_add` is a fused
//! multiply-add). Directed rounding (`.rz/.rm/.rp`) is exact: the operation is computed as an unevaluated sum
//! `s + e` of two f64 (error-free transforms: a product of two f32 is exact in f64, `two_sum` gives the rounding
//! error of an addition), and `round_f64` rounds that value into the target format in the requested direction.
//! NaN results of arithmetic are the canonical NaN (`0x7FFFFFFF` for f32, `0x7FFF_FFFF_FFFF_FFFF` for f64) as on
//! NVIDIA GPUs. `.ftz` flushes subnormal f32 inputs and results to zero of the same sign.

use crate::ir::Ty;

/// IEEE rounding direction (`.rn`, `.rz`, `.rm`, `.rp`; for float->int conversions `.rni`, `.rzi`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rnd {
    Rn,
    Rz,
    Rm,
    Rp,
}

/// `mul`/`mad` integer result selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MulMode {
    Lo,
    Hi,
    Wide,
}

/// `setp` comparison operators (`lo/ls/hi/hs` are the unsigned integer forms, `*u` the unordered float forms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Lo,
    Ls,
    Hi,
    Hs,
    Equ,
    Neu,
    Ltu,
    Leu,
    Gtu,
    Geu,
    Num,
    Nan,
}

/// `setp.cmp.bop` combining operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoolOp {
    And,
    Or,
    Xor,
}

/// `.approx` transcendental functions (f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatFn {
    /// `ex2.approx(.ftz).f32`: the ISA allows about 2 ulp (max relative error ~2^-22.5). Computed as the host's
    /// `exp2f`.
    Ex2,
    /// `lg2.approx(.ftz).f32`: the ISA allows max absolute error ~2^-22.6 for x in (0.5, 2), relative ~2^-22
    /// elsewhere. Computed as the host's `log2f`.
    Lg2,
    /// `sin.approx(.ftz).f32`: the ISA allows max absolute error 2^-20.9 in [-π, π] (2^-20.5 in [-100π, 100π]).
    /// Computed as the host's `sinf` (more exact than the GPU, which reduces the argument crudely).
    Sin,
    /// `cos.approx(.ftz).f32`: as `Sin`.
    Cos,
    /// `tanh.approx.f32`: the ISA allows max relative error ~2^-11. Computed as the host's `tanhf`.
    Tanh,
    /// `rsqrt.approx(.ftz).f32/.f64`: the ISA allows max relative error ~2^-22.9 (f32). Computed in f64.
    Rsqrt,
    /// `rcp.approx(.ftz).f32/.f64`: the ISA allows max 1 ulp (f32). Computed correctly rounded.
    RcpApprox,
    /// `sqrt.approx(.ftz).f32`: the ISA allows max relative error ~2^-23. Computed correctly rounded.
    SqrtApprox,
}

/// `div` flavours for floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DivKind {
    /// IEEE division with the given rounding (`div.rn/.rz/.rm/.rp`).
    Ieee(Rnd),
    /// `div.approx.f32`: ISA max 2 ulp for |b| in [2^-126, 2^126]; computed exactly rounded.
    Approx,
    /// `div.full.f32`: ISA max 2 ulp over the full range; computed exactly rounded.
    Full,
}

/// One decoded lane-local operation with its type and modifiers resolved at decode time.
///
/// Operand convention: `eval(op, a, b, c)`; unused operands are 0. Integer ops take `ty` (its width and
/// signedness); bitwise ops take `bits` (1 for `.pred`). Float ops take `ty` = `F32` or `F64`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AluOp {
    /// `mov.ty d, a`: `a` masked to `bits` (a `.pred` move yields 0/1).
    Mov {
        bits: u8,
    },
    /// `add.ty` / `add.sat.s32`
    IAdd {
        ty: Ty,
        sat: bool,
    },
    /// `sub.ty` / `sub.sat.s32`
    ISub {
        ty: Ty,
        sat: bool,
    },
    /// `mul.(lo|hi|wide).ty`
    IMul {
        ty: Ty,
        mode: MulMode,
    },
    /// `mad.(lo|hi|wide)(.sat).ty d, a, b, c` (`c` is 2x wide for `.wide`)
    IMad {
        ty: Ty,
        mode: MulMode,
        sat: bool,
    },
    /// `div.ty`: division by zero gives all ones (unsigned max / -1), `MIN / -1` wraps.
    IDiv {
        ty: Ty,
    },
    /// `rem.ty`: remainder by zero gives the dividend.
    IRem {
        ty: Ty,
    },
    IAbs {
        ty: Ty,
    },
    INeg {
        ty: Ty,
    },
    IMin {
        ty: Ty,
    },
    IMax {
        ty: Ty,
    },
    /// `add(.rnd)(.ftz)(.sat).f32/.f64`; also `.f16/.bf16/.f16x2/.bf16x2` element-wise (as are `sub`, `mul`,
    /// `fma`, `min`, `max`, `neg`, `abs`), each element rounded once from the exact result.
    FAdd {
        ty: Ty,
        rnd: Rnd,
        ftz: bool,
        sat: bool,
    },
    FSub {
        ty: Ty,
        rnd: Rnd,
        ftz: bool,
        sat: bool,
    },
    FMul {
        ty: Ty,
        rnd: Rnd,
        ftz: bool,
        sat: bool,
    },
    /// `fma.rnd(.ftz)(.sat).f32/.f64` and `mad.rnd.f32/.f64` (the same fused operation).
    Fma {
        ty: Ty,
        rnd: Rnd,
        ftz: bool,
        sat: bool,
    },
    FDiv {
        ty: Ty,
        kind: DivKind,
        ftz: bool,
    },
    FAbs {
        ty: Ty,
        ftz: bool,
    },
    FNeg {
        ty: Ty,
        ftz: bool,
    },
    /// `min.f32`: if exactly one operand is NaN the other is returned; both NaN gives the canonical NaN;
    /// -0 < +0.
    FMin {
        ty: Ty,
        ftz: bool,
    },
    FMax {
        ty: Ty,
        ftz: bool,
    },
    /// `copysign.ty d, a, b`: `b` with the sign of `a`.
    CopySign {
        ty: Ty,
    },
    /// `rcp.rnd.f32/.f64` (IEEE 1/a)
    Rcp {
        ty: Ty,
        rnd: Rnd,
        ftz: bool,
    },
    /// `sqrt.rnd.f32/.f64`
    Sqrt {
        ty: Ty,
        rnd: Rnd,
        ftz: bool,
    },
    /// `ex2/lg2/sin/cos/tanh/rsqrt/rcp/sqrt .approx(.ftz)`
    Approx {
        f: FloatFn,
        ty: Ty,
        ftz: bool,
    },
    And {
        bits: u8,
    },
    Or {
        bits: u8,
    },
    Xor {
        bits: u8,
    },
    Not {
        bits: u8,
    },
    /// `cnot.ty d, a`: `a == 0 ? 1 : 0`
    CNot {
        bits: u8,
    },
    /// `shl.bN d, a, b`: `b` (unsigned 32-bit) >= N gives 0.
    Shl {
        bits: u8,
    },
    /// `shr.ty d, a, b`: arithmetic for signed types (amounts >= N fill with the sign), logical otherwise.
    Shr {
        ty: Ty,
    },
    /// `bfi.bN d, f, b, pos, len`: `f` inserted into `b`. `pos`/`len` given as immediates are stored here; one
    /// of them may instead be a register, passed as operand `c` (the field that is `None`).
    Bfi {
        bits: u8,
        pos: Option<u8>,
        len: Option<u8>,
    },
    /// `bfe.ty d, a, pos, len`
    Bfe {
        ty: Ty,
    },
    Popc {
        bits: u8,
    },
    Clz {
        bits: u8,
    },
    Brev {
        bits: u8,
    },
    /// `prmt.b32 d, a, b, c` (default mode)
    Prmt,
    /// `selp.ty d, a, b, c`: `c != 0 ? a : b`
    Selp {
        bits: u8,
    },
    /// `setp.cmp(.bop)(.ftz).ty p, a, b(, c)`: `(cmp(a, b) ^ invert) bop (c ^ neg_c)`. The second destination of
    /// `p|q` is the same op with `invert` set.
    Setp {
        cmp: Cmp,
        ty: Ty,
        ftz: bool,
        comb: Option<BoolOp>,
        neg_c: bool,
        invert: bool,
    },
    /// `slct.dty.cty d, a, b, c`: `c >= 0 ? a : b` (`cty` S32 or F32).
    Slct {
        bits: u8,
        cty: Ty,
        ftz: bool,
    },
    /// `cvt(.rnd|.irnd)(.ftz)(.sat).dst.src d, a`. `int_rnd` = the rounding is `.rni/.rzi/.rmi/.rpi` (round to
    /// an integral value); `rnd` None = the default (exact or truncating conversions).
    Cvt {
        dst: Ty,
        src: Ty,
        rnd: Option<Rnd>,
        int_rnd: bool,
        sat: bool,
        ftz: bool,
    },
    /// `cvt.rnd(.relu)(.satfinite).(f16x2|bf16x2).f32 d, a, b`: `a` goes to the upper half, `b` to the lower.
    CvtPack {
        dst: Ty,
        rnd: Rnd,
        relu: bool,
    },
}

// ---------------------------------------------------------------------------------------------------------------
// bit helpers

#[inline]
fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

#[inline]
fn tbits(ty: Ty) -> u32 {
    if ty == Ty::Pred {
        1
    } else {
        ty.bytes() * 8
    }
}

/// Sign-extend the low `bits` of `v`.
#[inline]
fn sext(v: u64, bits: u32) -> i64 {
    if bits >= 64 {
        v as i64
    } else {
        let s = 64 - bits;
        ((v << s) as i64) >> s
    }
}

/// The integer value of `v` typed `ty` (signed types sign-extended).
#[inline]
fn ival(v: u64, ty: Ty) -> i128 {
    let bits = tbits(ty);
    if ty.is_signed() {
        sext(v, bits) as i128
    } else {
        (v & mask(bits)) as i128
    }
}

fn imin(ty: Ty) -> i128 {
    if ty.is_signed() {
        -(1i128 << (tbits(ty) - 1))
    } else {
        0
    }
}

fn imax(ty: Ty) -> i128 {
    if ty.is_signed() {
        (1i128 << (tbits(ty) - 1)) - 1
    } else {
        (1i128 << tbits(ty)) - 1
    }
}

fn wrap(v: i128, bits: u32) -> u64 {
    (v as u64) & mask(bits)
}

// ---------------------------------------------------------------------------------------------------------------
// float helpers

const F32_QNAN: u64 = 0x7FFF_FFFF;
const F64_QNAN: u64 = 0x7FFF_FFFF_FFFF_FFFF;

#[inline]
fn f32v(v: u64, ftz: bool) -> f32 {
    let x = f32::from_bits(v as u32);
    if ftz && x.is_subnormal() {
        f32::from_bits((v as u32) & 0x8000_0000)
    } else {
        x
    }
}

#[inline]
fn f32b(x: f32, ftz: bool) -> u64 {
    if x.is_nan() {
        F32_QNAN
    } else if ftz && x.is_subnormal() {
        (x.to_bits() & 0x8000_0000) as u64
    } else {
        x.to_bits() as u64
    }
}

#[inline]
fn f64b(x: f64) -> u64 {
    if x.is_nan() {
        F64_QNAN
    } else {
        x.to_bits()
    }
}

/// The value of a float operand of type `ty` as f64 (exact for f16/bf16/f32/tf32).
#[inline]
fn fval(v: u64, ty: Ty, ftz: bool) -> f64 {
    match ty {
        Ty::F64 => f64::from_bits(v),
        Ty::F16 => f16_to_f64(v as u16),
        Ty::BF16 => f32::from_bits((v as u32 & 0xFFFF) << 16) as f64,
        _ => f32v(v, ftz) as f64,
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let e = ((h >> 10) & 0x1F) as i32;
    let m = (h & 0x3FF) as f64;
    if e == 0x1F {
        return if m == 0.0 { sign * f64::INFINITY } else { f64::NAN };
    }
    if e == 0 {
        sign * m * 2f64.powi(-24)
    } else {
        sign * (1024.0 + m) * 2f64.powi(e - 25)
    }
}

/// `a + b = s + e` exactly (Knuth's TwoSum).
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    if !s.is_finite() {
        return (s, 0.0);
    }
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

fn sign_of(e: f64) -> i32 {
    if e > 0.0 {
        1
    } else if e < 0.0 {
        -1
    } else {
        0
    }
}

fn next_up(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f64::from_bits(1);
    }
    let b = x.to_bits();
    f64::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

fn next_down(x: f64) -> f64 {
    -next_up(-x)
}

/// Round the exact value `s + tiny` (where `tiny` has sign `err` and is below half an ulp of `s` in f64) to f64.
fn round_dir_f64(s: f64, err: i32, rnd: Rnd) -> f64 {
    if err == 0 || !s.is_finite() {
        return s;
    }
    match rnd {
        Rnd::Rn => s,
        Rnd::Rm => {
            if err < 0 {
                next_down(s)
            } else {
                s
            }
        }
        Rnd::Rp => {
            if err > 0 {
                next_up(s)
            } else {
                s
            }
        }
        Rnd::Rz => {
            if s > 0.0 && err < 0 {
                next_down(s)
            } else if s < 0.0 && err > 0 {
                next_up(s)
            } else {
                s
            }
        }
    }
}

/// Round the exact value `x + tiny` (`tiny` of sign `err`, smaller than half an ulp of `x` in f64) to a binary
/// float with `mbits` stored mantissa bits and `ebits` exponent bits (f32: 23/8, f16: 10/5, bf16: 7/8),
/// returning its bits. Handles subnormals, overflow per direction, NaN (canonical quiet NaN) and signed zeros.
pub fn round_f64(x: f64, err: i32, mbits: u32, ebits: u32, rnd: Rnd) -> u64 {
    let sign_bit = 1u64 << (mbits + ebits);
    let exp_all = ((1u64 << ebits) - 1) << mbits;
    if x.is_nan() {
        // NVIDIA canonical NaN: all mantissa bits set for f32, the quiet bit for the small formats.
        return if mbits == 23 { exp_all | mask(mbits) } else { exp_all | (1 << (mbits - 1)) | mask(mbits - 1) };
    }
    let neg = x.is_sign_negative();
    let sgn = if neg { sign_bit } else { 0 };
    if x.is_infinite() {
        return sgn | exp_all;
    }
    if x == 0.0 && err == 0 {
        return sgn;
    }
    // Error in the magnitude direction.
    let err_mag = if neg { -err } else { err };
    let a = x.abs();
    let bias = (1i32 << (ebits - 1)) - 1;
    let emin = 1 - bias;
    let e = if a == 0.0 { emin } else { (((a.to_bits() >> 52) & 0x7FF) as i32 - 1023).max(emin) };
    let qexp = e - mbits as i32;
    let q = a * 2f64.powi(-qexp);
    let mut n = q.floor();
    let frac = q - n;
    // 0 = exact, 1 = below half, 2 = half, 3 = above half
    let class = if frac == 0.0 {
        match err_mag.cmp(&0) {
            std::cmp::Ordering::Equal => 0,
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Less => {
                n -= 1.0;
                3
            }
        }
    } else if frac == 0.5 {
        match err_mag.cmp(&0) {
            std::cmp::Ordering::Equal => 2,
            std::cmp::Ordering::Greater => 3,
            std::cmp::Ordering::Less => 1,
        }
    } else if frac < 0.5 {
        1
    } else {
        3
    };
    let mut n = n as u64;
    let up = match rnd {
        Rnd::Rn => class == 3 || (class == 2 && n & 1 == 1),
        Rnd::Rz => false,
        Rnd::Rm => neg && class != 0,
        Rnd::Rp => !neg && class != 0,
    };
    if up {
        n += 1;
    }
    let hidden = 1u64 << mbits;
    let bits = if a < 2f64.powi(emin) { n } else { (((e - emin + 1) as u64) << mbits) + n - hidden };
    if bits >= exp_all {
        // overflow
        let to_inf = match rnd {
            Rnd::Rn => true,
            Rnd::Rz => false,
            Rnd::Rm => neg,
            Rnd::Rp => !neg,
        };
        return sgn | if to_inf { exp_all } else { exp_all - 1 };
    }
    sgn | bits
}

/// f64 value (+ error sign) -> bits of float type `ty` with rounding `rnd`.
fn to_float(x: f64, err: i32, ty: Ty, rnd: Rnd, ftz: bool) -> u64 {
    match ty {
        Ty::F64 => f64b(round_dir_f64(x, err, rnd)),
        Ty::F16 => round_f64(x, err, 10, 5, rnd),
        Ty::BF16 => round_f64(x, err, 7, 8, rnd),
        _ => {
            let b = round_f64(x, err, 23, 8, rnd);
            f32b(f32::from_bits(b as u32), ftz)
        }
    }
}

fn sat01(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// Finish an f32/f64 arithmetic result given as `s + tiny(err)`: round, `.sat`, `.ftz`, canonical NaN.
fn fin(ty: Ty, s: f64, err: i32, rnd: Rnd, ftz: bool, sat: bool) -> u64 {
    if sat {
        // Saturation applies to the rounded result; rounding cannot leave [0, 1] once clamped.
        let r = f64::from_bits(to_float_f64(ty, s, err, rnd, ftz));
        return to_float(sat01(r), 0, ty, Rnd::Rn, ftz);
    }
    to_float(s, err, ty, rnd, ftz)
}

/// `to_float` but the result widened back to f64 bits (for .sat).
fn to_float_f64(ty: Ty, s: f64, err: i32, rnd: Rnd, ftz: bool) -> u64 {
    let b = to_float(s, err, ty, rnd, ftz);
    if ty == Ty::F64 {
        b
    } else {
        (f32::from_bits(b as u32) as f64).to_bits()
    }
}

fn fadd(ty: Ty, a: f64, b: f64, rnd: Rnd, ftz: bool, sat: bool) -> u64 {
    if ty == Ty::F32 && rnd == Rnd::Rn && !sat {
        return f32b(a as f32 + b as f32, ftz);
    }
    let (s, e) = two_sum(a, b);
    fin(ty, s, sign_of(e), rnd, ftz, sat)
}

fn fmul(ty: Ty, a: f64, b: f64, rnd: Rnd, ftz: bool, sat: bool) -> u64 {
    if ty == Ty::F32 {
        // exact in f64
        return fin(ty, a * b, 0, rnd, ftz, sat);
    }
    let p = a * b;
    let e = if p.is_finite() { a.mul_add(b, -p) } else { 0.0 };
    fin(ty, p, sign_of(e), rnd, ftz, sat)
}

fn ffma(ty: Ty, a: f64, b: f64, c: f64, rnd: Rnd, ftz: bool, sat: bool) -> u64 {
    if ty == Ty::F32 {
        if rnd == Rnd::Rn && !sat {
            return f32b((a as f32).mul_add(b as f32, c as f32), ftz);
        }
        let (s, e) = two_sum(a * b, c);
        return fin(ty, s, sign_of(e), rnd, ftz, sat);
    }
    let r = a.mul_add(b, c);
    if rnd == Rnd::Rn || !r.is_finite() {
        return fin(ty, r, 0, Rnd::Rn, ftz, sat);
    }
    // Sign of the residual exact - r from error-free transforms: a*b = p + ep, p + c = s + es.
    let p = a * b;
    let ep = a.mul_add(b, -p);
    let (s, es) = two_sum(p, c);
    let (t, et) = two_sum(s - r, es);
    let res = t + (et + ep);
    fin(ty, r, sign_of(res), rnd, ftz, sat)
}

fn fdiv(ty: Ty, a: f64, b: f64, rnd: Rnd, ftz: bool) -> u64 {
    if ty == Ty::F32 && rnd == Rnd::Rn {
        return f32b(a as f32 / b as f32, ftz);
    }
    let q = a / b;
    if !q.is_finite() || q == 0.0 {
        return fin(ty, q, 0, rnd, ftz, false);
    }
    // remainder a - q*b is exact with a fused multiply-add
    let r = (-q).mul_add(b, a);
    let err = sign_of(r) * sign_of(b);
    fin(ty, q, err, rnd, ftz, false)
}

fn fsqrt(ty: Ty, a: f64, rnd: Rnd, ftz: bool) -> u64 {
    let s = a.sqrt();
    if !s.is_finite() || s == 0.0 {
        return fin(ty, s, 0, rnd, ftz, false);
    }
    let r = (-s).mul_add(s, a);
    fin(ty, s, sign_of(r), rnd, ftz, false)
}

fn fminmax(ty: Ty, a: u64, b: u64, ftz: bool, is_max: bool) -> u64 {
    let x = fval(a, ty, ftz);
    let y = fval(b, ty, ftz);
    let r = minmax_val(x, y, is_max);
    if ty == Ty::F64 {
        f64b(r)
    } else {
        f32b(r as f32, ftz)
    }
}

/// min/max with the PTX NaN rule (one NaN operand: the other; both: NaN) and -0 < +0.
fn minmax_val(x: f64, y: f64, is_max: bool) -> f64 {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => f64::NAN,
        (true, false) => y,
        (false, true) => x,
        _ => {
            if x == y {
                if is_max == x.is_sign_negative() {
                    y
                } else {
                    x
                }
            } else if (x > y) == is_max {
                x
            } else {
                y
            }
        }
    }
}

fn is_half(ty: Ty) -> bool {
    matches!(ty, Ty::F16 | Ty::BF16 | Ty::F16x2 | Ty::BF16x2)
}

fn half_elem(ty: Ty) -> Ty {
    match ty {
        Ty::F16 | Ty::F16x2 => Ty::F16,
        _ => Ty::BF16,
    }
}

/// Apply `f` to each 16-bit element (one for f16/bf16, two for the x2 types) of the operands, given as f64
/// values (`.ftz` flushes subnormal inputs); `f` returns the element's result bits.
fn half_map(ty: Ty, ops: [u64; 3], ftz: bool, f: impl Fn([f64; 3]) -> u64) -> u64 {
    let n = ty.bytes() / 2;
    let e = half_elem(ty);
    let mut out = 0u64;
    for i in 0..n {
        let x = ops.map(|v| {
            let h = (v >> (16 * i)) & 0xFFFF;
            let x = fval(h, e, false);
            if ftz && half_subnormal(h, e) {
                0.0f64.copysign(x)
            } else {
                x
            }
        });
        out |= (f(x) & 0xFFFF) << (16 * i);
    }
    out
}

fn half_subnormal(h: u64, e: Ty) -> bool {
    let exp_mask = if e == Ty::F16 { 0x7C00 } else { 0x7F80 };
    h & exp_mask == 0 && h & 0x7FFF != 0
}

/// Round an element result `s + e` to the element type of `ty`, with `.sat` and `.ftz`.
fn half_round(ty: Ty, (s, e): (f64, f64), rnd: Rnd, ftz: bool, sat: bool) -> u64 {
    let el = half_elem(ty);
    let mut b = to_float(s, sign_of(e), el, rnd, false);
    if sat {
        b = to_float(sat01(fval(b, el, false)), 0, el, Rnd::Rn, false);
    }
    if ftz && half_subnormal(b, el) {
        b &= 0x8000;
    }
    b
}

fn fcmp(cmp: Cmp, x: f64, y: f64) -> bool {
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

fn icmp(cmp: Cmp, ty: Ty, a: u64, b: u64) -> bool {
    let (x, y) = match cmp {
        Cmp::Lo | Cmp::Ls | Cmp::Hi | Cmp::Hs => {
            let m = mask(tbits(ty));
            ((a & m) as i128, (b & m) as i128)
        }
        _ => (ival(a, ty), ival(b, ty)),
    };
    match cmp {
        Cmp::Eq | Cmp::Equ => x == y,
        Cmp::Ne | Cmp::Neu => x != y,
        Cmp::Lt | Cmp::Lo | Cmp::Ltu => x < y,
        Cmp::Le | Cmp::Ls | Cmp::Leu => x <= y,
        Cmp::Gt | Cmp::Hi | Cmp::Gtu => x > y,
        Cmp::Ge | Cmp::Hs | Cmp::Geu => x >= y,
        Cmp::Num => true,
        Cmp::Nan => false,
    }
}

/// Float -> integer with `.rni/.rzi/.rmi/.rpi` (default `.rzi`): saturating to the destination range, NaN -> 0.
fn f2i(x: f64, rnd: Rnd, dst: Ty) -> u64 {
    if x.is_nan() {
        return 0;
    }
    let r = round_int(x, rnd);
    let v = if r <= imin(dst) as f64 {
        imin(dst)
    } else if r >= imax(dst) as f64 {
        imax(dst)
    } else {
        r as i128
    };
    wrap(v, tbits(dst))
}

/// Round to an integral value (ties to even for `Rn`).
fn round_int(x: f64, rnd: Rnd) -> f64 {
    match rnd {
        Rnd::Rn => x.round_ties_even(),
        Rnd::Rz => x.trunc(),
        Rnd::Rm => x.floor(),
        Rnd::Rp => x.ceil(),
    }
}

fn cvt(dst: Ty, src: Ty, rnd: Option<Rnd>, int_rnd: bool, sat: bool, ftz: bool, a: u64) -> u64 {
    let dbits = tbits(dst);
    if !src.is_float() {
        let v = ival(a, src);
        if !dst.is_float() {
            let v = if sat { v.clamp(imin(dst), imax(dst)) } else { v };
            return wrap(v, dbits);
        }
        // int -> float: i128 -> f64 is round-to-nearest; the exact error tells the direction.
        let s = v as f64;
        let err = (v - s as i128).signum() as i32;
        let r = to_float(s, err, dst, rnd.unwrap_or(Rnd::Rn), ftz);
        return if sat { to_float(sat01(fval(r, dst, ftz)), 0, dst, Rnd::Rn, ftz) } else { r };
    }
    let x = fval(a, src, ftz);
    if !dst.is_float() {
        return f2i(x, rnd.unwrap_or(Rnd::Rz), dst);
    }
    let (x, rnd) = if int_rnd { (round_int(x, rnd.unwrap_or(Rnd::Rn)), Rnd::Rn) } else { (x, rnd.unwrap_or(Rnd::Rn)) };
    let x = if sat { sat01(x) } else { x };
    if x.is_nan() && dst == Ty::F64 {
        return F64_QNAN;
    }
    to_float(x, 0, dst, rnd, ftz)
}

fn approx(f: FloatFn, ty: Ty, a: u64, ftz: bool) -> u64 {
    if ty == Ty::F64 {
        let x = f64::from_bits(a);
        let r = match f {
            FloatFn::Ex2 => x.exp2(),
            FloatFn::Lg2 => x.log2(),
            FloatFn::Sin => x.sin(),
            FloatFn::Cos => x.cos(),
            FloatFn::Tanh => x.tanh(),
            FloatFn::Rsqrt => 1.0 / x.sqrt(),
            FloatFn::RcpApprox => 1.0 / x,
            FloatFn::SqrtApprox => x.sqrt(),
        };
        return f64b(r);
    }
    let x = f32v(a, ftz);
    let r = match f {
        FloatFn::Ex2 => x.exp2(),
        FloatFn::Lg2 => x.log2(),
        FloatFn::Sin => x.sin(),
        FloatFn::Cos => x.cos(),
        FloatFn::Tanh => x.tanh(),
        FloatFn::Rsqrt => (1.0 / (x as f64).sqrt()) as f32,
        FloatFn::RcpApprox => 1.0 / x,
        FloatFn::SqrtApprox => x.sqrt(),
    };
    f32b(r, ftz)
}

fn bfe(ty: Ty, a: u64, pos: u64, len: u64) -> u64 {
    let bits = tbits(ty);
    let msb = bits - 1;
    let pos = (pos & 0xFF) as u32;
    let len = (len & 0xFF) as u32;
    let sbit = if ty.is_signed() && len > 0 { (a >> (pos + len - 1).min(msb)) & 1 } else { 0 };
    let mut d = 0u64;
    for i in 0..bits {
        let bit = if i < len && pos + i <= msb { (a >> (pos + i)) & 1 } else { sbit };
        d |= bit << i;
    }
    d
}

fn bfi(bits: u32, f: u64, b: u64, pos: u32, len: u32) -> u64 {
    let mut d = b & mask(bits);
    let msb = bits - 1;
    let pos = pos & 0xFF;
    let len = len & 0xFF;
    for i in 0..len {
        if pos + i > msb {
            break;
        }
        d = (d & !(1 << (pos + i))) | (((f >> i) & 1) << (pos + i));
    }
    d
}

fn prmt(a: u64, b: u64, c: u64) -> u64 {
    let bytes = (a & 0xFFFF_FFFF) | ((b & 0xFFFF_FFFF) << 32);
    let mut d = 0u64;
    for i in 0..4 {
        let sel = (c >> (4 * i)) & 0xF;
        let mut byte = (bytes >> (8 * (sel & 7))) & 0xFF;
        if sel & 8 != 0 {
            byte = if byte & 0x80 != 0 { 0xFF } else { 0 };
        }
        d |= byte << (8 * i);
    }
    d
}

/// The product as a 128-bit two's complement value (exact: |signed 64 x 64| < 2^126, unsigned < 2^128).
fn imul_full(ty: Ty, a: u64, b: u64) -> i128 {
    ival(a, ty).wrapping_mul(ival(b, ty))
}

/// Bits `[bits, 2*bits)` of the product.
fn mul_hi(p: i128, bits: u32) -> u64 {
    (((p as u128) >> bits) as u64) & mask(bits)
}

/// `d = op(a, b, c)` on raw bits.
pub fn eval(op: &AluOp, a: u64, b: u64, c: u64) -> u64 {
    match *op {
        AluOp::Mov { bits } => {
            if bits == 1 {
                (a != 0) as u64
            } else {
                a & mask(bits as u32)
            }
        }
        AluOp::IAdd { ty, sat } => {
            let v = ival(a, ty) + ival(b, ty);
            wrap(if sat { v.clamp(imin(ty), imax(ty)) } else { v }, tbits(ty))
        }
        AluOp::ISub { ty, sat } => {
            let v = ival(a, ty) - ival(b, ty);
            wrap(if sat { v.clamp(imin(ty), imax(ty)) } else { v }, tbits(ty))
        }
        AluOp::IMul { ty, mode } => {
            let p = imul_full(ty, a, b);
            let bits = tbits(ty);
            match mode {
                MulMode::Lo => wrap(p, bits),
                MulMode::Hi => mul_hi(p, bits),
                MulMode::Wide => wrap(p, 2 * bits),
            }
        }
        AluOp::IMad { ty, mode, sat } => {
            let p = imul_full(ty, a, b);
            let bits = tbits(ty);
            match mode {
                MulMode::Lo => wrap(p.wrapping_add(ival(c, ty)), bits),
                // `.sat` exists for s32 only, where the arithmetic shift is exact
                MulMode::Hi if sat => wrap(((p >> bits) + ival(c, ty)).clamp(imin(ty), imax(ty)), bits),
                MulMode::Hi => mul_hi(p, bits).wrapping_add(c) & mask(bits),
                MulMode::Wide => {
                    let cv = if ty.is_signed() { sext(c, 2 * bits) as i128 } else { (c & mask(2 * bits)) as i128 };
                    wrap(p.wrapping_add(cv), 2 * bits)
                }
            }
        }
        AluOp::IDiv { ty } => {
            let (x, y) = (ival(a, ty), ival(b, ty));
            if y == 0 {
                mask(tbits(ty))
            } else {
                wrap(x / y, tbits(ty))
            }
        }
        AluOp::IRem { ty } => {
            let (x, y) = (ival(a, ty), ival(b, ty));
            if y == 0 {
                wrap(x, tbits(ty))
            } else {
                wrap(x % y, tbits(ty))
            }
        }
        AluOp::IAbs { ty } => wrap(ival(a, ty).abs(), tbits(ty)),
        AluOp::INeg { ty } => wrap(-ival(a, ty), tbits(ty)),
        AluOp::IMin { ty } => wrap(ival(a, ty).min(ival(b, ty)), tbits(ty)),
        AluOp::IMax { ty } => wrap(ival(a, ty).max(ival(b, ty)), tbits(ty)),
        AluOp::FAdd { ty, rnd, ftz, sat } if is_half(ty) => {
            half_map(ty, [a, b, c], ftz, |x| half_round(ty, two_sum(x[0], x[1]), rnd, ftz, sat))
        }
        AluOp::FSub { ty, rnd, ftz, sat } if is_half(ty) => {
            half_map(ty, [a, b, c], ftz, |x| half_round(ty, two_sum(x[0], -x[1]), rnd, ftz, sat))
        }
        // products of two halves are exact in f64
        AluOp::FMul { ty, rnd, ftz, sat } if is_half(ty) => {
            half_map(ty, [a, b, c], ftz, |x| half_round(ty, (x[0] * x[1], 0.0), rnd, ftz, sat))
        }
        AluOp::Fma { ty, rnd, ftz, sat } if is_half(ty) => {
            half_map(ty, [a, b, c], ftz, |x| half_round(ty, two_sum(x[0] * x[1], x[2]), rnd, ftz, sat))
        }
        AluOp::FMin { ty, ftz } | AluOp::FMax { ty, ftz } if is_half(ty) => {
            let is_max = matches!(op, AluOp::FMax { .. });
            half_map(ty, [a, b, c], ftz, |x| {
                let r = minmax_val(x[0], x[1], is_max);
                half_round(ty, (r, 0.0), Rnd::Rn, ftz, false)
            })
        }
        AluOp::FNeg { ty, .. } if is_half(ty) => a ^ if ty.bytes() == 4 { 0x8000_8000 } else { 0x8000 },
        AluOp::FAbs { ty, .. } if is_half(ty) => a & if ty.bytes() == 4 { 0x7FFF_7FFF } else { 0x7FFF },
        AluOp::FAdd { ty, rnd, ftz, sat } => fadd(ty, fval(a, ty, ftz), fval(b, ty, ftz), rnd, ftz, sat),
        AluOp::FSub { ty, rnd, ftz, sat } => fadd(ty, fval(a, ty, ftz), -fval(b, ty, ftz), rnd, ftz, sat),
        AluOp::FMul { ty, rnd, ftz, sat } => fmul(ty, fval(a, ty, ftz), fval(b, ty, ftz), rnd, ftz, sat),
        AluOp::Fma { ty, rnd, ftz, sat } => {
            ffma(ty, fval(a, ty, ftz), fval(b, ty, ftz), fval(c, ty, ftz), rnd, ftz, sat)
        }
        AluOp::FDiv { ty, kind, ftz } => {
            let rnd = match kind {
                DivKind::Ieee(r) => r,
                _ => Rnd::Rn,
            };
            fdiv(ty, fval(a, ty, ftz), fval(b, ty, ftz), rnd, ftz)
        }
        AluOp::FAbs { ty, ftz } => {
            if ty == Ty::F64 {
                a & !(1 << 63)
            } else {
                f32v(a, ftz).to_bits() as u64 & 0x7FFF_FFFF
            }
        }
        AluOp::FNeg { ty, ftz } => {
            if ty == Ty::F64 {
                a ^ (1 << 63)
            } else {
                (f32v(a, ftz).to_bits() ^ 0x8000_0000) as u64
            }
        }
        AluOp::FMin { ty, ftz } => fminmax(ty, a, b, ftz, false),
        AluOp::FMax { ty, ftz } => fminmax(ty, a, b, ftz, true),
        AluOp::CopySign { ty } => {
            if ty == Ty::F64 {
                (b & !(1 << 63)) | (a & (1 << 63))
            } else {
                (b & 0x7FFF_FFFF) | (a & 0x8000_0000)
            }
        }
        AluOp::Rcp { ty, rnd, ftz } => fdiv(ty, 1.0, fval(a, ty, ftz), rnd, ftz),
        AluOp::Sqrt { ty, rnd, ftz } => fsqrt(ty, fval(a, ty, ftz), rnd, ftz),
        AluOp::Approx { f, ty, ftz } => approx(f, ty, a, ftz),
        AluOp::And { bits } => a & b & mask(bits as u32),
        AluOp::Or { bits } => (a | b) & mask(bits as u32),
        AluOp::Xor { bits } => (a ^ b) & mask(bits as u32),
        AluOp::Not { bits } => !a & mask(bits as u32),
        AluOp::CNot { bits } => (a & mask(bits as u32) == 0) as u64,
        AluOp::Shl { bits } => {
            let n = b & 0xFFFF_FFFF;
            if n >= bits as u64 {
                0
            } else {
                (a << n) & mask(bits as u32)
            }
        }
        AluOp::Shr { ty } => {
            let bits = tbits(ty);
            let n = (b & 0xFFFF_FFFF).min(bits as u64 - 1) as u32;
            if ty.is_signed() {
                wrap((sext(a, bits) >> n) as i128, bits)
            } else if (b & 0xFFFF_FFFF) >= bits as u64 {
                0
            } else {
                (a & mask(bits)) >> n
            }
        }
        AluOp::Bfi { bits, pos, len } => {
            let p = pos.map(u32::from).unwrap_or(c as u32);
            let l = len.map(u32::from).unwrap_or(c as u32);
            bfi(bits as u32, a, b, p, l)
        }
        AluOp::Bfe { ty } => bfe(ty, a, b, c),
        AluOp::Popc { bits } => (a & mask(bits as u32)).count_ones() as u64,
        AluOp::Clz { bits } => ((a & mask(bits as u32)).leading_zeros() - (64 - bits as u32)) as u64,
        AluOp::Brev { bits } => a.reverse_bits() >> (64 - bits as u32),
        AluOp::Prmt => prmt(a, b, c),
        AluOp::Selp { bits } => {
            if c != 0 {
                a & mask(bits as u32)
            } else {
                b & mask(bits as u32)
            }
        }
        AluOp::Setp { cmp, ty, ftz, comb, neg_c, invert } => {
            let r = if ty.is_float() { fcmp(cmp, fval(a, ty, ftz), fval(b, ty, ftz)) } else { icmp(cmp, ty, a, b) };
            let r = r ^ invert;
            let p = (c != 0) ^ neg_c;
            (match comb {
                None => r,
                Some(BoolOp::And) => r && p,
                Some(BoolOp::Or) => r || p,
                Some(BoolOp::Xor) => r ^ p,
            }) as u64
        }
        AluOp::Slct { bits, cty, ftz } => {
            let ge = if cty == Ty::F32 { f32v(c, ftz) >= 0.0 } else { sext(c, 32) >= 0 };
            if ge {
                a & mask(bits as u32)
            } else {
                b & mask(bits as u32)
            }
        }
        AluOp::Cvt { dst, src, rnd, int_rnd, sat, ftz } => cvt(dst, src, rnd, int_rnd, sat, ftz, a),
        AluOp::CvtPack { dst, rnd, relu } => {
            let half = if dst == Ty::BF16x2 { Ty::BF16 } else { Ty::F16 };
            let one = |v: u64| {
                let x = f32::from_bits(v as u32) as f64;
                let x = if relu && !x.is_nan() && x < 0.0 { 0.0 } else { x };
                to_float(x, 0, half, rnd, false)
            };
            (one(a) << 16) | one(b)
        }
    }
}

/// FP32/FP64 FLOPs one lane does for `op`: an fma counts 2; add, sub, mul, div, min, max, rcp, sqrt and the
/// `.approx` functions count 1 (f16/bf16 arithmetic counts the same per element, so x2 forms count double); moves, sign ops, comparisons, conversions and integer work count 0.
pub fn simt_flops(op: &AluOp) -> u32 {
    let lanes = |ty: &Ty| if matches!(ty, Ty::F16x2 | Ty::BF16x2) { 2 } else { 1 };
    match op {
        AluOp::Fma { ty, .. } => 2 * lanes(ty),
        AluOp::FAdd { ty, .. }
        | AluOp::FSub { ty, .. }
        | AluOp::FMul { ty, .. }
        | AluOp::FMin { ty, .. }
        | AluOp::FMax { ty, .. } => lanes(ty),
        AluOp::FDiv { .. } | AluOp::Rcp { .. } | AluOp::Sqrt { .. } | AluOp::Approx { .. } => 1,
        _ => 0,
    }
}

mod lanes;
pub use lanes::{eval_lanes, LANES};

#[cfg(test)]
mod tests;
