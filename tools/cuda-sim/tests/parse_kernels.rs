//! Parses the PTX nvcc 13.0 emits for the project's kernels (a committed copy, see the file's first line) and
//! spot-checks decoded facts.

use cuda_sim::alu::AluOp;
use cuda_sim::ir::{AddrBase, Address, Module, Op, Space, Src, SymbolRef, Ty};
use cuda_sim::parse::parse;

const KERNELS: &str = include_str!("data/kernels_compute90.ptx");

fn module() -> Module {
    parse(KERNELS).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn all_kernels_parse() {
    let t = std::time::Instant::now();
    let m = module();
    let dt = t.elapsed();
    let n: usize = m.kernels.iter().map(|k| k.insts.len()).sum();
    println!("parsed {} kernels, {n} instructions, {} bytes of PTX in {dt:?}", m.kernels.len(), KERNELS.len());
    assert_eq!(m.kernels.len(), 41);
    assert_eq!(m.version, "9.0");
    assert_eq!(m.target, "sm_90");
    assert_eq!(m.files.len(), 21);
    assert_eq!(m.files[0], "/work/main/kernels/adam.cu");
    for k in &m.kernels {
        assert_eq!(k.insts.len(), k.locs.len());
        assert_eq!(k.reg_names.len() as u32, k.num_regs);
        assert!(matches!(k.insts.last().unwrap().op, Op::Exit | Op::Bra { .. }), "{}", k.name);
        for i in &k.insts {
            if let Op::Bra { target, .. } = i.op {
                assert!((target as usize) < k.insts.len());
            }
        }
        assert!(k.locs.iter().all(|l| (l.file as usize) < m.files.len()), "{}", k.name);
    }
}

#[test]
fn struct_param_offsets() {
    let m = module();
    let k = m.kernel("conv2d_forward_f32").unwrap();
    let offs: Vec<(u32, u32, u32)> = k.params.iter().map(|p| (p.offset, p.size, p.align)).collect();
    assert_eq!(offs, vec![(0, 8, 8), (8, 8, 8), (16, 8, 8), (24, 4, 4), (32, 8, 8), (40, 48, 4)]);
    assert_eq!(k.params[5].ty, Ty::B8);
    assert_eq!(k.params[5].name, "conv2d_forward_f32_param_5");
    assert_eq!(k.param_bytes, 88);
    assert_eq!(k.maxntid, Some([256, 1, 1]));
    assert_eq!(k.minnctapersm, None);
    // `ld.param.u32 %r77, [conv2d_forward_f32_param_5+44];`
    let want = Address { base: AddrBase::Symbol(SymbolRef::Param(40)), offset: 44 };
    assert!(k
        .insts
        .iter()
        .any(|i| matches!(&i.op, Op::Ld { space: Space::Param, ty: Ty::U32, addr, .. } if *addr == want)));
    // two kernel-scope shared tiles of 4352 bytes, 16-aligned
    assert_eq!(k.static_shared_bytes, 8704);
    assert_eq!(k.dyn_shared_offset, 8704);
    assert_eq!(k.locs[0].line, 41);
    assert_eq!(m.files[k.locs[0].file as usize], "/work/main/kernels/conv2d.cu");
    let w = m.kernel("conv2d_wgrad_f32").unwrap();
    assert_eq!(w.minnctapersm, Some(2));
}

#[test]
fn local_depot_and_global_table() {
    let m = module();
    let k = m.kernel("rng_normal_f32").unwrap();
    assert_eq!(k.local_bytes, 28);
    // `mov.u64 %SPL, __local_depot13;`
    assert!(matches!(
        k.insts[0].op,
        Op::Alu { op: AluOp::Mov { bits: 64 }, src: [Src::Symbol(SymbolRef::Local(0)), ..], .. }
    ));
    assert_eq!(m.globals.len(), 1);
    let g = &m.globals[0];
    assert_eq!(g.name, "__cudart_i2opi_f");
    assert_eq!((g.space, g.size, g.align), (Space::Global, 24, 4));
    assert_eq!(
        g.init,
        vec![
            65, 144, 67, 60, 153, 149, 98, 219, 192, 221, 52, 245, 209, 87, 39, 252, 41, 21, 68, 78, 110, 131, 249, 162
        ]
    );
    // `mov.u64 %rd54, __cudart_i2opi_f;`
    assert!(k.insts.iter().any(|i| matches!(i.op, Op::Alu { src: [Src::Symbol(SymbolRef::Global(0)), ..], .. })));
    assert!(k.insts.iter().any(|i| matches!(i.op, Op::St { space: Space::Local, .. })));
}

#[test]
fn module_scope_shared() {
    let m = module();
    // gn_partials (256 bytes, align 8) is the only static shared array of the group-norm kernels
    for name in ["group_norm_forward_f32", "group_norm_backward_f32"] {
        let k = m.kernel(name).unwrap();
        assert_eq!(k.static_shared_bytes, 256, "{name}");
        assert_eq!(k.dyn_shared_offset, 256, "{name}");
        assert!(k.insts.iter().any(|i| matches!(
            &i.op,
            Op::St { space: Space::Shared, addr: Address { base: AddrBase::Symbol(SymbolRef::Shared(0)), .. }, .. }
                | Op::Ld {
                    space: Space::Shared,
                    addr: Address { base: AddrBase::Symbol(SymbolRef::Shared(0)), .. },
                    ..
                }
                | Op::Alu { src: [Src::Symbol(SymbolRef::Shared(0)), ..], .. }
        )));
    }
    // kernels that do not reference it do not pay for it
    assert_eq!(m.kernel("adam_ema_step_f32").unwrap().static_shared_bytes, 0);
    assert_eq!(m.kernel("reduce_partial_f32").unwrap().static_shared_bytes, 2048);
}

#[test]
fn shfl_with_predicate_output() {
    let m = module();
    let n = m
        .kernels
        .iter()
        .flat_map(|k| &k.insts)
        .filter(|i| matches!(i.op, Op::Shfl { pred: Some(_), mask: Src::Reg(_), .. }))
        .count();
    assert_eq!(n, 55);
}

#[test]
fn every_decoded_alu_op_evaluates_without_panicking() {
    let mut m = module();
    m.kernels.extend(parse(include_str!("data/tensor_core_forms.ptx")).unwrap().kernels);
    m.kernels.extend(parse(include_str!("data/half_arith.ptx")).unwrap().kernels);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // mix in edge values
        match seed % 8 {
            0 => 0,
            1 => u64::MAX,
            2 => 0x8000_0000,
            3 => 0x7FC0_0000,
            _ => seed,
        }
    };
    let mut n = 0;
    for k in &m.kernels {
        for i in &k.insts {
            if let Op::Alu { op, .. } = &i.op {
                for _ in 0..8 {
                    cuda_sim::alu::eval(op, rnd(), rnd(), rnd());
                }
                cuda_sim::alu::simt_flops(op);
                n += 1;
            }
        }
    }
    assert!(n > 5000, "{n}");
}
