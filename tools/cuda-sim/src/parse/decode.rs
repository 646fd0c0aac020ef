//! One PTX instruction (opcode with its modifiers, raw operands) -> `ir::Op`(s).

use super::{ty_of, Imm, Opnd, RawInst, Scope};
use crate::alu::{AluOp, BoolOp, Cmp, DivKind, FloatFn, MulMode, Rnd};
use crate::ir::{AddrBase, Address, AtomOp, MmaShape, Op, ReduxOp, Reg, ShflMode, Space, Src, SymbolRef, Ty, VoteMode};

pub(crate) enum Decoded {
    Op(Op),
    /// `bra` before its label is resolved.
    Branch {
        label: String,
        uni: bool,
    },
}

pub(crate) struct DInst {
    pub guard: Option<(Reg, bool)>,
    pub op: Decoded,
}

type R<T> = Result<T, String>;

fn tbits(ty: Ty) -> u32 {
    if ty == Ty::Pred {
        1
    } else {
        ty.bytes() * 8
    }
}

/// An immediate converted to the raw bits of an operand of type `ty`.
pub(crate) fn imm_bits(imm: Imm, ty: Ty) -> u64 {
    let m = if tbits(ty) >= 64 { u64::MAX } else { (1u64 << tbits(ty)) - 1 };
    match ty {
        Ty::Pred => match imm {
            Imm::Int(v) => (v != 0) as u64,
            _ => 1,
        },
        Ty::F32 => match imm {
            Imm::Int(v) => (v as f32).to_bits() as u64,
            Imm::F32(b) => b as u64,
            Imm::F64(b) => (f64::from_bits(b) as f32).to_bits() as u64,
            Imm::Float(x) => (x as f32).to_bits() as u64,
        },
        Ty::F64 => match imm {
            Imm::Int(v) => (v as f64).to_bits(),
            Imm::F32(b) => (f32::from_bits(b) as f64).to_bits(),
            Imm::F64(b) => b,
            Imm::Float(x) => x.to_bits(),
        },
        _ => match imm {
            Imm::Int(v) => (v as u64) & m,
            Imm::F32(b) => b as u64 & m,
            Imm::F64(b) => b & m,
            Imm::Float(x) => (x as i64 as u64) & m,
        },
    }
}

/// Modifiers of an ALU opcode, classified.
#[derive(Default)]
struct Mods<'a> {
    tys: Vec<Ty>,
    rnd: Option<Rnd>,
    int_rnd: bool,
    ftz: bool,
    sat: bool,
    approx: bool,
    full: bool,
    mode: Option<MulMode>,
    relu: bool,
    other: Vec<&'a str>,
}

fn mods<'a>(parts: &[&'a str]) -> Mods<'a> {
    let mut m = Mods::default();
    for &p in parts {
        match p {
            "rn" => m.rnd = Some(Rnd::Rn),
            "rz" => m.rnd = Some(Rnd::Rz),
            "rm" => m.rnd = Some(Rnd::Rm),
            "rp" => m.rnd = Some(Rnd::Rp),
            "rni" | "rzi" | "rmi" | "rpi" => {
                m.int_rnd = true;
                m.rnd = Some(match p {
                    "rni" => Rnd::Rn,
                    "rzi" => Rnd::Rz,
                    "rmi" => Rnd::Rm,
                    _ => Rnd::Rp,
                })
            }
            "ftz" => m.ftz = true,
            "sat" => m.sat = true,
            "satfinite" => {}
            "approx" => m.approx = true,
            "full" => m.full = true,
            "lo" => m.mode = Some(MulMode::Lo),
            "hi" => m.mode = Some(MulMode::Hi),
            "wide" => m.mode = Some(MulMode::Wide),
            "relu" => m.relu = true,
            _ => match ty_of(p) {
                Some(t) => m.tys.push(t),
                None => m.other.push(p),
            },
        }
    }
    m
}

fn space_of(p: &str) -> Option<Space> {
    Some(match p {
        "global" => Space::Global,
        "shared" | "shared::cta" => Space::Shared,
        "local" => Space::Local,
        "param" | "param::entry" => Space::Param,
        "const" => Space::Const,
        _ => return None,
    })
}

/// Modifiers with no effect under synchronous, in-order execution.
fn ignorable(p: &str) -> bool {
    matches!(
        p,
        "ca" | "cg"
            | "cs"
            | "lu"
            | "cv"
            | "wb"
            | "wt"
            | "volatile"
            | "relaxed"
            | "acquire"
            | "release"
            | "acq_rel"
            | "weak"
            | "cta"
            | "gpu"
            | "sys"
            | "aligned"
            | "sync"
    ) || p.starts_with("L1::")
        || (p.starts_with("L2::") && p != "L2::cache_hint")
}

fn one_ty(m: &Mods, what: &str) -> R<Ty> {
    if !m.other.is_empty() {
        return Err(format!("unsupported modifier .{}", m.other.join(".")));
    }
    match m.tys.as_slice() {
        [t] => Ok(*t),
        _ => Err(format!("{what}: expected exactly one type")),
    }
}

fn reg(o: &Opnd) -> R<Reg> {
    match o {
        Opnd::Reg(r) => Ok(*r),
        o => Err(format!("expected a register, found {o:?}")),
    }
}

fn sym(name: &str, s: &Scope) -> R<SymbolRef> {
    if let Some(&o) = s.local.get(name) {
        return Ok(SymbolRef::Local(o));
    }
    if let Some(&o) = s.shared.get(name) {
        return Ok(SymbolRef::Shared(o));
    }
    if let Some(&o) = s.params.get(name) {
        return Ok(SymbolRef::Param(o));
    }
    if let Some(&i) = s.globals.get(name) {
        return Ok(SymbolRef::Global(i));
    }
    Err(format!("unknown symbol `{name}`"))
}

fn src(o: &Opnd, ty: Ty, s: &Scope) -> R<Src> {
    match o {
        Opnd::Reg(r) => Ok(Src::Reg(*r)),
        Opnd::Imm(i) => Ok(Src::Imm(imm_bits(*i, ty))),
        Opnd::Special(sp) => Ok(Src::Special(*sp)),
        Opnd::Name(n) => Ok(Src::Symbol(sym(n, s)?)),
        o => Err(format!("unsupported source operand {o:?}")),
    }
}

fn addr(o: &Opnd, s: &Scope) -> R<Address> {
    let Opnd::Addr(base, offset) = o else { return Err(format!("expected an address, found {o:?}")) };
    let base = match base.as_deref() {
        None => AddrBase::Abs,
        Some(Opnd::Reg(r)) => AddrBase::Reg(*r),
        Some(Opnd::Name(n)) => AddrBase::Symbol(sym(n, s)?),
        Some(o) => return Err(format!("unsupported address base {o:?}")),
    };
    Ok(Address { base, offset: *offset })
}

fn nops(r: &RawInst, n: usize) -> R<()> {
    if r.ops.len() == n {
        Ok(())
    } else {
        Err(format!("expected {n} operands, found {}", r.ops.len()))
    }
}

fn vec_regs(o: &Opnd) -> R<Vec<Reg>> {
    match o {
        Opnd::Vec(v) => v.iter().map(reg).collect(),
        o => Ok(vec![reg(o)?]),
    }
}

fn vec_srcs(o: &Opnd, ty: Ty, s: &Scope) -> R<Vec<Src>> {
    match o {
        Opnd::Vec(v) => v.iter().map(|x| src(x, ty, s)).collect(),
        o => Ok(vec![src(o, ty, s)?]),
    }
}

fn cmp_of(p: &str) -> Option<Cmp> {
    Some(match p {
        "eq" => Cmp::Eq,
        "ne" => Cmp::Ne,
        "lt" => Cmp::Lt,
        "le" => Cmp::Le,
        "gt" => Cmp::Gt,
        "ge" => Cmp::Ge,
        "lo" => Cmp::Lo,
        "ls" => Cmp::Ls,
        "hi" => Cmp::Hi,
        "hs" => Cmp::Hs,
        "equ" => Cmp::Equ,
        "neu" => Cmp::Neu,
        "ltu" => Cmp::Ltu,
        "leu" => Cmp::Leu,
        "gtu" => Cmp::Gtu,
        "geu" => Cmp::Geu,
        "num" => Cmp::Num,
        "nan" => Cmp::Nan,
        _ => return None,
    })
}

fn is_arith_float(ty: Ty) -> bool {
    matches!(ty, Ty::F32 | Ty::F64)
}

/// Decode one raw instruction.
pub(crate) fn decode(r: &RawInst, s: &Scope) -> R<Vec<DInst>> {
    let parts: Vec<&str> = r.opcode.split('.').collect();
    let base = parts[0];
    let rest = &parts[1..];
    let g = r.guard;
    let one = |op: Op| Ok(vec![DInst { guard: g, op: Decoded::Op(op) }]);
    let alu3 = |op: AluOp, tys: [Ty; 3]| -> R<Vec<DInst>> {
        if r.ops.is_empty() || r.ops.len() > 4 {
            return Err("wrong operand count".into());
        }
        let dst = reg(&r.ops[0])?;
        let mut srcs = [Src::Imm(0); 3];
        for (i, o) in r.ops[1..].iter().enumerate() {
            srcs[i] = src(o, tys[i], s)?;
        }
        Ok(vec![DInst { guard: g, op: Decoded::Op(Op::Alu { op, dst, src: srcs }) }])
    };
    match base {
        "mov" => {
            let m = mods(rest);
            let ty = one_ty(&m, "mov")?;
            nops(r, 2)?;
            match (&r.ops[0], &r.ops[1]) {
                (d, Opnd::Vec(v)) => {
                    let elem_bits = tbits(ty) / v.len() as u32;
                    let ety = int_ty(elem_bits);
                    let src = v.iter().map(|x| src(x, ety, s)).collect::<R<Vec<_>>>()?;
                    one(Op::Pack { dst: reg(d)?, src, elem_bits })
                }
                (Opnd::Vec(v), a) => {
                    let elem_bits = tbits(ty) / v.len() as u32;
                    let dst = v.iter().map(|x| if *x == Opnd::Sink { Ok(None) } else { reg(x).map(Some) });
                    one(Op::Unpack { dst: dst.collect::<R<Vec<_>>>()?, src: src(a, ty, s)?, elem_bits })
                }
                _ => alu3(AluOp::Mov { bits: tbits(ty) as u8 }, [ty; 3]),
            }
        }
        "add" | "sub" | "mul" | "mad" | "fma" | "div" | "rem" | "abs" | "neg" | "min" | "max" | "copysign" => {
            let m = mods(rest);
            let ty = one_ty(&m, base)?;
            let float = ty.is_float();
            let half_ok = matches!(base, "add" | "sub" | "mul" | "fma" | "min" | "max" | "neg" | "abs");
            if float && !is_arith_float(ty) && !(half_ok && matches!(ty, Ty::F16 | Ty::BF16 | Ty::F16x2 | Ty::BF16x2)) {
                return Err(format!("{base} on {ty:?} is not supported"));
            }
            let rnd = m.rnd.unwrap_or(Rnd::Rn);
            let (ftz, sat) = (m.ftz, m.sat);
            let op = match (base, float) {
                ("add", true) => AluOp::FAdd { ty, rnd, ftz, sat },
                ("sub", true) => AluOp::FSub { ty, rnd, ftz, sat },
                ("mul", true) => AluOp::FMul { ty, rnd, ftz, sat },
                ("mad" | "fma", true) => AluOp::Fma { ty, rnd, ftz, sat },
                ("div", true) => {
                    let kind = if m.approx {
                        DivKind::Approx
                    } else if m.full {
                        DivKind::Full
                    } else {
                        DivKind::Ieee(m.rnd.ok_or("div on floats needs .rn/.rz/.rm/.rp, .approx or .full")?)
                    };
                    AluOp::FDiv { ty, kind, ftz }
                }
                ("abs", true) => AluOp::FAbs { ty, ftz },
                ("neg", true) => AluOp::FNeg { ty, ftz },
                ("min", true) => AluOp::FMin { ty, ftz },
                ("max", true) => AluOp::FMax { ty, ftz },
                ("copysign", true) => AluOp::CopySign { ty },
                ("add", false) => AluOp::IAdd { ty, sat },
                ("sub", false) => AluOp::ISub { ty, sat },
                ("mul", false) => AluOp::IMul { ty, mode: m.mode.unwrap_or(MulMode::Lo) },
                ("mad", false) => AluOp::IMad { ty, mode: m.mode.unwrap_or(MulMode::Lo), sat },
                ("div", false) => AluOp::IDiv { ty },
                ("rem", false) => AluOp::IRem { ty },
                ("abs", false) => AluOp::IAbs { ty },
                ("neg", false) => AluOp::INeg { ty },
                ("min", false) => AluOp::IMin { ty },
                ("max", false) => AluOp::IMax { ty },
                _ => return Err(format!("{base} on {ty:?} is not supported")),
            };
            let cty =
                if base == "mad" && m.mode == Some(MulMode::Wide) { int_ty_signed(2 * tbits(ty), ty) } else { ty };
            alu3(op, [ty, ty, cty])
        }
        "and" | "or" | "xor" | "not" | "cnot" | "popc" | "clz" | "brev" | "shl" => {
            let m = mods(rest);
            let ty = one_ty(&m, base)?;
            let bits = tbits(ty) as u8;
            let op = match base {
                "and" => AluOp::And { bits },
                "or" => AluOp::Or { bits },
                "xor" => AluOp::Xor { bits },
                "not" => AluOp::Not { bits },
                "cnot" => AluOp::CNot { bits },
                "popc" => AluOp::Popc { bits },
                "clz" => AluOp::Clz { bits },
                "brev" => AluOp::Brev { bits },
                _ => AluOp::Shl { bits },
            };
            let bty = if base == "shl" { Ty::U32 } else { ty };
            alu3(op, [ty, bty, ty])
        }
        "shr" => {
            let ty = one_ty(&mods(rest), base)?;
            alu3(AluOp::Shr { ty }, [ty, Ty::U32, ty])
        }
        "bfe" => {
            let ty = one_ty(&mods(rest), base)?;
            alu3(AluOp::Bfe { ty }, [ty, Ty::U32, Ty::U32])
        }
        "bfi" => {
            let ty = one_ty(&mods(rest), base)?;
            nops(r, 5)?;
            let imm8 = |o: &Opnd| match o {
                Opnd::Imm(Imm::Int(v)) => Some(*v as u8),
                _ => None,
            };
            let (pos, len) = (imm8(&r.ops[3]), imm8(&r.ops[4]));
            let c = match (pos, len) {
                (Some(_), Some(_)) => Src::Imm(0),
                (None, Some(_)) => src(&r.ops[3], Ty::U32, s)?,
                (Some(_), None) => src(&r.ops[4], Ty::U32, s)?,
                (None, None) => return Err("bfi with both position and length in registers is not supported".into()),
            };
            let op = AluOp::Bfi { bits: tbits(ty) as u8, pos, len };
            let srcs = [src(&r.ops[1], ty, s)?, src(&r.ops[2], ty, s)?, c];
            one(Op::Alu { op, dst: reg(&r.ops[0])?, src: srcs })
        }
        "prmt" => {
            let m = mods(rest);
            one_ty(&m, base)?;
            alu3(AluOp::Prmt, [Ty::B32; 3])
        }
        "selp" => {
            let ty = one_ty(&mods(rest), base)?;
            alu3(AluOp::Selp { bits: tbits(ty) as u8 }, [ty, ty, Ty::Pred])
        }
        "slct" => {
            let m = mods(rest);
            if !m.other.is_empty() || m.tys.len() != 2 {
                return Err("slct needs .dtype.(s32|f32)".into());
            }
            let (dty, cty) = (m.tys[0], m.tys[1]);
            alu3(AluOp::Slct { bits: tbits(dty) as u8, cty, ftz: m.ftz }, [dty, dty, cty])
        }
        "setp" => {
            let cmp = rest.first().and_then(|p| cmp_of(p)).ok_or("setp needs a comparison")?;
            let mut rest = &rest[1..];
            let comb = match rest.first() {
                Some(&"and") => Some(BoolOp::And),
                Some(&"or") => Some(BoolOp::Or),
                Some(&"xor") => Some(BoolOp::Xor),
                _ => None,
            };
            if comb.is_some() {
                rest = &rest[1..];
            }
            let m = mods(rest);
            let ty = one_ty(&m, base)?;
            if ty.is_float() && !is_arith_float(ty) {
                return Err(format!("setp on {ty:?} is not supported"));
            }
            let want = if comb.is_some() { 4 } else { 3 };
            nops(r, want)?;
            let (a, b) = (src(&r.ops[1], ty, s)?, src(&r.ops[2], ty, s)?);
            let (c, neg_c) = match r.ops.get(3) {
                Some(Opnd::Not(p)) => (Src::Reg(*p), true),
                Some(o) => (src(o, Ty::Pred, s)?, false),
                None => (Src::Imm(0), false),
            };
            let op = |invert| AluOp::Setp { cmp, ty, ftz: m.ftz, comb, neg_c, invert };
            let mk = |dst, invert| DInst { guard: g, op: Decoded::Op(Op::Alu { op: op(invert), dst, src: [a, b, c] }) };
            match &r.ops[0] {
                Opnd::Pair(p, q) => {
                    // both destinations from the old sources: q first would clobber a source only if q is one of
                    // them; write p last unless p is a source of the q computation.
                    let srcs_regs = [a, b, c];
                    if srcs_regs.contains(&Src::Reg(*q)) && srcs_regs.contains(&Src::Reg(*p)) {
                        return Err("setp p|q overwriting its own sources is not supported".into());
                    }
                    if srcs_regs.contains(&Src::Reg(*q)) {
                        Ok(vec![mk(*p, false), mk(*q, true)])
                    } else {
                        Ok(vec![mk(*q, true), mk(*p, false)])
                    }
                }
                d => Ok(vec![mk(reg(d)?, false)]),
            }
        }
        "cvt" => {
            let m = mods(rest);
            if !m.other.is_empty() {
                return Err(format!("unsupported modifier .{}", m.other.join(".")));
            }
            let [dst, srct] = m.tys[..] else { return Err("cvt needs .dtype.atype".into()) };
            if matches!(dst, Ty::F16x2 | Ty::BF16x2) {
                if srct != Ty::F32 {
                    return Err("cvt to a packed pair needs .f32 sources".into());
                }
                nops(r, 3)?;
                let rnd = m.rnd.ok_or("cvt to f16x2/bf16x2 needs a rounding mode")?;
                return alu3(AluOp::CvtPack { dst, rnd, relu: m.relu }, [Ty::F32; 3]);
            }
            if matches!(dst, Ty::Tf32 | Ty::F16x2 | Ty::BF16x2 | Ty::B128) || matches!(srct, Ty::Tf32 | Ty::B128) {
                return Err(format!("cvt {dst:?} <- {srct:?} is not supported"));
            }
            nops(r, 2)?;
            let op = AluOp::Cvt { dst, src: srct, rnd: m.rnd, int_rnd: m.int_rnd, sat: m.sat, ftz: m.ftz };
            alu3(op, [srct; 3])
        }
        "ex2" | "lg2" | "sin" | "cos" | "tanh" | "rsqrt" | "rcp" | "sqrt" => {
            let m = mods(rest);
            let ty = one_ty(&m, base)?;
            if !is_arith_float(ty) {
                return Err(format!("{base} on {ty:?} is not supported"));
            }
            let op = if m.approx {
                let f = match base {
                    "ex2" => FloatFn::Ex2,
                    "lg2" => FloatFn::Lg2,
                    "sin" => FloatFn::Sin,
                    "cos" => FloatFn::Cos,
                    "tanh" => FloatFn::Tanh,
                    "rsqrt" => FloatFn::Rsqrt,
                    "rcp" => FloatFn::RcpApprox,
                    _ => FloatFn::SqrtApprox,
                };
                AluOp::Approx { f, ty, ftz: m.ftz }
            } else {
                let rnd = m.rnd.ok_or(format!("{base} needs .approx or a rounding mode"))?;
                match base {
                    "rcp" => AluOp::Rcp { ty, rnd, ftz: m.ftz },
                    "sqrt" => AluOp::Sqrt { ty, rnd, ftz: m.ftz },
                    _ => return Err(format!("{base} needs .approx")),
                }
            };
            alu3(op, [ty; 3])
        }
        "ld" | "st" => {
            let mut space = Space::Generic;
            let mut nc = false;
            let mut ty = None;
            let mut n = 1;
            for &p in rest {
                if let Some(sp) = space_of(p) {
                    space = sp;
                } else if p == "nc" {
                    nc = true;
                } else if p == "v2" || p == "v4" || p == "v8" {
                    n = p[1..].parse().unwrap();
                } else if let Some(t) = ty_of(p) {
                    ty = Some(t);
                } else if !ignorable(p) {
                    return Err(format!("unsupported modifier .{p}"));
                }
            }
            let ty = ty.ok_or("missing type")?;
            nops(r, 2)?;
            if base == "ld" {
                let dst = match &r.ops[0] {
                    Opnd::Vec(v) => v
                        .iter()
                        .map(|x| if *x == Opnd::Sink { Ok(None) } else { reg(x).map(Some) })
                        .collect::<R<Vec<_>>>()?,
                    o => vec![Some(reg(o)?)],
                };
                if dst.len() != n {
                    return Err("vector width does not match the destination list".into());
                }
                one(Op::Ld { space, ty, dst, addr: addr(&r.ops[1], s)?, nc })
            } else {
                let src = vec_srcs(&r.ops[1], ty, s)?;
                if src.len() != n {
                    return Err("vector width does not match the source list".into());
                }
                one(Op::St { space, ty, src, addr: addr(&r.ops[0], s)? })
            }
        }
        "atom" | "red" => {
            let mut space = Space::Generic;
            let mut op = None;
            let mut ty = None;
            for &p in rest {
                if let Some(sp) = space_of(p) {
                    space = sp;
                } else if let Some(t) = ty_of(p) {
                    ty = Some(t);
                } else if let Some(o) = atom_op(p) {
                    op = Some(o);
                } else if !(ignorable(p) || p == "noftz") {
                    return Err(format!("unsupported modifier .{p}"));
                }
            }
            let (op, ty) = (op.ok_or("missing atomic operation")?, ty.ok_or("missing type")?);
            let (dst, rest_ops) = if base == "atom" {
                (Some(reg(r.ops.first().ok_or("missing destination")?)?), &r.ops[1..])
            } else {
                (None, &r.ops[..])
            };
            let want = if op == AtomOp::Cas { 3 } else { 2 };
            if rest_ops.len() != want {
                return Err(format!("expected {want} operands after the destination"));
            }
            let b = src(&rest_ops[1], ty, s)?;
            let c = if op == AtomOp::Cas { src(&rest_ops[2], ty, s)? } else { Src::Imm(0) };
            one(Op::Atom { space, op, ty, dst, addr: addr(&rest_ops[0], s)?, src: [b, c] })
        }
        "cvta" => {
            let mut to_generic = true;
            let mut space = None;
            for &p in rest {
                if p == "to" {
                    to_generic = false;
                } else if let Some(sp) = space_of(p) {
                    space = Some(sp);
                } else if ty_of(p).is_none() {
                    return Err(format!("unsupported modifier .{p}"));
                }
            }
            nops(r, 2)?;
            let space = space.ok_or("cvta needs a state space")?;
            one(Op::Cvta { to_generic, space, dst: reg(&r.ops[0])?, src: src(&r.ops[1], Ty::U64, s)? })
        }
        "bra" => {
            let uni = match rest {
                [] => false,
                ["uni"] => true,
                _ => return Err("unsupported bra form".into()),
            };
            nops(r, 1)?;
            let Opnd::Name(label) = &r.ops[0] else { return Err("bra needs a label".into()) };
            Ok(vec![DInst { guard: g, op: Decoded::Branch { label: label.clone(), uni } }])
        }
        "ret" | "exit" => {
            if !rest.is_empty() && rest != ["uni"] {
                return Err("unsupported modifier".into());
            }
            one(Op::Exit)
        }
        "bar" | "barrier" => {
            let rest: Vec<&str> = rest.iter().copied().filter(|p| *p != "aligned" && *p != "cta").collect();
            match rest.as_slice() {
                ["warp", "sync"] => {
                    nops(r, 1)?;
                    one(Op::WarpSync { mask: src(&r.ops[0], Ty::U32, s)? })
                }
                ["sync"] | ["arrive"] | [] => {
                    let arrive_only = rest == ["arrive"];
                    if r.ops.is_empty() || r.ops.len() > 2 {
                        return Err("expected 1 or 2 operands".into());
                    }
                    let id = src(&r.ops[0], Ty::U32, s)?;
                    let count = r.ops.get(1).map(|o| src(o, Ty::U32, s)).transpose()?;
                    one(Op::Bar { id, count, arrive_only })
                }
                _ => Err("unsupported barrier form".into()),
            }
        }
        "membar" | "fence" => one(Op::Fence),
        "prefetch" | "prefetchu" | "pmevent" => one(Op::Nop),
        "shfl" => {
            let mode = match rest {
                ["sync", m, "b32"] => match *m {
                    "up" => ShflMode::Up,
                    "down" => ShflMode::Down,
                    "bfly" => ShflMode::Bfly,
                    "idx" => ShflMode::Idx,
                    _ => return Err("unknown shfl mode".into()),
                },
                _ => return Err("only shfl.sync.mode.b32 is supported".into()),
            };
            nops(r, 5)?;
            let (dst, pred) = match &r.ops[0] {
                Opnd::Pair(d, p) => (*d, Some(*p)),
                o => (reg(o)?, None),
            };
            let u = Ty::U32;
            one(Op::Shfl {
                mode,
                dst,
                pred,
                a: src(&r.ops[1], Ty::B32, s)?,
                b: src(&r.ops[2], u, s)?,
                c: src(&r.ops[3], u, s)?,
                mask: src(&r.ops[4], u, s)?,
            })
        }
        "vote" => {
            let mode = match rest {
                ["sync", "all", "pred"] => VoteMode::All,
                ["sync", "any", "pred"] => VoteMode::Any,
                ["sync", "uni", "pred"] => VoteMode::Uni,
                ["sync", "ballot", "b32"] => VoteMode::Ballot,
                _ => return Err("only vote.sync.{all,any,uni}.pred / vote.sync.ballot.b32 are supported".into()),
            };
            nops(r, 3)?;
            let (src_p, negate) = match &r.ops[1] {
                Opnd::Not(p) => (Src::Reg(*p), true),
                o => (src(o, Ty::Pred, s)?, false),
            };
            one(Op::Vote { mode, dst: reg(&r.ops[0])?, src: src_p, negate, mask: src(&r.ops[2], Ty::U32, s)? })
        }
        "redux" => {
            let (op, ty) = match rest {
                ["sync", o, t] => (
                    match *o {
                        "add" => ReduxOp::Add,
                        "min" => ReduxOp::Min,
                        "max" => ReduxOp::Max,
                        "and" => ReduxOp::And,
                        "or" => ReduxOp::Or,
                        "xor" => ReduxOp::Xor,
                        _ => return Err("unknown redux operation".into()),
                    },
                    ty_of(t).ok_or("unknown redux type")?,
                ),
                _ => return Err("only redux.sync.op.type is supported".into()),
            };
            nops(r, 3)?;
            one(Op::Redux {
                op,
                ty,
                dst: reg(&r.ops[0])?,
                src: src(&r.ops[1], ty, s)?,
                mask: src(&r.ops[2], Ty::U32, s)?,
            })
        }
        "mma" => {
            let [sync, aligned, shape, "row", "col", dt, at, bt, ct] = rest else {
                return Err("only mma.sync.aligned.shape.row.col.dtype.atype.btype.ctype is supported".into());
            };
            if *sync != "sync" || *aligned != "aligned" {
                return Err("mma must be .sync.aligned".into());
            }
            let shape = match *shape {
                "m16n8k16" => MmaShape::M16N8K16,
                "m16n8k8" => MmaShape::M16N8K8,
                "m16n8k4" => MmaShape::M16N8K4,
                _ => return Err(format!("unsupported mma shape {shape}")),
            };
            let t = |x: &str| ty_of(x).ok_or(format!("unknown mma type {x}"));
            let (d_ty, a_ty, b_ty, c_ty) = (t(dt)?, t(at)?, t(bt)?, t(ct)?);
            nops(r, 4)?;
            one(Op::Mma {
                shape,
                d_ty,
                a_ty,
                b_ty,
                c_ty,
                d: vec_regs(&r.ops[0])?,
                a: vec_srcs(&r.ops[1], Ty::B32, s)?,
                b: vec_srcs(&r.ops[2], Ty::B32, s)?,
                c: vec_srcs(&r.ops[3], c_ty, s)?,
            })
        }
        "ldmatrix" => {
            let mut trans = false;
            let mut n = 0;
            let mut space = Space::Generic;
            for &p in rest {
                match p {
                    "sync" | "aligned" | "m8n8" | "b16" => {}
                    "trans" => trans = true,
                    "x1" => n = 1,
                    "x2" => n = 2,
                    "x4" => n = 4,
                    _ => match space_of(p) {
                        Some(sp) => space = sp,
                        None => return Err(format!("unsupported modifier .{p}")),
                    },
                }
            }
            nops(r, 2)?;
            let dst = vec_regs(&r.ops[0])?;
            if dst.len() != n {
                return Err("ldmatrix .xN does not match the destination count".into());
            }
            one(Op::Ldmatrix { trans, dst, addr: addr(&r.ops[1], s)?, space })
        }
        "cp" => match rest {
            ["async", "commit_group"] => one(Op::CpAsyncCommit),
            ["async", "wait_all"] => one(Op::CpAsyncWait { n: 0 }),
            ["async", "wait_group"] => {
                nops(r, 1)?;
                let Opnd::Imm(Imm::Int(n)) = r.ops[0] else { return Err("wait_group needs an immediate".into()) };
                one(Op::CpAsyncWait { n: n as u32 })
            }
            ["async", c, "shared" | "shared::cta", "global", hints @ ..]
                if (*c == "ca" || *c == "cg") && hints.iter().all(|h| ignorable(h)) =>
            {
                if r.ops.len() != 3 && r.ops.len() != 4 {
                    return Err("expected 3 or 4 operands".into());
                }
                let Opnd::Imm(Imm::Int(cp_size)) = r.ops[2] else { return Err("cp-size must be an immediate".into()) };
                let src_size = r.ops.get(3).map(|o| src(o, Ty::U32, s)).transpose()?;
                one(Op::CpAsync {
                    dst: addr(&r.ops[0], s)?,
                    src: addr(&r.ops[1], s)?,
                    cp_size: cp_size as u32,
                    src_size,
                })
            }
            _ => Err("unsupported cp form".into()),
        },
        _ => Err("unsupported instruction".into()),
    }
}

fn atom_op(p: &str) -> Option<AtomOp> {
    Some(match p {
        "add" => AtomOp::Add,
        "min" => AtomOp::Min,
        "max" => AtomOp::Max,
        "inc" => AtomOp::Inc,
        "dec" => AtomOp::Dec,
        "and" => AtomOp::And,
        "or" => AtomOp::Or,
        "xor" => AtomOp::Xor,
        "exch" => AtomOp::Exch,
        "cas" => AtomOp::Cas,
        _ => return None,
    })
}

fn int_ty(bits: u32) -> Ty {
    match bits {
        8 => Ty::B8,
        16 => Ty::B16,
        32 => Ty::B32,
        _ => Ty::B64,
    }
}

fn int_ty_signed(bits: u32, like: Ty) -> Ty {
    match (bits, like.is_signed()) {
        (32, true) => Ty::S32,
        (32, false) => Ty::U32,
        (64, true) => Ty::S64,
        _ => Ty::U64,
    }
}
