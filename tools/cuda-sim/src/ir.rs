//! The decoded form of a PTX module: what `parse` produces and `exec` runs.
//!
//! Decoding happens once per module load. Registers are resolved to dense indices into a per-thread register file
//! of 64-bit slots (every PTX register, predicates included, is one slot holding its value's raw bits,
//! zero-extended); branch targets are resolved to instruction indices; every instruction keeps its `.loc`.
//! Lane-local arithmetic, logic and conversions are one variant, `Op::Alu`, whose semantics live in `alu::eval`;
//! everything that touches memory, control flow or other lanes has its own variant, run by `exec`.

use crate::alu::AluOp;

/// Index of a register slot in a thread's register file.
pub type Reg = u32;

/// Scalar types as PTX names them. `B*` are untyped bits; `Pred` is a predicate (0 or 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    Pred,
    B8,
    B16,
    B32,
    B64,
    B128,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F16,
    F16x2,
    BF16,
    BF16x2,
    Tf32,
    F32,
    F64,
}

impl Ty {
    /// Width in bytes (a predicate counts as 1).
    pub fn bytes(self) -> u32 {
        match self {
            Ty::Pred | Ty::B8 | Ty::U8 | Ty::S8 => 1,
            Ty::B16 | Ty::U16 | Ty::S16 | Ty::F16 | Ty::BF16 => 2,
            Ty::B32 | Ty::U32 | Ty::S32 | Ty::F32 | Ty::F16x2 | Ty::BF16x2 | Ty::Tf32 => 4,
            Ty::B64 | Ty::U64 | Ty::S64 | Ty::F64 => 8,
            Ty::B128 => 16,
        }
    }

    pub fn is_signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }

    pub fn is_float(self) -> bool {
        matches!(self, Ty::F16 | Ty::F16x2 | Ty::BF16 | Ty::BF16x2 | Ty::Tf32 | Ty::F32 | Ty::F64)
    }
}

/// State spaces of memory instructions. `Generic` addresses are resolved by `exec` through its windows
/// (see `mem::GENERIC_SHARED_BASE` / `mem::GENERIC_LOCAL_BASE`); everything else is global.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    Generic,
    Global,
    Shared,
    Local,
    Param,
    Const,
}

/// Special registers (`%tid.x`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Special {
    Tid(u8),
    Ntid(u8),
    Ctaid(u8),
    Nctaid(u8),
    LaneId,
    WarpId,
    NWarpId,
    SmId,
    LaneMaskEq,
    LaneMaskLt,
    LaneMaskLe,
    LaneMaskGt,
    LaneMaskGe,
    Clock,
    Clock64,
    GlobalTimer,
    /// `%dynamic_smem_size`
    DynamicSmemSize,
    /// `%total_smem_size`
    TotalSmemSize,
}

/// A source operand: a register, an immediate (raw bits, already converted to the instruction's type: an f32
/// immediate `0f3F800000` or `1.0` is stored as its f32 bits, an f64 one as f64 bits), or a special register.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Src {
    Reg(Reg),
    Imm(u64),
    Special(Special),
    /// The address of a module-scope symbol used as a value (`mov.u64 %rd1, sym;`), resolved by `exec`.
    Symbol(SymbolRef),
}

/// A module-scope or kernel-scope named object whose address an instruction takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolRef {
    /// `Module::globals[i]` (.global or .const data): its device address is fixed at module load.
    Global(u32),
    /// Offset `off` of the CTA's shared window (a module-scope or kernel-scope `.shared` variable, or the
    /// extern dynamic array, whose offset is `Kernel::dyn_shared_offset`).
    Shared(u32),
    /// Offset `off` of the thread's local window (`__local_depotN`).
    Local(u32),
    /// Offset `off` of the kernel's parameter buffer (a `.param` name used as a value).
    Param(u32),
}

/// An address operand `[base+offset]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AddrBase {
    Reg(Reg),
    Symbol(SymbolRef),
    /// `[imm]`: an absolute address.
    Abs,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Address {
    pub base: AddrBase,
    pub offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShflMode {
    Up,
    Down,
    Bfly,
    Idx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteMode {
    All,
    Any,
    Uni,
    Ballot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomOp {
    Add,
    Min,
    Max,
    Inc,
    Dec,
    And,
    Or,
    Xor,
    Exch,
    Cas,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduxOp {
    Add,
    Min,
    Max,
    And,
    Or,
    Xor,
}

/// `mma.sync.aligned.<shape>.row.col.<dtype>.<atype>.<btype>.<ctype>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmaShape {
    M16N8K16,
    M16N8K8,
    M16N8K4,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Lane-local `dst = f(src[0], src[1], src[2])`; see `alu::AluOp`. Unused sources are `Src::Imm(0)`.
    Alu { op: AluOp, dst: Reg, src: [Src; 3] },
    /// `setp.cmp.ty p|q, a, b(, c)`'s second destination and other two-result forms are decoded as two `Alu`.
    /// `mov.b64 d, {a, b}` and similar: `dst = src[0] | src[1] << bits | ...` (low element first).
    Pack { dst: Reg, src: Vec<Src>, elem_bits: u32 },
    /// `mov.b64 {a, b}, s`: `dst[i] = (s >> i*bits) & mask`.
    Unpack { dst: Vec<Option<Reg>>, src: Src, elem_bits: u32 },
    /// `ld.space.(v2|v4).ty`: `dst.len()` elements of `ty` from consecutive addresses. `nc` = `.global.nc`.
    /// A `None` destination is `_` (the element is read and dropped).
    Ld { space: Space, ty: Ty, dst: Vec<Option<Reg>>, addr: Address, nc: bool },
    /// `st.space.(v2|v4).ty`.
    St { space: Space, ty: Ty, src: Vec<Src>, addr: Address },
    /// `atom` (dst = old value) and `red` (dst None). `src[1]` is only used by `cas`. `ty` may be f32/f64/f16x2/bf16x2.
    Atom { space: Space, op: AtomOp, ty: Ty, dst: Option<Reg>, addr: Address, src: [Src; 2] },
    /// `cvta(.to).space.u64 dst, src`: `to_generic` false means generic -> space.
    Cvta { to_generic: bool, space: Space, dst: Reg, src: Src },
    /// `bra(.uni) target`: target is an index into `Kernel::insts`.
    Bra { target: u32, uni: bool },
    /// `ret` / `exit`: the thread finishes.
    Exit,
    /// `bar.sync` / `barrier.sync(.aligned)` / `bar.arrive` with barrier `id` and optional thread `count`.
    Bar { id: Src, count: Option<Src>, arrive_only: bool },
    /// `bar.warp.sync mask`
    WarpSync { mask: Src },
    /// `membar` / `fence`: ordering only, nothing to simulate with synchronous execution.
    Fence,
    /// `shfl.sync.mode.b32 dst(|pred), a, b, c, mask`.
    Shfl { mode: ShflMode, dst: Reg, pred: Option<Reg>, a: Src, b: Src, c: Src, mask: Src },
    /// `vote.sync.mode.(pred|b32) dst, src_pred, mask` (`negate` = `!p` source).
    Vote { mode: VoteMode, dst: Reg, src: Src, negate: bool, mask: Src },
    /// `redux.sync.op.ty dst, src, mask`.
    Redux { op: ReduxOp, ty: Ty, dst: Reg, src: Src, mask: Src },
    /// `mma.sync.aligned.shape.row.col.dty.aty.bty.cty {d}, {a}, {b}, {c}`; fragments per the PTX ISA layouts.
    Mma { shape: MmaShape, d_ty: Ty, a_ty: Ty, b_ty: Ty, c_ty: Ty, d: Vec<Reg>, a: Vec<Src>, b: Vec<Src>, c: Vec<Src> },
    /// `ldmatrix.sync.aligned.m8n8.x{1,2,4}(.trans).shared.b16 {d}, [addr]`.
    Ldmatrix { trans: bool, dst: Vec<Reg>, addr: Address, space: Space },
    /// `cp.async.(ca|cg).shared.global [dst], [src], cp_size(, src_size)`: bytes past src_size are zero-filled.
    CpAsync { dst: Address, src: Address, cp_size: u32, src_size: Option<Src> },
    /// `cp.async.commit_group`
    CpAsyncCommit,
    /// `cp.async.wait_group n` (`wait_all` = n 0)
    CpAsyncWait { n: u32 },
    /// Anything that has no effect under synchronous execution (prefetch, `pmevent`, ...).
    Nop,
}

/// One instruction: its optional guard predicate (`@p` / `@!p`) and its operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Inst {
    pub guard: Option<(Reg, bool)>,
    pub op: Op,
}

/// Source position from the last `.loc` before an instruction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    /// Index into `Module::files` (u32::MAX when unknown).
    pub file: u32,
    pub line: u32,
}

/// One `.param` of an entry: where it lives in the parameter buffer the driver assembles from `kernelParams`.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    /// `.u64`, `.f32`, ... or `B8` for a `.b8 name[N]` aggregate.
    pub ty: Ty,
    pub offset: u32,
    pub size: u32,
    pub align: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub params: Vec<Param>,
    /// Size of the parameter buffer (last param's end).
    pub param_bytes: u32,
    /// Register slots per thread.
    pub num_regs: u32,
    /// `%r12`, `%p3`, ... per slot, for diagnostics.
    pub reg_names: Vec<String>,
    /// Bytes of static shared memory this kernel uses: module-scope `.shared` variables it references plus its
    /// own, laid out from offset 0 of the CTA's window.
    pub static_shared_bytes: u32,
    /// Offset of the `extern .shared` (dynamic) array: static size rounded up to 16 bytes.
    pub dyn_shared_offset: u32,
    /// Per-thread `.local` bytes (the local depots).
    pub local_bytes: u32,
    /// `.maxntid x, y, z` and `.reqntid`, `.minnctapersm` if given.
    pub maxntid: Option<[u32; 3]>,
    pub reqntid: Option<[u32; 3]>,
    pub minnctapersm: Option<u32>,
    pub insts: Vec<Inst>,
    /// `locs[i]` is the source position of `insts[i]`.
    pub locs: Vec<Loc>,
}

/// Module-scope `.global` / `.const` variable: allocated and initialised by the driver at module load.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalVar {
    pub name: String,
    pub space: Space,
    pub size: u64,
    pub align: u32,
    /// Initial bytes (zeros when not initialised; `init.len() == size`).
    pub init: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub kernels: Vec<Kernel>,
    pub globals: Vec<GlobalVar>,
    /// `.file` table (index = the number in `.file N "path"` mapped densely; see `Loc::file`).
    pub files: Vec<String>,
    /// `.version` and `.target` as written.
    pub version: String,
    pub target: String,
}

impl Module {
    pub fn kernel(&self, name: &str) -> Option<&Kernel> {
        self.kernels.iter().find(|k| k.name == name)
    }
}
