//! Unit tests of `exec::launch` on hand-built IR (no parser needed): every warp-level op, barriers with divergent
//! arrival, mma + ldmatrix with the PTX fragment layouts, cp.async, atomics across CTAs, the sanitizer checks.
//! Lane-local arithmetic is avoided on purpose (`alu` is opaque here): addresses are built with `Pack` (an OR of
//! shifted values, which equals an add on an allocation that starts at `GLOBAL_BASE`).

use cuda_sim::exec::{launch, ExecOptions, LaunchConfig, LaunchOutcome, ReportKind};
use cuda_sim::ir::*;
use cuda_sim::mem::DeviceMemory;

fn inst(op: Op) -> Inst {
    Inst { guard: None, op }
}
fn guarded(p: Reg, neg: bool, op: Op) -> Inst {
    Inst { guard: Some((p, neg)), op }
}
/// `dst = v`
fn mov(dst: Reg, v: Src) -> Inst {
    inst(Op::Pack { dst, src: vec![v], elem_bits: 64 })
}
/// `dst = a | b << sh` (an add when the bits do not overlap)
fn or_shl(dst: Reg, a: Src, b: Src, sh: u32) -> Inst {
    inst(Op::Pack { dst, src: vec![a, b], elem_bits: sh })
}
fn tid() -> Src {
    Src::Special(Special::Tid(0))
}
fn r(x: Reg) -> Src {
    Src::Reg(x)
}
fn at(base: Reg, offset: i64) -> Address {
    Address { base: AddrBase::Reg(base), offset }
}
/// `dst = ld.param.u64 [param + off]`
fn ld_param(dst: Reg, off: u32) -> Inst {
    inst(Op::Ld {
        space: Space::Param,
        ty: Ty::U64,
        dst: vec![Some(dst)],
        addr: Address { base: AddrBase::Symbol(SymbolRef::Param(off)), offset: 0 },
        nc: false,
    })
}
fn ld(space: Space, ty: Ty, dst: Vec<Reg>, addr: Address) -> Inst {
    inst(Op::Ld { space, ty, dst: dst.into_iter().map(Some).collect(), addr, nc: false })
}
fn st(space: Space, ty: Ty, src: Vec<Src>, addr: Address) -> Inst {
    inst(Op::St { space, ty, src, addr })
}
/// `p[i] = bit i of v` for the listed bit positions.
fn bits(v: Src, which: &[(usize, Reg)]) -> Inst {
    let n = which.iter().map(|w| w.0).max().unwrap() + 1;
    let mut dst = vec![None; n];
    for &(i, p) in which {
        dst[i] = Some(p);
    }
    inst(Op::Unpack { dst, src: v, elem_bits: 1 })
}

fn kernel(name: &str, insts: Vec<Inst>, num_regs: u32, shared: u32) -> Kernel {
    let n = insts.len();
    Kernel {
        name: name.into(),
        params: vec![],
        param_bytes: 32,
        num_regs,
        reg_names: (0..num_regs).map(|i| format!("%r{i}")).collect(),
        static_shared_bytes: shared,
        dyn_shared_offset: shared.div_ceil(16) * 16,
        local_bytes: 0,
        maxntid: None,
        reqntid: None,
        minnctapersm: None,
        insts,
        locs: (0..n).map(|i| Loc { file: 0, line: i as u32 + 1 }).collect(),
    }
}

fn module(k: &Kernel) -> Module {
    Module {
        kernels: vec![k.clone()],
        globals: vec![],
        files: vec!["test.cu".into()],
        version: "8.8".into(),
        target: "sm_90".into(),
    }
}

fn params(ptrs: &[u64]) -> Vec<u8> {
    let mut p = vec![0u8; 32];
    for (i, v) in ptrs.iter().enumerate() {
        p[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    p
}

fn run(k: &Kernel, grid: u32, block: u32, p: &[u64], mem: &DeviceMemory, opts: &ExecOptions) -> LaunchOutcome {
    let cfg = LaunchConfig { grid: [grid, 1, 1], block: [block, 1, 1], dyn_shared_bytes: 0 };
    launch(&module(k), k, &[], &cfg, &params(p), mem, opts)
}

fn read_u32(mem: &DeviceMemory, a: u64, n: usize) -> Vec<u32> {
    let mut b = vec![0u8; n * 4];
    mem.read(a, &mut b).unwrap();
    b.chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn clean(o: &LaunchOutcome) {
    assert!(!o.failed && o.reports.is_empty(), "unexpected reports: {:#?}", o.reports);
}

/// out[tid] = shfl.mode(tid, b, c); pred_out[tid] = predicate. Registers: 0 tid, 1 tid*4, 2 out, 3 addr, 4 d, 5 p,
/// 6 pred out addr.
fn shfl_kernel(mode: ShflMode, b: u32, c: u32) -> Kernel {
    kernel(
        "shfl",
        vec![
            mov(0, tid()),
            or_shl(1, Src::Imm(0), tid(), 2),
            ld_param(2, 0),
            or_shl(3, r(2), r(1), 0),
            inst(Op::Shfl {
                mode,
                dst: 4,
                pred: Some(5),
                a: r(0),
                b: Src::Imm(b as u64),
                c: Src::Imm(c as u64),
                mask: Src::Imm(0xffff_ffff),
            }),
            st(Space::Global, Ty::U32, vec![r(4)], at(3, 0)),
            st(Space::Global, Ty::U32, vec![r(5)], at(3, 128)),
            inst(Op::Exit),
        ],
        8,
        0,
    )
}

#[test]
fn shfl_every_mode() {
    for (mode, b, c) in [
        (ShflMode::Up, 3u32, 0u32),
        (ShflMode::Down, 5, 0x1f),
        (ShflMode::Bfly, 6, 0x1f),
        (ShflMode::Idx, 7, 0x1f),
        (ShflMode::Down, 1, 0x18 << 8 | 0x1f), // width 8 segments
        (ShflMode::Idx, 2, 0x18 << 8 | 0x1f),
    ] {
        let mem = DeviceMemory::new();
        let out = mem.alloc(256, "out").unwrap();
        let o = run(&shfl_kernel(mode, b, c), 1, 32, &[out], &mem, &ExecOptions::default());
        clean(&o);
        let got = read_u32(&mem, out, 64);
        for lane in 0..32i32 {
            let seg = ((c >> 8) & 31) as i32;
            let maxl = (lane & seg) | ((c & 31) as i32 & !seg);
            let (j, ok) = match mode {
                ShflMode::Up => (lane - b as i32, lane - b as i32 >= maxl),
                ShflMode::Down => (lane + b as i32, lane + b as i32 <= maxl),
                ShflMode::Bfly => (lane ^ b as i32, (lane ^ b as i32) <= maxl),
                ShflMode::Idx => ((lane & seg) | (b as i32 & !seg), ((lane & seg) | (b as i32 & !seg)) <= maxl),
            };
            let want = if ok { j } else { lane };
            assert_eq!(got[lane as usize], want as u32, "{mode:?} b={b} c={c:#x} lane {lane}");
            assert_eq!(got[32 + lane as usize], ok as u32, "{mode:?} predicate lane {lane}");
        }
    }
}

#[test]
fn vote_and_redux() {
    // p = bit 0 of tid; q = bit 1 (0 for lanes 0,1,4,5,...). out[0..32] ballot(p), [32..] all(q|...), any, uni.
    let mem = DeviceMemory::new();
    let out = mem.alloc(1024, "out").unwrap();
    let full = Src::Imm(0xffff_ffff);
    let k = kernel(
        "vote",
        vec![
            mov(0, tid()),
            or_shl(1, Src::Imm(0), tid(), 2),
            ld_param(2, 0),
            or_shl(3, r(2), r(1), 0),
            bits(r(0), &[(0, 5), (1, 6)]),
            inst(Op::Vote { mode: VoteMode::Ballot, dst: 7, src: r(5), negate: false, mask: full }),
            inst(Op::Vote { mode: VoteMode::All, dst: 8, src: r(5), negate: false, mask: Src::Imm(0xaaaa_aaaa) }),
            inst(Op::Vote { mode: VoteMode::Any, dst: 9, src: r(6), negate: true, mask: full }),
            inst(Op::Vote { mode: VoteMode::Uni, dst: 10, src: r(5), negate: false, mask: full }),
            inst(Op::Redux { op: ReduxOp::Add, ty: Ty::U32, dst: 11, src: r(0), mask: full }),
            inst(Op::Redux { op: ReduxOp::Max, ty: Ty::S32, dst: 12, src: r(0), mask: full }),
            inst(Op::Redux { op: ReduxOp::Or, ty: Ty::B32, dst: 13, src: r(1), mask: full }),
            inst(Op::Redux { op: ReduxOp::Min, ty: Ty::U32, dst: 14, src: r(0), mask: Src::Imm(0xffff_0000) }),
            st(Space::Global, Ty::U32, vec![r(7)], at(3, 0)),
            st(Space::Global, Ty::U32, vec![r(8)], at(3, 128)),
            st(Space::Global, Ty::U32, vec![r(9)], at(3, 256)),
            st(Space::Global, Ty::U32, vec![r(10)], at(3, 384)),
            st(Space::Global, Ty::U32, vec![r(11)], at(3, 512)),
            st(Space::Global, Ty::U32, vec![r(12)], at(3, 640)),
            st(Space::Global, Ty::U32, vec![r(13)], at(3, 768)),
            st(Space::Global, Ty::U32, vec![r(14)], at(3, 896)),
            inst(Op::Exit),
        ],
        16,
        0,
    );
    let o = run(&k, 1, 32, &[out], &mem, &ExecOptions::default());
    clean(&o);
    let g = read_u32(&mem, out, 256);
    for l in 0..32 {
        assert_eq!(g[l], 0xaaaa_aaaa, "ballot");
        assert_eq!(g[32 + l], 1, "all over the odd lanes");
        assert_eq!(g[64 + l], 1, "any(!bit1)");
        assert_eq!(g[96 + l], 0, "uni");
        assert_eq!(g[128 + l], (0..32).sum::<u32>(), "redux.add");
        assert_eq!(g[160 + l], 31, "redux.max");
        assert_eq!(g[192 + l], 0x7c, "redux.or");
        assert_eq!(g[224 + l], 16, "redux.min over the upper half");
    }
}

/// Threads write s[tid]; odd and even lanes reach the barrier at different instructions; threads < 32 then read
/// s[tid + 32] (written by the other warp). Without the barrier that is a race.
fn barrier_kernel(with_barrier: bool) -> Kernel {
    let bar =
        |b: bool| if b { inst(Op::Bar { id: Src::Imm(0), count: None, arrive_only: false }) } else { inst(Op::Nop) };
    kernel(
        "bar_divergent",
        vec![
            mov(0, tid()),                                                 // 0
            or_shl(1, Src::Imm(0), tid(), 2),                              // 1
            bits(r(0), &[(0, 5), (5, 6)]),                                 // 2
            st(Space::Shared, Ty::U32, vec![r(0)], at(1, 0)),              // 3
            guarded(5, false, inst(Op::Bra { target: 7, uni: false }).op), // 4
            bar(with_barrier),                                             // 5
            inst(Op::Bra { target: 8, uni: false }),                       // 6
            bar(with_barrier),                                             // 7
            ld_param(2, 0),                                                // 8
            guarded(6, false, Op::Exit),                                   // 9
            ld(Space::Shared, Ty::U32, vec![4], at(1, 128)),               // 10
            or_shl(3, r(2), r(1), 0),                                      // 11
            st(Space::Global, Ty::U32, vec![r(4)], at(3, 0)),              // 12
            inst(Op::Exit),                                                // 13
        ],
        8,
        256,
    )
}

#[test]
fn bar_sync_with_divergent_arrival() {
    let mem = DeviceMemory::new();
    let out = mem.alloc(256, "out").unwrap();
    let o = run(&barrier_kernel(true), 4, 64, &[out], &mem, &ExecOptions::default());
    clean(&o);
    let g = read_u32(&mem, out, 32);
    assert_eq!(g, (32..64).collect::<Vec<u32>>());
    assert_eq!(o.stats.shared_bank_conflicts, 0);

    let o = run(&barrier_kernel(false), 4, 64, &[out], &mem, &ExecOptions::default());
    assert!(!o.failed);
    assert!(!o.reports.is_empty() && o.reports.iter().all(|r| r.kind == ReportKind::Racecheck), "{:#?}", o.reports);
    let m = &o.reports[0].message;
    // Warp 0 runs first, so the hazard is seen at warp 1's store (line 4) after warp 0's load (line 11).
    assert!(m.contains("bar_divergent") && (m.contains("test.cu:4") || m.contains("test.cu:11")), "{m}");
    assert!(m.contains("hazard") && m.contains("block (0,0,0)"), "{m}");
}

#[test]
fn atom_add_f32_across_many_ctas_is_exact() {
    let mem = DeviceMemory::new();
    let out = mem.alloc(16, "counter").unwrap();
    mem.write(out, &[0u8; 16]).unwrap();
    let k = kernel(
        "count",
        vec![
            ld_param(2, 0),
            inst(Op::Atom {
                space: Space::Global,
                op: AtomOp::Add,
                ty: Ty::F32,
                dst: Some(3),
                addr: at(2, 0),
                src: [Src::Imm(1.0f32.to_bits() as u64), Src::Imm(0)],
            }),
            inst(Op::Atom {
                space: Space::Global,
                op: AtomOp::Add,
                ty: Ty::U64,
                dst: None,
                addr: at(2, 8),
                src: [Src::Imm(3), Src::Imm(0)],
            }),
            inst(Op::Exit),
        ],
        4,
        0,
    );
    let opts = ExecOptions { threads: 4, ..ExecOptions::default() };
    let o = run(&k, 2000, 128, &[out], &mem, &opts);
    clean(&o);
    let mut b = [0u8; 16];
    mem.read(out, &mut b).unwrap();
    assert_eq!(f32::from_le_bytes(b[0..4].try_into().unwrap()), 256_000.0);
    assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 768_000);
}

fn bf16(x: f32) -> u16 {
    (x.to_bits() >> 16) as u16
}

/// A 16x16 bf16 (row-major) and B 16x8 bf16 (row-major [k][n]) go global -> shared by cp.async, then
/// `ldmatrix.x4` (A) and `ldmatrix.x2.trans` (B) build the fragments and `mma.m16n8k16` multiplies them with C
/// (16x8 f32 in the C fragment layout, read per lane as v4); D goes out per lane as v4.
#[test]
fn cp_async_ldmatrix_mma_bf16_matches_f64_reference() {
    let mem = DeviceMemory::new();
    // buf layout: [0,512) A, [512,768) B, [1024,1536) C fragments, [2048,2560) D fragments,
    // [4096, 4352) per-lane ldmatrix address of A, [4352, 4608) of B (u64 shared offsets).
    let buf = mem.alloc(8192, "buf").unwrap();
    let mut seed = 12345u64;
    let mut rnd = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // small integers / 8: exactly representable in bf16 and the products exact in f32
        (((seed >> 33) % 33) as i32 - 16) as f32 / 8.0
    };
    let a: Vec<f32> = (0..256).map(|_| rnd()).collect();
    let b: Vec<f32> = (0..128).map(|_| rnd()).collect();
    let c: Vec<f32> = (0..128).map(|_| rnd()).collect();
    let mut bytes = vec![0u8; 8192];
    for (i, x) in a.iter().enumerate() {
        bytes[2 * i..2 * i + 2].copy_from_slice(&bf16(*x).to_le_bytes());
    }
    for (i, x) in b.iter().enumerate() {
        bytes[512 + 2 * i..512 + 2 * i + 2].copy_from_slice(&bf16(*x).to_le_bytes());
    }
    // C fragment (PTX ISA, m16n8 f32 accumulators): c_i of lane l is C[g + 8*(i>=2)][2t + (i&1)].
    for l in 0..32 {
        let (g, t) = (l / 4, l % 4);
        for i in 0..4 {
            let (row, col) = (g + 8 * (i / 2), 2 * t + (i % 2));
            bytes[1024 + l * 16 + i * 4..1024 + l * 16 + i * 4 + 4].copy_from_slice(&c[row * 8 + col].to_le_bytes());
        }
        // ldmatrix.x4 of A: lanes 0-15 give rows 0-15 at column 0, lanes 16-31 rows 0-15 at column 8.
        let a_addr = ((l % 16) * 32 + (l / 16) * 16) as u64;
        bytes[4096 + l * 8..4096 + l * 8 + 8].copy_from_slice(&a_addr.to_le_bytes());
        // ldmatrix.x2.trans of B: lanes 0-15 give rows k = 0-15.
        let b_addr = 512 + ((l % 16) * 16) as u64;
        bytes[4352 + l * 8..4352 + l * 8 + 8].copy_from_slice(&b_addr.to_le_bytes());
    }
    mem.write(buf, &bytes).unwrap();
    let sh = |o| Address { base: AddrBase::Reg(1), offset: o };
    let gl = |o| Address { base: AddrBase::Reg(3), offset: o };
    let k = kernel(
        "mma",
        vec![
            or_shl(1, Src::Imm(0), tid(), 4), // lane * 16
            ld_param(2, 0),
            or_shl(3, r(2), r(1), 0), // buf + lane*16
            bits(tid(), &[(4, 5)]),
            inst(Op::CpAsync { dst: sh(0), src: gl(0), cp_size: 16, src_size: None }),
            guarded(5, true, Op::CpAsync { dst: sh(512), src: gl(512), cp_size: 16, src_size: None }),
            inst(Op::CpAsyncCommit),
            inst(Op::CpAsyncWait { n: 0 }),
            inst(Op::Bar { id: Src::Imm(0), count: None, arrive_only: false }),
            or_shl(6, Src::Imm(0), tid(), 3),
            or_shl(6, r(2), r(6), 0), // buf + lane*8
            ld(Space::Global, Ty::U64, vec![7], at(6, 4096)),
            ld(Space::Global, Ty::U64, vec![8], at(6, 4352)),
            inst(Op::Ldmatrix { trans: false, dst: vec![10, 11, 12, 13], addr: at(7, 0), space: Space::Shared }),
            inst(Op::Ldmatrix { trans: true, dst: vec![14, 15], addr: at(8, 0), space: Space::Shared }),
            ld(Space::Global, Ty::F32, vec![16, 17, 18, 19], gl(1024)),
            inst(Op::Mma {
                shape: MmaShape::M16N8K16,
                d_ty: Ty::F32,
                a_ty: Ty::BF16,
                b_ty: Ty::BF16,
                c_ty: Ty::F32,
                d: vec![20, 21, 22, 23],
                a: vec![r(10), r(11), r(12), r(13)],
                b: vec![r(14), r(15)],
                c: vec![r(16), r(17), r(18), r(19)],
            }),
            st(Space::Global, Ty::F32, vec![r(20), r(21), r(22), r(23)], gl(2048)),
            inst(Op::Exit),
        ],
        24,
        768,
    );
    let o = run(&k, 1, 32, &[buf], &mem, &ExecOptions::default());
    clean(&o);
    assert_eq!(o.stats.tensor_flops, 2 * 16 * 8 * 16);
    let mut out = vec![0u8; 512];
    mem.read(buf + 2048, &mut out).unwrap();
    for l in 0..32 {
        let (g, t) = (l / 4, l % 4);
        for i in 0..4 {
            let (row, col) = (g + 8 * (i / 2), 2 * t + (i % 2));
            let mut want = c[row * 8 + col] as f64;
            for kk in 0..16 {
                want += a[row * 16 + kk] as f64 * b[kk * 8 + col] as f64;
            }
            let got = f32::from_le_bytes(out[l * 16 + i * 4..l * 16 + i * 4 + 4].try_into().unwrap());
            assert_eq!(got as f64, want, "D[{row}][{col}] (lane {l}, d{i})");
        }
    }
}

/// ldmatrix.x1 / .x4 (.trans) against the ISA's per-lane formula: lane l gets row l/4, columns 2(l%4), +1 of each
/// 8x8 matrix (of the transposed matrix with .trans).
#[test]
fn ldmatrix_layouts() {
    for (n, trans) in [(1usize, false), (1, true), (4, false), (4, true), (2, true)] {
        let mem = DeviceMemory::new();
        let buf = mem.alloc(8192, "buf").unwrap();
        let mut bytes = vec![0u8; 8192];
        // shared: matrix m at 128*m, rows of 16 bytes; element (m, r, c) = m*64 + r*8 + c
        for m in 0..4 {
            for rr in 0..8 {
                for cc in 0..8 {
                    let v = (m * 64 + rr * 8 + cc) as u16;
                    let o = m * 128 + rr * 16 + cc * 2;
                    bytes[o..o + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        for l in 0..32 {
            let addr = ((l / 8) * 128 + (l % 8) * 16) as u64;
            bytes[4096 + l * 8..4096 + l * 8 + 8].copy_from_slice(&addr.to_le_bytes());
        }
        mem.write(buf, &bytes).unwrap();
        let dst: Vec<Reg> = (10..10 + n as u32).collect();
        let mut insts = vec![
            or_shl(1, Src::Imm(0), tid(), 4),
            ld_param(2, 0),
            or_shl(3, r(2), r(1), 0),
            ld(Space::Global, Ty::U32, vec![4, 5, 6, 7], at(3, 0)),
            st(Space::Shared, Ty::U32, vec![r(4), r(5), r(6), r(7)], at(1, 0)),
            inst(Op::Bar { id: Src::Imm(0), count: None, arrive_only: false }),
            or_shl(6, Src::Imm(0), tid(), 3),
            or_shl(6, r(2), r(6), 0),
            ld(Space::Global, Ty::U64, vec![8], at(6, 4096)),
            inst(Op::Ldmatrix { trans, dst: dst.clone(), addr: at(8, 0), space: Space::Shared }),
        ];
        for (i, d) in dst.iter().enumerate() {
            insts.push(st(Space::Global, Ty::U32, vec![r(*d)], at(6, 6144 + 256 * i as i64)));
        }
        insts.push(inst(Op::Exit));
        let o = run(&kernel("ldm", insts, 16, 512), 1, 32, &[buf], &mem, &ExecOptions::default());
        clean(&o);
        for m in 0..n {
            let mut b = vec![0u8; 256];
            mem.read(buf + 6144 + 256 * m as u64, &mut b).unwrap();
            for l in 0..32 {
                let v = u64::from_le_bytes(b[l * 8..l * 8 + 8].try_into().unwrap());
                let v = v as u32; // stored as u32 into 8-byte slots: low half is the value
                let (rr, c0) = (l / 4, (l % 4) * 2);
                let e = |r: usize, c: usize| (m * 64 + r * 8 + c) as u32;
                let (e0, e1) = if trans { (e(c0, rr), e(c0 + 1, rr)) } else { (e(rr, c0), e(rr, c0 + 1)) };
                assert_eq!(v, e0 | e1 << 16, "x{n} trans={trans} matrix {m} lane {l}");
            }
        }
    }
}

#[test]
fn launch_checks() {
    let mem = DeviceMemory::new();
    let k = kernel("empty", vec![inst(Op::Exit)], 1, 0);
    let o = run(&k, 1, 1025, &[], &mem, &ExecOptions::default());
    assert!(o.failed && o.reports.len() == 1 && o.reports[0].kind == ReportKind::Launch, "{:#?}", o.reports);
    assert!(o.reports[0].message.contains("1025") && o.reports[0].message.contains("empty"));
    let mut k2 = k.clone();
    k2.maxntid = Some([256, 1, 1]);
    let o = run(&k2, 1, 512, &[], &mem, &ExecOptions::default());
    assert!(o.failed && o.reports[0].kind == ReportKind::Launch);
    let cfg = LaunchConfig { grid: [1, 1, 1], block: [32, 1, 1], dyn_shared_bytes: 60 * 1024 };
    let o = launch(&module(&k), &k, &[], &cfg, &params(&[]), &mem, &ExecOptions::default());
    assert!(o.failed && o.reports[0].kind == ReportKind::Launch, "{:#?}", o.reports);
    let opts = ExecOptions { max_dynamic_shared: 100 * 1024, ..ExecOptions::default() };
    let o = launch(&module(&k), &k, &[], &cfg, &params(&[]), &mem, &opts);
    clean(&o);
    let o = run(&k, 1, 1024, &[], &mem, &ExecOptions::default());
    clean(&o);
}

#[test]
fn memcheck_initcheck_and_warp_errors() {
    let mem = DeviceMemory::new();
    let buf = mem.alloc(64, "buf").unwrap();
    // out of bounds: thread t writes buf[t] for 32 threads of a 16-element buffer
    let k = kernel(
        "oob",
        vec![
            or_shl(1, Src::Imm(0), tid(), 2),
            ld_param(2, 0),
            or_shl(3, r(2), r(1), 0),
            st(Space::Global, Ty::U32, vec![r(1)], at(3, 0)),
            inst(Op::Exit),
        ],
        4,
        0,
    );
    let o = run(&k, 1, 32, &[buf], &mem, &ExecOptions::default());
    assert!(o.failed && o.reports.iter().all(|r| r.kind == ReportKind::Memcheck), "{:#?}", o.reports);
    let m = &o.reports[0].message;
    assert!(
        m.contains("oob") && m.contains("test.cu:4") && m.contains("thread (16,0,0)") && m.contains("nearest"),
        "{m}"
    );
    // initcheck: read buf[0..16] never written... buf was written by the launch above up to 16 elements; use a new one
    let fresh = mem.alloc(128, "fresh").unwrap();
    let k = kernel(
        "uninit",
        vec![
            or_shl(1, Src::Imm(0), tid(), 2),
            ld_param(2, 0),
            ld(Space::Global, Ty::U32, vec![4], at(2, 0)),
            inst(Op::Exit),
        ],
        8,
        0,
    );
    let o = run(&k, 1, 32, &[fresh], &mem, &ExecOptions::default());
    assert!(!o.failed && o.reports.len() == 1 && o.reports[0].kind == ReportKind::Initcheck, "{:#?}", o.reports);
    // misaligned v2 load
    let k = kernel(
        "misaligned",
        vec![ld_param(2, 0), ld(Space::Global, Ty::F32, vec![4, 5], at(2, 4)), inst(Op::Exit)],
        8,
        0,
    );
    let o = run(&k, 1, 1, &[buf], &mem, &ExecOptions::default());
    assert!(
        o.failed && o.reports[0].kind == ReportKind::Memcheck && o.reports[0].message.contains("misaligned"),
        "{:#?}",
        o.reports
    );
    // shfl whose mask names an exited lane
    let k = kernel(
        "shfl_exited",
        vec![
            bits(tid(), &[(0, 5)]),
            guarded(5, false, Op::Exit),
            inst(Op::Shfl {
                mode: ShflMode::Idx,
                dst: 4,
                pred: None,
                a: tid(),
                b: Src::Imm(0),
                c: Src::Imm(31),
                mask: Src::Imm(0xffff_ffff),
            }),
            inst(Op::Exit),
        ],
        8,
        0,
    );
    let o = run(&k, 1, 32, &[], &mem, &ExecOptions::default());
    assert!(
        o.failed && o.reports[0].kind == ReportKind::Error && o.reports[0].message.contains("exited"),
        "{:#?}",
        o.reports
    );
    // a barrier one warp never reaches is a deadlock... no: exited threads do not count. Threads waiting at a
    // shfl while the others sit at a barrier is one.
    let k = kernel(
        "deadlock",
        vec![
            bits(tid(), &[(5, 5)]),
            guarded(5, false, Op::Bra { target: 3, uni: false }),
            inst(Op::Bar { id: Src::Imm(0), count: None, arrive_only: false }),
            inst(Op::Shfl {
                mode: ShflMode::Idx,
                dst: 4,
                pred: None,
                a: tid(),
                b: Src::Imm(0),
                c: Src::Imm(31),
                mask: Src::Imm(0xffff_ffff),
            }),
            inst(Op::Exit),
        ],
        8,
        0,
    );
    let o = run(&k, 1, 64, &[], &mem, &ExecOptions::default());
    // warp 1 (tid >= 32) jumps past the barrier, runs its shfl and exits; warp 0 then waits at the barrier with
    // every other thread exited: the barrier completes (exited threads do not count). No report.
    clean(&o);
}

#[test]
fn speed_of_a_loop() {
    // each thread: 200 iterations of a shared store + load + global store, via a back branch on a counter kept
    // in shared memory is not possible without ALU ops; instead run a long straight-line body many CTAs.
    let mem = DeviceMemory::new();
    let out = mem.alloc(1 << 16, "out").unwrap();
    let mut insts = vec![or_shl(1, Src::Imm(0), tid(), 2), ld_param(2, 0), or_shl(3, r(2), r(1), 0)];
    for i in 0..200 {
        insts.push(mov(4, Src::Imm(i)));
        insts.push(or_shl(5, r(4), tid(), 16));
        insts.push(st(Space::Shared, Ty::U32, vec![r(5)], at(1, 0)));
        insts.push(ld(Space::Shared, Ty::U32, vec![6], at(1, 0)));
    }
    insts.push(st(Space::Global, Ty::U32, vec![r(6)], at(3, 0)));
    insts.push(inst(Op::Exit));
    let k = kernel("speed", insts, 8, 1024);
    let t = std::time::Instant::now();
    let o = run(&k, 128, 256, &[out], &mem, &ExecOptions::default());
    clean(&o);
    let s = t.elapsed().as_secs_f64();
    eprintln!(
        "speed: {} thread-instructions in {s:.3} s = {:.1} M thread-instructions/s",
        o.stats.thread_instructions,
        o.stats.thread_instructions as f64 / s / 1e6
    );
}

#[test]
fn shfl_waits_for_lanes_arriving_later() {
    // 0: @p bra 3   1: shfl.bfly 1   2: bra 5   3: nop   4: bra 1   5: store, exit
    // Even lanes reach the shfl first and wait there for the odd lanes, which come back from pc 4.
    let mem = DeviceMemory::new();
    let out = mem.alloc(128, "out").unwrap();
    let k = kernel(
        "shfl_wait",
        vec![
            bits(tid(), &[(0, 5)]),
            guarded(5, false, Op::Bra { target: 4, uni: false }),
            inst(Op::Shfl {
                mode: ShflMode::Bfly,
                dst: 4,
                pred: None,
                a: tid(),
                b: Src::Imm(1),
                c: Src::Imm(31),
                mask: Src::Imm(0xffff_ffff),
            }),
            inst(Op::Bra { target: 6, uni: false }),
            inst(Op::Nop),
            inst(Op::Bra { target: 2, uni: false }),
            or_shl(1, Src::Imm(0), tid(), 2),
            ld_param(2, 0),
            or_shl(3, r(2), r(1), 0),
            st(Space::Global, Ty::U32, vec![r(4)], at(3, 0)),
            inst(Op::Exit),
        ],
        8,
        0,
    );
    let o = run(&k, 1, 32, &[out], &mem, &ExecOptions::default());
    clean(&o);
    assert_eq!(read_u32(&mem, out, 32), (0..32u32).map(|l| l ^ 1).collect::<Vec<_>>());
}

#[test]
fn shared_bank_conflicts() {
    for (shift, vec, want) in [(2u32, 1usize, 0u64), (3, 1, 1), (7, 1, 31), (0, 1, 0), (4, 4, 0), (5, 4, 4)] {
        let mem = DeviceMemory::new();
        let k = kernel(
            "banks",
            vec![
                // shift 0: every lane at address 0 (a broadcast)
                or_shl(1, Src::Imm(0), if shift == 0 { Src::Imm(0) } else { tid() }, shift),
                st(Space::Shared, Ty::U32, vec![Src::Imm(7); vec], at(1, 0)),
                inst(Op::Exit),
            ],
            4,
            32 * 4 * 128,
        );
        let opts = ExecOptions { racecheck: false, ..ExecOptions::default() };
        let o = run(&k, 1, 32, &[], &mem, &opts);
        assert!(!o.failed, "{:#?}", o.reports);
        assert_eq!(o.stats.shared_bank_conflicts, want, "stride {} bytes, v{vec}", 1u64 << shift);
    }
}

#[test]
fn a_warp_spinning_on_shared_memory_lets_the_writer_run() {
    // warp 0 spins until s[0] != 0; warp 1 sets it (after a delay loop of its own is not needed).
    // 0: p5 = bit 5 of tid   1: @p5 bra 5   2: ld.shared r4 [0]   3: p6 = bit 0 of r4   4: @!p6 bra 2 ; exit
    // 5: st.shared [0], 1   6: exit
    let mem = DeviceMemory::new();
    let k = kernel(
        "spin",
        vec![
            bits(tid(), &[(5, 5)]),
            guarded(5, false, Op::Bra { target: 6, uni: false }),
            inst(Op::Ld {
                space: Space::Shared,
                ty: Ty::U32,
                dst: vec![Some(4)],
                addr: Address { base: AddrBase::Abs, offset: 0 },
                nc: false,
            }),
            bits(r(4), &[(0, 6)]),
            guarded(6, true, Op::Bra { target: 2, uni: false }),
            inst(Op::Exit),
            inst(Op::St {
                space: Space::Shared,
                ty: Ty::U32,
                src: vec![Src::Imm(1)],
                addr: Address { base: AddrBase::Abs, offset: 0 },
            }),
            inst(Op::Exit),
        ],
        8,
        16,
    );
    let opts = ExecOptions { racecheck: false, ..ExecOptions::default() };
    let o = run(&k, 1, 64, &[], &mem, &opts);
    clean(&o);
}

/// Racecheck on broadcast reads (every lane reads the same word; the executor skips the per-byte checks for a
/// repeat of a clean read): a write by another thread after them, or before them, is still a hazard; the reads
/// alone, or a single write after a barrier, are clean.
#[test]
fn racecheck_broadcast_reads() {
    // p5 = bit 0 of tid; s[0] read (twice) by every thread, stored to by the odd threads before and/or after.
    let k = |write_before: bool, write_after: bool, barrier: bool| {
        let store = |on: bool| {
            if on {
                guarded(5, false, Op::St { space: Space::Shared, ty: Ty::U32, src: vec![r(0)], addr: at(1, 0) })
            } else {
                inst(Op::Nop)
            }
        };
        let bar =
            if barrier { inst(Op::Bar { id: Src::Imm(0), count: None, arrive_only: false }) } else { inst(Op::Nop) };
        kernel(
            "broadcast",
            vec![
                mov(0, tid()),
                mov(1, Src::Imm(0)),
                bits(r(0), &[(0, 5)]),
                store(write_before),
                ld(Space::Shared, Ty::U32, vec![4], at(1, 0)),
                ld(Space::Shared, Ty::U32, vec![6], at(1, 0)),
                bar,
                store(write_after),
                inst(Op::Exit),
            ],
            8,
            256,
        )
    };
    let mem = DeviceMemory::new();
    let races = |o: &LaunchOutcome| {
        assert!(!o.failed, "{:#?}", o.reports);
        o.reports.iter().filter(|r| r.kind == ReportKind::Racecheck).map(|r| r.message.clone()).collect::<Vec<_>>()
    };
    for block in [2, 32, 64] {
        clean(&run(&k(false, false, false), 1, block, &[], &mem, &ExecOptions::default()));
        if block == 2 {
            // (one writer: with more, the odd threads' stores race with each other)
            clean(&run(&k(false, true, true), 1, block, &[], &mem, &ExecOptions::default()));
        }
        let war = races(&run(&k(false, true, false), 1, block, &[], &mem, &ExecOptions::default()));
        assert!(war.iter().any(|m| m.contains("write-after-read")), "block {block}: {war:#?}");
        let raw = races(&run(&k(true, false, false), 1, block, &[], &mem, &ExecOptions::default()));
        assert!(raw.iter().any(|m| m.contains("read-after-write")), "block {block}: {raw:#?}");
    }
}

/// Shared-memory addresses are 32 bits: a register plus an immediate offset wraps modulo 2³², as on the GPU (nvcc
/// folds pipeline-stage offsets into the immediate, leaving a register that is "negative" on its own, e.g.
/// `add.s32 %r, ...; st.shared.v4.u32 [%r+20480]` in kernels/conv2d_tc.cu). [r + 16] with r = 2³² − 16 is shared
/// offset 0: the store lands there and reads back, with no memcheck report.
#[test]
fn shared_addresses_wrap_at_32_bits() {
    let mem = DeviceMemory::new();
    let out = mem.alloc(16, "out").unwrap();
    let k = kernel(
        "wrap",
        vec![
            ld_param(0, 0),
            mov(1, Src::Imm((1u64 << 32) - 16)),
            st(Space::Shared, Ty::U32, vec![Src::Imm(42)], at(1, 16)),
            ld(Space::Shared, Ty::U32, vec![2], Address { base: AddrBase::Abs, offset: 0 }),
            st(Space::Global, Ty::U32, vec![r(2)], at(0, 0)),
            inst(Op::Exit),
        ],
        4,
        16,
    );
    let o = run(&k, 1, 1, &[out], &mem, &ExecOptions::default());
    clean(&o);
    assert_eq!(read_u32(&mem, out, 1), vec![42]);
}
