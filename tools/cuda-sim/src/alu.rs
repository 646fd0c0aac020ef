//! Lane-local semantics of PTX arithmetic, logic, comparison and conversion instructions, exactly as the PTX ISA
//! specifies them (rounding modes, `.ftz`, `.sat`, NaN handling; `.approx` functions within their documented
//! error). Operands and results are raw bits in a u64 (zero-extended), typed by the op.
//! (Stub: the real enum and `eval` are being written; see DESIGN.md.)

/// One decoded lane-local operation with its type and modifiers resolved at decode time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AluOp {
    /// `mov.ty d, a` (placeholder until the full set lands)
    Mov,
}

/// `d = op(a, b, c)` on raw bits.
pub fn eval(op: &AluOp, a: u64, _b: u64, _c: u64) -> u64 {
    match op {
        AluOp::Mov => a,
    }
}

/// FP32/FP64 FLOPs one lane does for `op` (an fma counts 2; integer work counts 0).
pub fn simt_flops(op: &AluOp) -> u32 {
    match op {
        AluOp::Mov => 0,
    }
}
