//! Decoding of individual instruction forms: the tensor-core-era forms nvcc emits for
//! `tests/data/tensor_core_forms.cu` (`nvcc --ptx -arch=compute_90 -O3 -lineinfo`, nvcc 13.0.88, committed as
//! `tensor_core_forms.ptx`), hand-written snippets, and errors.

use cuda_sim::alu::{AluOp, BoolOp, Cmp, DivKind, FloatFn, Rnd};
use cuda_sim::ir::{
    AddrBase, Address, AtomOp, Kernel, MmaShape, Op, ReduxOp, ShflMode, Space, Special, Src, SymbolRef, Ty, VoteMode,
};
use cuda_sim::parse::parse;

const TC: &str = include_str!("data/tensor_core_forms.ptx");

fn ops(k: &Kernel) -> Vec<&Op> {
    k.insts.iter().map(|i| &i.op).collect()
}

fn has(k: &Kernel, f: impl Fn(&Op) -> bool) -> bool {
    ops(k).into_iter().any(f)
}

#[test]
fn tensor_core_era_forms() {
    let m = parse(TC).unwrap_or_else(|e| panic!("{e}"));
    let k = m.kernel("tc").unwrap();
    // `.extern .shared .align 16 .b8 dyn[]` after the 1024-byte demoted `sm`
    assert_eq!(k.static_shared_bytes, 1024);
    assert_eq!(k.dyn_shared_offset, 1024);
    let r = |n: &str| k.reg_names.iter().position(|x| x == n).unwrap() as u32;
    // cvt.rn.bf16.f32 %rs1, %f1; cvt.rn.bf16x2.f32 %r1, %f3, %f2; cvt.f32.bf16; cvt.rn.f16x2.f32
    assert!(has(k, |o| matches!(
        o,
        Op::Alu { op: AluOp::Cvt { dst: Ty::BF16, src: Ty::F32, rnd: Some(Rnd::Rn), .. }, .. }
    )));
    assert!(has(k, |o| *o
        == Op::Alu {
            op: AluOp::CvtPack { dst: Ty::BF16x2, rnd: Rnd::Rn, relu: false },
            dst: r("%r1"),
            src: [Src::Reg(r("%f3")), Src::Reg(r("%f2")), Src::Imm(0)]
        }));
    assert!(has(k, |o| matches!(o, Op::Alu { op: AluOp::CvtPack { dst: Ty::F16x2, .. }, .. })));
    assert!(has(k, |o| matches!(o, Op::Alu { op: AluOp::Cvt { dst: Ty::F32, src: Ty::BF16, .. }, .. })));
    assert!(has(k, |o| matches!(o, Op::Alu { op: AluOp::Cvt { dst: Ty::F32, src: Ty::F16, .. }, .. })));
    // atomics
    assert!(has(k, |o| matches!(o, Op::Atom { space: Space::Global, op: AtomOp::Add, ty: Ty::F32, dst: Some(_), .. })));
    assert!(has(k, |o| matches!(o, Op::Atom { op: AtomOp::Add, ty: Ty::U32, src: [Src::Imm(1), _], .. })));
    assert!(has(k, |o| matches!(o, Op::Atom { op: AtomOp::Max, ty: Ty::S32, .. })));
    assert!(has(k, |o| matches!(o, Op::Atom { op: AtomOp::Cas, ty: Ty::B32, src: [Src::Reg(_), Src::Reg(_)], .. })));
    assert!(has(k, |o| matches!(o, Op::Atom { op: AtomOp::Exch, src: [Src::Imm(7), _], .. })));
    // warp-level
    assert!(has(k, |o| matches!(o, Op::Vote { mode: VoteMode::Ballot, negate: false, .. })));
    assert!(has(k, |o| matches!(o, Op::Vote { mode: VoteMode::All, .. })));
    assert!(has(k, |o| matches!(o, Op::Redux { op: ReduxOp::Add, ty: Ty::U32, .. })));
    assert!(has(k, |o| matches!(o, Op::Redux { op: ReduxOp::Max, ty: Ty::U32, .. })));
    assert!(has(k, |o| matches!(o, Op::Shfl { mode: ShflMode::Up, pred: Some(_), .. })));
    assert!(has(k, |o| matches!(o, Op::Shfl { mode: ShflMode::Idx, pred: Some(_), .. })));
    assert!(has(k, |o| *o == Op::WarpSync { mask: Src::Imm(0xFFFF_FFFF) }));
    assert!(has(k, |o| *o == Op::Fence));
    // cp.async
    assert!(has(k, |o| *o
        == Op::CpAsync {
            dst: Address { base: AddrBase::Reg(r("%r3")), offset: 0 },
            src: Address { base: AddrBase::Reg(r("%rd1")), offset: 0 },
            cp_size: 16,
            src_size: Some(Src::Imm(16)),
        }));
    assert!(has(k, |o| matches!(o, Op::CpAsync { src_size: Some(Src::Reg(_)), .. })));
    assert!(has(k, |o| *o == Op::CpAsyncCommit));
    assert_eq!(ops(k).iter().filter(|o| ***o == Op::CpAsyncWait { n: 0 }).count(), 2);
    // ldmatrix
    assert!(has(k, |o| *o
        == Op::Ldmatrix {
            trans: false,
            dst: vec![r("%r4"), r("%r5"), r("%r6"), r("%r7")],
            addr: Address { base: AddrBase::Reg(r("%r30")), offset: 0 },
            space: Space::Shared,
        }));
    assert!(has(k, |o| matches!(o, Op::Ldmatrix { trans: true, dst, .. } if dst.len() == 2)));
    // mma
    let f = |n: &str| Src::Reg(r(n));
    assert!(has(k, |o| *o
        == Op::Mma {
            shape: MmaShape::M16N8K16,
            d_ty: Ty::F32,
            a_ty: Ty::BF16,
            b_ty: Ty::BF16,
            c_ty: Ty::F32,
            d: vec![r("%f17"), r("%f18"), r("%f19"), r("%f20")],
            a: vec![f("%r4"), f("%r5"), f("%r6"), f("%r7")],
            b: vec![f("%r9"), f("%r10")],
            c: vec![f("%f17"), f("%f18"), f("%f19"), f("%f20")],
        }));
    assert!(has(k, |o| matches!(o, Op::Mma { shape: MmaShape::M16N8K16, a_ty: Ty::F16, .. })));
    assert!(has(k, |o| matches!(o, Op::Mma { shape: MmaShape::M16N8K8, a_ty: Ty::Tf32, .. })));
    // approx functions, directed rounding, misc integer ops
    for f in [FloatFn::Sin, FloatFn::Cos, FloatFn::Lg2, FloatFn::Ex2, FloatFn::RcpApprox] {
        assert!(has(k, |o| matches!(o, Op::Alu { op: AluOp::Approx { f: g, .. }, .. } if *g == f)), "{f:?}");
    }
    assert!(has(k, |o| matches!(o, Op::Alu { op: AluOp::FDiv { kind: DivKind::Approx, .. }, .. })));
    assert!(has(k, |o| matches!(o, Op::Alu { op: AluOp::FMul { rnd: Rnd::Rz, .. }, .. })));
    assert!(has(k, |o| matches!(o, Op::Alu { op: AluOp::FAdd { rnd: Rnd::Rm, .. }, .. })));
    assert!(has(k, |o| matches!(o, Op::Alu { op: AluOp::Fma { rnd: Rnd::Rp, .. }, .. })));
    assert!(has(k, |o| matches!(o, Op::Alu { op: AluOp::CopySign { ty: Ty::F32 }, .. })));
    assert!(has(k, |o| matches!(o, Op::Alu { op: AluOp::Prmt, .. })));
    assert!(has(k, |o| matches!(
        o,
        Op::Alu {
            op: AluOp::FDiv { ty: Ty::F64, kind: DivKind::Ieee(Rnd::Rn), .. },
            src: [_, Src::Imm(0x4008000000000000), _],
            ..
        }
    )));
}

const SNIPPET: &str = r#"
.version 8.0
.target sm_90
.address_size 64
.const .align 4 .f32 ctab[2] = {1.5, 0f40000000};
.shared .align 4 .b8 unused_buf[64];
/* a block
   comment */
.visible .entry snip(
	.param .u64 snip_param_0,
	.param .u8 snip_param_1,
	.param .f64 snip_param_2
)
.reqntid 128
{
	.reg .pred 	%p<4>;
	.reg .b32 	%r<8>;
	.reg .b64 	%rd<4>;
	.reg .f64 	%fd<2>;
	.shared .align 8 .b8 tile[100];
	.loc	3 10 2
	mov.u32 	%r1, %laneid;
	mov.u32 	%r2, %nctaid.y;
	setp.lt.s32 	%p1|%p2, %r1, %r2;
	setp.eq.and.s32 	%p3, %r1, 0, !%p1;
	@!%p3 bra 	$L__end;
	.loc	3 11 4
	ld.global.v4.u32 	{%r3, _, %r4, _}, [%rd1+-16];
	ld.global.nc.L1::no_allocate.v2.u32 	{%r5, %r6}, [%rd1];
	st.shared.u32 	[tile+8], %r3;
	ld.const.f32 	%r7, [ctab+4];
	mov.b64 	%rd2, {%r3, %r4};
	mov.b64 	{%r5, _}, %rd2;
	mov.f64 	%fd1, 0d3FF8000000000000;
	add.f64 	%fd1, %fd1, 0dBFF0000000000000;
	add.s64 	%rd3, %rd2, -1;
	shl.b64 	%rd3, %rd3, 0x3;
	mov.u64 	%rd3, tile;
	cvta.shared.u64 	%rd3, %rd3;
	ld.u32 	%r1, [%rd3];
	ld.param.u8 	%r1, [snip_param_1];
	barrier.sync.aligned 	1, 64;
	bar.arrive 	2, 32;
	red.shared.add.u32 	[tile], %r1;
	bfi.b32 	%r1, %r2, %r3, 8, %r4;
	vote.sync.any.pred 	%p1, !%p2, -1;
	ld.global.u32 	%r1, [0x100];
	redux.sync.min.s32 	%r1, %r2, 0xffffffff;
	atom.shared.cas.b64 	%rd1, [%rd2+8], %rd3, 1;
	mul.wide.s16 	%r1, %r2, -2;
	fence.acq_rel.gpu;
	prefetch.global.L2 	[%rd1];
	bra.uni 	$L__end;
$L__end:
	ret;
}
"#;

#[test]
fn hand_written_forms() {
    let m = parse(SNIPPET).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.version, "8.0");
    assert_eq!(m.globals[0].space, Space::Const);
    assert_eq!(m.globals[0].init, [1.5f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat());
    let k = m.kernel("snip").unwrap();
    let offs: Vec<u32> = k.params.iter().map(|p| p.offset).collect();
    assert_eq!(offs, [0, 8, 16]);
    assert_eq!(k.param_bytes, 24);
    assert_eq!(k.reqntid, Some([128, 1, 1]));
    assert_eq!(k.static_shared_bytes, 100);
    assert_eq!(k.dyn_shared_offset, 112);
    let r = |n: &str| k.reg_names.iter().position(|x| x == n).unwrap() as u32;
    let o = ops(k);
    assert_eq!(
        *o[0],
        Op::Alu {
            op: AluOp::Mov { bits: 32 },
            dst: r("%r1"),
            src: [Src::Special(Special::LaneId), Src::Imm(0), Src::Imm(0)]
        }
    );
    assert!(matches!(o[1], Op::Alu { src: [Src::Special(Special::Nctaid(1)), ..], .. }));
    // p|q: two setp with the second inverted; q written first (it is not a source)
    let setp = |dst, invert| Op::Alu {
        op: AluOp::Setp { cmp: Cmp::Lt, ty: Ty::S32, ftz: false, comb: None, neg_c: false, invert },
        dst,
        src: [Src::Reg(r("%r1")), Src::Reg(r("%r2")), Src::Imm(0)],
    };
    assert_eq!(*o[2], setp(r("%p2"), true));
    assert_eq!(*o[3], setp(r("%p1"), false));
    assert_eq!(
        *o[4],
        Op::Alu {
            op: AluOp::Setp {
                cmp: Cmp::Eq,
                ty: Ty::S32,
                ftz: false,
                comb: Some(BoolOp::And),
                neg_c: true,
                invert: false
            },
            dst: r("%p3"),
            src: [Src::Reg(r("%r1")), Src::Imm(0), Src::Reg(r("%p1"))]
        }
    );
    assert_eq!(k.insts[5].guard, Some((r("%p3"), true)));
    let end = k.insts.len() as u32 - 1;
    assert_eq!(*o[5], Op::Bra { target: end, uni: false });
    assert_eq!(k.locs[5].line, 10);
    assert_eq!(k.locs[6].line, 11);
    assert_eq!(m.files.len(), 0);
    assert_eq!(k.locs[6].file, u32::MAX);
    assert_eq!(
        *o[6],
        Op::Ld {
            space: Space::Global,
            ty: Ty::U32,
            dst: vec![Some(r("%r3")), None, Some(r("%r4")), None],
            addr: Address { base: AddrBase::Reg(r("%rd1")), offset: -16 },
            nc: false
        }
    );
    assert!(matches!(o[7], Op::Ld { nc: true, dst, .. } if dst.len() == 2));
    assert_eq!(
        *o[8],
        Op::St {
            space: Space::Shared,
            ty: Ty::U32,
            src: vec![Src::Reg(r("%r3"))],
            addr: Address { base: AddrBase::Symbol(SymbolRef::Shared(0)), offset: 8 }
        }
    );
    assert!(matches!(
        o[9],
        Op::Ld { space: Space::Const, addr: Address { base: AddrBase::Symbol(SymbolRef::Global(0)), offset: 4 }, .. }
    ));
    assert_eq!(*o[10], Op::Pack { dst: r("%rd2"), src: vec![Src::Reg(r("%r3")), Src::Reg(r("%r4"))], elem_bits: 32 });
    assert_eq!(*o[11], Op::Unpack { dst: vec![Some(r("%r5")), None], src: Src::Reg(r("%rd2")), elem_bits: 32 });
    assert!(matches!(o[12], Op::Alu { src: [Src::Imm(0x3FF8000000000000), ..], .. }));
    assert!(matches!(o[13], Op::Alu { src: [_, Src::Imm(0xBFF0000000000000), _], .. }));
    assert!(matches!(
        o[14],
        Op::Alu { op: AluOp::IAdd { ty: Ty::S64, sat: false }, src: [_, Src::Imm(u64::MAX), _], .. }
    ));
    assert!(matches!(o[15], Op::Alu { op: AluOp::Shl { bits: 64 }, src: [_, Src::Imm(3), _], .. }));
    assert!(matches!(o[16], Op::Alu { src: [Src::Symbol(SymbolRef::Shared(0)), ..], .. }));
    assert!(matches!(o[17], Op::Cvta { to_generic: true, space: Space::Shared, .. }));
    assert!(matches!(o[18], Op::Ld { space: Space::Generic, .. }));
    assert!(matches!(
        o[19],
        Op::Ld {
            space: Space::Param,
            ty: Ty::U8,
            addr: Address { base: AddrBase::Symbol(SymbolRef::Param(8)), offset: 0 },
            ..
        }
    ));
    assert_eq!(*o[20], Op::Bar { id: Src::Imm(1), count: Some(Src::Imm(64)), arrive_only: false });
    assert_eq!(*o[21], Op::Bar { id: Src::Imm(2), count: Some(Src::Imm(32)), arrive_only: true });
    assert!(matches!(o[22], Op::Atom { space: Space::Shared, op: AtomOp::Add, dst: None, .. }));
    assert!(matches!(
        o[23],
        Op::Alu { op: AluOp::Bfi { bits: 32, pos: Some(8), len: None }, src: [_, _, Src::Reg(_)], .. }
    ));
    assert_eq!(
        *o[24],
        Op::Vote {
            mode: VoteMode::Any,
            dst: r("%p1"),
            src: Src::Reg(r("%p2")),
            negate: true,
            mask: Src::Imm(0xFFFF_FFFF)
        }
    );
    assert!(matches!(o[25], Op::Ld { addr: Address { base: AddrBase::Abs, offset: 0x100 }, .. }));
    assert!(matches!(o[26], Op::Redux { op: ReduxOp::Min, ty: Ty::S32, mask: Src::Imm(0xFFFF_FFFF), .. }));
    assert!(matches!(
        o[27],
        Op::Atom {
            space: Space::Shared,
            op: AtomOp::Cas,
            ty: Ty::B64,
            dst: Some(_),
            src: [Src::Reg(_), Src::Imm(1)],
            ..
        }
    ));
    assert!(matches!(
        o[28],
        Op::Alu {
            op: AluOp::IMul { ty: Ty::S16, mode: cuda_sim::alu::MulMode::Wide },
            src: [_, Src::Imm(0xFFFE), _],
            ..
        }
    ));
    assert_eq!(*o[29], Op::Fence);
    assert_eq!(*o[30], Op::Nop);
    assert_eq!(*o[31], Op::Bra { target: 32, uni: true });
    assert_eq!(*o[32], Op::Exit);
}

fn err_of(body: &str) -> cuda_sim::parse::ParseError {
    let text = format!(
        ".version 8.0\n.target sm_90\n.address_size 64\n.visible .entry e()\n{{\n.reg .b32 %r<3>;\n{body}\n}}\n"
    );
    parse(&text).unwrap_err()
}

#[test]
fn errors_name_line_and_instruction() {
    let e = err_of("mov.u32 %r1, 1;\nfrobnicate.b32 %r1, %r2;");
    assert_eq!(e.line, 8);
    assert!(e.message.contains("frobnicate.b32"), "{e}");
    let e = err_of("add.cc.u32 %r1, %r1, %r2;");
    assert!(e.message.contains(".cc"), "{e}");
    let e = err_of("add.u32 %r1, %r9, %r2;");
    assert!(e.message.contains("%r9"), "{e}");
    let e = err_of("bra $L__nowhere;");
    assert!(e.message.contains("$L__nowhere"), "{e}");
    let e = err_of("ld.global.u32 %r1, [nosuchsym];");
    assert!(e.message.contains("nosuchsym"), "{e}");
    assert!(parse(".version 8.0\n.func f()\n{\nret;\n}\n").is_err());
}

#[test]
fn half_arithmetic_forms() {
    // nvcc 13.0.88 `--ptx -arch=compute_90 -O3` of tests/data/half_arith.cu
    let m = parse(include_str!("data/half_arith.ptx")).unwrap_or_else(|e| panic!("{e}"));
    let k = m.kernel("h").unwrap();
    let alu: Vec<AluOp> =
        ops(k).into_iter().filter_map(|o| if let Op::Alu { op, .. } = o { Some(*op) } else { None }).collect();
    for want in [
        AluOp::Fma { ty: Ty::BF16x2, rnd: Rnd::Rn, ftz: false, sat: false },
        AluOp::FAdd { ty: Ty::BF16x2, rnd: Rnd::Rn, ftz: false, sat: false },
        AluOp::FMul { ty: Ty::BF16x2, rnd: Rnd::Rn, ftz: false, sat: false },
        AluOp::Fma { ty: Ty::F16x2, rnd: Rnd::Rn, ftz: false, sat: false },
        AluOp::FMax { ty: Ty::F16x2, ftz: false },
        AluOp::FAdd { ty: Ty::F16, rnd: Rnd::Rn, ftz: false, sat: false },
        AluOp::FNeg { ty: Ty::F16, ftz: false },
        AluOp::Fma { ty: Ty::BF16, rnd: Rnd::Rn, ftz: false, sat: false },
        AluOp::FMin { ty: Ty::BF16, ftz: false },
    ] {
        assert!(alu.contains(&want), "{want:?}");
    }
}
