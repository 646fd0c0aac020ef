//! PTX text -> `ir::Module`: a small hand-written lexer (`lex`), the module/kernel structure (this file) and the
//! instruction decoder (`decode`). Covers the subset nvcc emits for our kernels (see DESIGN.md); anything else is
//! a `ParseError` naming the line and the text, never silently skipped.

mod decode;
mod lex;

use std::collections::HashMap;

use crate::ir::{GlobalVar, Inst, Kernel, Loc, Module, Param, Reg, Space, Special, Ty};
use lex::{Tok, Token};

/// A parse or decode error with the 1-based line of the PTX text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PTX line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parse a whole PTX module.
pub fn parse(text: &str) -> Result<Module, ParseError> {
    let toks = lex::lex(text)?;
    let mut p = Parser { toks, pos: 0, m: ModState::default() };
    p.module()
}

/// An immediate as written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Imm {
    Int(i128),
    /// `0fXXXXXXXX`
    F32(u32),
    /// `0dXXXXXXXXXXXXXXXX`
    F64(u64),
    /// `1.5`, `1e-3`
    Float(f64),
}

/// An operand before decoding (registers already resolved to slots).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Opnd {
    Reg(Reg),
    /// `!%p`
    Not(Reg),
    Special(Special),
    /// A symbol or label name.
    Name(String),
    Imm(Imm),
    /// `{a, b, ...}`
    Vec(Vec<Opnd>),
    /// `[base+off]`; base None = absolute.
    Addr(Option<Box<Opnd>>, i64),
    /// `%r1|%p1`
    Pair(Reg, Reg),
    /// `_`
    Sink,
}

/// One instruction before decoding.
#[derive(Clone, Debug)]
pub(crate) struct RawInst {
    pub guard: Option<(Reg, bool)>,
    pub opcode: String,
    pub ops: Vec<Opnd>,
    pub line: usize,
}

#[derive(Default)]
struct ModState {
    version: String,
    target: String,
    globals: Vec<GlobalVar>,
    global_idx: HashMap<String, u32>,
    /// module-scope `.shared` (name, size, align)
    shared: Vec<(String, u32, u32)>,
    extern_shared: Vec<String>,
    /// `.file` number -> path
    files: Vec<(u32, String)>,
    kernels: Vec<Kernel>,
    /// raw `.loc` file numbers of each kernel's instructions, fixed up at the end
    kernel_loc_files: Vec<Vec<u32>>,
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    m: ModState,
}

/// Name resolution inside one kernel.
pub(crate) struct Scope<'a> {
    pub params: HashMap<String, u32>,
    pub shared: HashMap<String, u32>,
    pub local: HashMap<String, u32>,
    pub globals: &'a HashMap<String, u32>,
}

pub(crate) fn ty_of(s: &str) -> Option<Ty> {
    Some(match s {
        "pred" => Ty::Pred,
        "b8" => Ty::B8,
        "b16" => Ty::B16,
        "b32" => Ty::B32,
        "b64" => Ty::B64,
        "b128" => Ty::B128,
        "u8" => Ty::U8,
        "u16" => Ty::U16,
        "u32" => Ty::U32,
        "u64" => Ty::U64,
        "s8" => Ty::S8,
        "s16" => Ty::S16,
        "s32" => Ty::S32,
        "s64" => Ty::S64,
        "f16" => Ty::F16,
        "f16x2" => Ty::F16x2,
        "bf16" => Ty::BF16,
        "bf16x2" => Ty::BF16x2,
        "tf32" => Ty::Tf32,
        "f32" => Ty::F32,
        "f64" => Ty::F64,
        _ => return None,
    })
}

fn special_of(s: &str) -> Option<Special> {
    let dim = |c: &str| match c {
        "x" => Some(0u8),
        "y" => Some(1),
        "z" => Some(2),
        _ => None,
    };
    if let Some((base, c)) = s.split_once('.') {
        let d = dim(c)?;
        return Some(match base {
            "%tid" => Special::Tid(d),
            "%ntid" => Special::Ntid(d),
            "%ctaid" => Special::Ctaid(d),
            "%nctaid" => Special::Nctaid(d),
            _ => return None,
        });
    }
    Some(match s {
        "%laneid" => Special::LaneId,
        "%warpid" => Special::WarpId,
        "%nwarpid" => Special::NWarpId,
        "%smid" => Special::SmId,
        "%lanemask_eq" => Special::LaneMaskEq,
        "%lanemask_lt" => Special::LaneMaskLt,
        "%lanemask_le" => Special::LaneMaskLe,
        "%lanemask_gt" => Special::LaneMaskGt,
        "%lanemask_ge" => Special::LaneMaskGe,
        "%clock" => Special::Clock,
        "%clock64" => Special::Clock64,
        "%globaltimer" => Special::GlobalTimer,
        "%dynamic_smem_size" => Special::DynamicSmemSize,
        "%total_smem_size" => Special::TotalSmemSize,
        _ => return None,
    })
}

/// Parse a number token as an immediate (`neg` = a `-` preceded it).
pub(crate) fn parse_num(s: &str, neg: bool) -> Option<Imm> {
    let lower = s.to_ascii_lowercase();
    let imm = if let Some(h) = lower.strip_prefix("0f") {
        if h.len() != 8 {
            return None;
        }
        let b = u32::from_str_radix(h, 16).ok()?;
        Imm::F32(if neg { b ^ 0x8000_0000 } else { b })
    } else if let Some(h) = lower.strip_prefix("0d") {
        if h.len() != 16 {
            return None;
        }
        let b = u64::from_str_radix(h, 16).ok()?;
        Imm::F64(if neg { b ^ (1 << 63) } else { b })
    } else if let Some(h) = lower.strip_prefix("0x") {
        let h = h.trim_end_matches('u');
        let v = u64::from_str_radix(h, 16).ok()? as i128;
        Imm::Int(if neg { -v } else { v })
    } else if lower.contains('.') || lower.contains('e') {
        let v: f64 = lower.parse().ok()?;
        Imm::Float(if neg { -v } else { v })
    } else {
        let t = lower.trim_end_matches('u');
        let v: i128 = if t.len() > 1 && t.starts_with('0') && t.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
            i128::from_str_radix(&t[1..], 8).ok()?
        } else {
            t.parse().ok()?
        };
        Imm::Int(if neg { -v } else { v })
    };
    Some(imm)
}

fn align_up(x: u32, a: u32) -> u32 {
    let a = a.max(1);
    x.div_ceil(a) * a
}

impl Parser {
    fn line(&self) -> usize {
        self.toks.get(self.pos).or(self.toks.last()).map(|t| t.line).unwrap_or(0)
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { line: self.line(), message: msg.into() })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn next(&mut self) -> Result<Tok, ParseError> {
        match self.toks.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(t.tok.clone())
            }
            None => self.err("unexpected end of text"),
        }
    }

    fn at(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }

    fn eat(&mut self, c: char) -> bool {
        if self.at(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), ParseError> {
        if self.eat(c) {
            Ok(())
        } else {
            self.err(format!("expected `{c}`, found {:?}", self.peek()))
        }
    }

    fn ident(&mut self) -> Result<String, ParseError> {
        match self.next()? {
            Tok::Ident(s) => Ok(s),
            t => {
                self.pos -= 1;
                self.err(format!("expected a name, found {t:?}"))
            }
        }
    }

    fn number(&mut self) -> Result<u64, ParseError> {
        let neg = self.eat('-');
        match self.next()? {
            Tok::Num(s) => match parse_num(&s, neg) {
                Some(Imm::Int(v)) => Ok(v as u64),
                _ => self.err(format!("expected an integer, found {s}")),
            },
            t => self.err(format!("expected a number, found {t:?}")),
        }
    }

    /// Skip the rest of the current source line (for directives without `;`).
    fn skip_line(&mut self, line: usize) {
        while self.pos < self.toks.len() && self.toks[self.pos].line == line {
            self.pos += 1;
        }
    }

    fn module(&mut self) -> Result<Module, ParseError> {
        let mut is_extern = false;
        while let Some(t) = self.peek().cloned() {
            let line = self.line();
            let Tok::Ident(d) = t else {
                return self.err(format!("unexpected {t:?} at module scope"));
            };
            self.pos += 1;
            match d.as_str() {
                ".version" => {
                    let Tok::Num(v) = self.next()? else { return self.err(".version needs a number") };
                    self.m.version = v;
                }
                ".target" => {
                    let mut t = self.ident()?;
                    while self.eat(',') {
                        t.push_str(", ");
                        t.push_str(&self.ident()?);
                    }
                    self.m.target = t;
                }
                ".address_size" => {
                    let n = self.number()?;
                    if n != 64 {
                        return self.err(format!(".address_size {n} is not supported (only 64)"));
                    }
                }
                ".file" => {
                    let n = self.number()? as u32;
                    let Tok::Str(path) = self.next()? else { return self.err(".file needs a path string") };
                    self.m.files.push((n, path));
                    self.skip_line(line);
                }
                ".section" => {
                    self.ident()?;
                    self.expect('{')?;
                    let mut depth = 1;
                    while depth > 0 {
                        match self.next()? {
                            Tok::Punct('{') => depth += 1,
                            Tok::Punct('}') => depth -= 1,
                            _ => {}
                        }
                    }
                }
                ".visible" | ".weak" => {}
                ".extern" => {
                    is_extern = true;
                    continue;
                }
                ".entry" => self.entry()?,
                ".global" | ".const" | ".shared" => self.module_var(&d, is_extern)?,
                _ => return Err(ParseError { line, message: format!("unsupported module-scope directive `{d}`") }),
            }
            is_extern = false;
        }
        // `.loc` file numbers -> dense indices into `files`
        let m = std::mem::take(&mut self.m);
        let index: HashMap<u32, u32> = m.files.iter().enumerate().map(|(i, (n, _))| (*n, i as u32)).collect();
        let mut kernels = m.kernels;
        for (k, raw) in kernels.iter_mut().zip(&m.kernel_loc_files) {
            for (loc, f) in k.locs.iter_mut().zip(raw) {
                loc.file = index.get(f).copied().unwrap_or(u32::MAX);
            }
        }
        Ok(Module {
            kernels,
            globals: m.globals,
            files: m.files.into_iter().map(|(_, p)| p).collect(),
            version: m.version,
            target: m.target,
        })
    }

    /// `[.align N] .type name[N]...` -> (name, elem type, total size, align, is_unsized_array)
    fn var_decl_head(&mut self) -> Result<(String, Ty, u64, u32, bool), ParseError> {
        let mut align = 0u32;
        let mut ty = None;
        let mut vec = 1u64;
        loop {
            let s = self.ident()?;
            if s == ".align" {
                align = self.number()? as u32;
            } else if s == ".v2" || s == ".v4" {
                vec = s[2..].parse().unwrap();
            } else if let Some(t) = s.strip_prefix('.').and_then(ty_of) {
                ty = Some(t);
            } else if s.starts_with('.') {
                return self.err(format!("unsupported variable attribute `{s}`"));
            } else {
                let Some(ty) = ty else { return self.err(format!("variable `{s}` has no type")) };
                let mut size = ty.bytes() as u64 * vec;
                let mut unsized_ = false;
                while self.eat('[') {
                    if self.eat(']') {
                        unsized_ = true;
                        size = 0;
                    } else {
                        size *= self.number()?;
                        self.expect(']')?;
                    }
                }
                if align == 0 {
                    align = ty.bytes() * vec as u32;
                }
                return Ok((s, ty, size, align, unsized_));
            }
        }
    }

    fn module_var(&mut self, space: &str, is_extern: bool) -> Result<(), ParseError> {
        let (name, ty, size, align, unsized_) = self.var_decl_head()?;
        match space {
            ".shared" => {
                if is_extern || unsized_ {
                    self.m.extern_shared.push(name);
                } else {
                    self.m.shared.push((name, size as u32, align));
                }
            }
            _ => {
                let mut init = vec![0u8; size as usize];
                if self.eat('=') {
                    let mut vals = Vec::new();
                    self.initialiser(&mut vals)?;
                    let w = ty.bytes() as usize;
                    for (i, v) in vals.iter().enumerate() {
                        let bits = decode::imm_bits(*v, ty);
                        for j in 0..w {
                            if let Some(b) = init.get_mut(i * w + j) {
                                *b = (bits >> (8 * j)) as u8;
                            }
                        }
                    }
                }
                let sp = if space == ".const" { Space::Const } else { Space::Global };
                self.m.global_idx.insert(name.clone(), self.m.globals.len() as u32);
                self.m.globals.push(GlobalVar { name, space: sp, size, align, init });
            }
        }
        self.expect(';')
    }

    fn initialiser(&mut self, out: &mut Vec<Imm>) -> Result<(), ParseError> {
        if self.eat('{') {
            loop {
                self.initialiser(out)?;
                if self.eat('}') {
                    return Ok(());
                }
                self.expect(',')?;
            }
        }
        let neg = self.eat('-');
        match self.next()? {
            Tok::Num(s) => match parse_num(&s, neg) {
                Some(v) => {
                    out.push(v);
                    Ok(())
                }
                None => self.err(format!("bad number `{s}`")),
            },
            t => self.err(format!("unsupported initialiser {t:?}")),
        }
    }

    fn entry(&mut self) -> Result<(), ParseError> {
        let name = self.ident()?;
        let mut params = Vec::new();
        let mut off = 0u32;
        if self.eat('(') {
            while !self.eat(')') {
                let p = self.ident()?;
                if p != ".param" {
                    return self.err(format!("expected .param, found `{p}`"));
                }
                let mut align = 0u32;
                let mut ty = None;
                let pname;
                loop {
                    let s = self.ident()?;
                    if s == ".align" {
                        let a = self.number()? as u32;
                        if ty.is_none() {
                            align = a;
                        }
                    } else if s == ".ptr" || matches!(s.as_str(), ".global" | ".shared" | ".const" | ".local") {
                    } else if let Some(t) = s.strip_prefix('.').and_then(ty_of) {
                        ty = Some(t);
                    } else if s.starts_with('.') {
                        return self.err(format!("unsupported parameter attribute `{s}`"));
                    } else {
                        pname = s;
                        break;
                    }
                }
                let Some(ty) = ty else { return self.err(format!("parameter `{pname}` has no type")) };
                let mut size = ty.bytes();
                while self.eat('[') {
                    size *= self.number()? as u32;
                    self.expect(']')?;
                }
                if align == 0 {
                    align = ty.bytes();
                }
                off = align_up(off, align);
                params.push(Param { name: pname, ty, offset: off, size, align });
                off += size;
                self.eat(',');
            }
        }
        let mut k = Kernel {
            name,
            params,
            param_bytes: off,
            num_regs: 0,
            reg_names: Vec::new(),
            static_shared_bytes: 0,
            dyn_shared_offset: 0,
            local_bytes: 0,
            maxntid: None,
            reqntid: None,
            minnctapersm: None,
            insts: Vec::new(),
            locs: Vec::new(),
        };
        // performance directives
        loop {
            match self.peek() {
                Some(Tok::Ident(s)) if s == ".maxntid" || s == ".reqntid" => {
                    let d = s.clone();
                    self.pos += 1;
                    let mut v = [1u32; 3];
                    v[0] = self.number()? as u32;
                    for x in v.iter_mut().skip(1) {
                        if !self.eat(',') {
                            break;
                        }
                        *x = self.number()? as u32;
                    }
                    if d == ".maxntid" {
                        k.maxntid = Some(v);
                    } else {
                        k.reqntid = Some(v);
                    }
                }
                Some(Tok::Ident(s)) if s == ".minnctapersm" => {
                    self.pos += 1;
                    k.minnctapersm = Some(self.number()? as u32);
                }
                Some(Tok::Ident(s)) if s == ".maxnreg" || s == ".maxnctapersm" => {
                    self.pos += 1;
                    self.number()?;
                }
                Some(Tok::Ident(s)) if s == ".noreturn" => self.pos += 1,
                Some(Tok::Ident(s)) if s == ".pragma" => {
                    self.pos += 1;
                    self.next()?;
                    self.expect(';')?;
                }
                _ => break,
            }
        }
        self.expect('{')?;
        self.body(k)
    }

    fn body(&mut self, mut k: Kernel) -> Result<(), ParseError> {
        let mut regs: HashMap<String, Reg> = HashMap::new();
        let mut own_shared: Vec<(String, u32, u32)> = Vec::new();
        let mut local: HashMap<String, u32> = HashMap::new();
        let mut raws: Vec<RawInst> = Vec::new();
        let mut raw_locs: Vec<(u32, u32)> = Vec::new();
        let mut labels: HashMap<String, usize> = HashMap::new();
        let mut loc = (u32::MAX, 0u32);
        let mut depth = 1;
        loop {
            let line = self.line();
            let t = self.next()?;
            match t {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Tok::Punct('@') => {
                    let neg = self.eat('!');
                    let r = self.ident()?;
                    let Some(&reg) = regs.get(&r) else { return self.err(format!("undeclared guard `{r}`")) };
                    let op = self.ident()?;
                    raws.push(self.inst(Some((reg, neg)), op, line, &regs)?);
                    raw_locs.push(loc);
                }
                Tok::Ident(s) if s == ".reg" => {
                    let ty = self.ident()?;
                    if ty == ".v2" || ty == ".v4" {
                        return self.err("vector registers are not supported");
                    }
                    loop {
                        let name = self.ident()?;
                        if self.eat('<') {
                            let n = self.number()? as u32;
                            self.expect('>')?;
                            for i in 0..n {
                                let full = format!("{name}{i}");
                                regs.insert(full.clone(), k.num_regs);
                                k.reg_names.push(full);
                                k.num_regs += 1;
                            }
                        } else {
                            regs.insert(name.clone(), k.num_regs);
                            k.reg_names.push(name);
                            k.num_regs += 1;
                        }
                        if !self.eat(',') {
                            break;
                        }
                    }
                    self.expect(';')?;
                }
                Tok::Ident(s) if s == ".local" => {
                    let (name, _, size, align, _) = self.var_decl_head()?;
                    let off = align_up(k.local_bytes, align);
                    local.insert(name, off);
                    k.local_bytes = off + size as u32;
                    self.expect(';')?;
                }
                Tok::Ident(s) if s == ".shared" => {
                    let (name, _, size, align, unsized_) = self.var_decl_head()?;
                    if unsized_ {
                        self.m.extern_shared.push(name);
                    } else {
                        own_shared.push((name, size as u32, align));
                    }
                    self.expect(';')?;
                }
                Tok::Ident(s) if s == ".loc" => {
                    let f = self.number()? as u32;
                    let l = self.number()? as u32;
                    loc = (f, l);
                    self.skip_line(line);
                }
                Tok::Ident(s) if s == ".pragma" => {
                    self.next()?;
                    self.expect(';')?;
                }
                Tok::Ident(s) if !s.starts_with('.') && self.at(':') => {
                    self.pos += 1;
                    labels.insert(s, raws.len());
                }
                Tok::Ident(s) if !s.starts_with('.') && !s.starts_with('%') => {
                    raws.push(self.inst(None, s, line, &regs)?);
                    raw_locs.push(loc);
                }
                t => return Err(ParseError { line, message: format!("unsupported statement in kernel body: {t:?}") }),
            }
        }
        // static shared layout: referenced module-scope arrays, then the kernel's own, then the dynamic array
        let mut shared: HashMap<String, u32> = HashMap::new();
        let mut used = std::collections::HashSet::new();
        fn names<'a>(o: &'a Opnd, out: &mut std::collections::HashSet<&'a str>) {
            match o {
                Opnd::Name(n) => {
                    out.insert(n.as_str());
                }
                Opnd::Vec(v) => v.iter().for_each(|x| names(x, out)),
                Opnd::Addr(Some(b), _) => names(b, out),
                _ => {}
            }
        }
        for r in &raws {
            for o in &r.ops {
                names(o, &mut used);
            }
        }
        let mut off = 0u32;
        for (name, size, align) in self.m.shared.iter().filter(|(n, _, _)| used.contains(n.as_str())).chain(&own_shared)
        {
            off = align_up(off, *align);
            shared.insert(name.clone(), off);
            off += size;
        }
        k.static_shared_bytes = off;
        k.dyn_shared_offset = align_up(off, 16);
        for n in &self.m.extern_shared {
            shared.insert(n.clone(), k.dyn_shared_offset);
        }
        let scope = Scope {
            params: k.params.iter().map(|p| (p.name.clone(), p.offset)).collect(),
            shared,
            local,
            globals: &self.m.global_idx,
        };
        // decode; branch targets resolved after (one raw instruction may become two)
        let mut first_ir = Vec::with_capacity(raws.len() + 1);
        let mut pending: Vec<(usize, String, usize)> = Vec::new();
        let mut loc_files = Vec::with_capacity(raws.len());
        for (r, &(lf, ll)) in raws.iter().zip(&raw_locs) {
            first_ir.push(k.insts.len());
            let ops = decode::decode(r, &scope)
                .map_err(|message| ParseError { line: r.line, message: format!("{message} (in `{}`)", r.opcode) })?;
            for op in ops {
                if let decode::Decoded::Branch { label, uni } = &op.op {
                    pending.push((k.insts.len(), label.clone(), r.line));
                    k.insts.push(Inst { guard: op.guard, op: crate::ir::Op::Bra { target: 0, uni: *uni } });
                } else if let decode::Decoded::Op(o) = op.op {
                    k.insts.push(Inst { guard: op.guard, op: o });
                }
                k.locs.push(Loc { file: lf, line: ll });
                loc_files.push(lf);
            }
        }
        first_ir.push(k.insts.len());
        for (i, label, line) in pending {
            let Some(&raw) = labels.get(&label) else {
                return Err(ParseError { line, message: format!("unknown branch target `{label}`") });
            };
            if let crate::ir::Op::Bra { target, .. } = &mut k.insts[i].op {
                *target = first_ir[raw] as u32;
            }
        }
        self.m.kernels.push(k);
        self.m.kernel_loc_files.push(loc_files);
        Ok(())
    }

    /// Operands up to `;` of one instruction.
    fn inst(
        &mut self,
        guard: Option<(Reg, bool)>,
        opcode: String,
        line: usize,
        regs: &HashMap<String, Reg>,
    ) -> Result<RawInst, ParseError> {
        let mut ops = Vec::new();
        if !self.eat(';') {
            loop {
                ops.push(self.operand(regs)?);
                if self.eat(';') {
                    break;
                }
                if !self.eat(',') {
                    return self.err(format!("expected `,` or `;` in `{opcode}`, found {:?}", self.peek()));
                }
            }
        }
        Ok(RawInst { guard, opcode, ops, line })
    }

    fn name_operand(&self, s: String, regs: &HashMap<String, Reg>) -> Result<Opnd, ParseError> {
        if let Some(&r) = regs.get(&s) {
            return Ok(Opnd::Reg(r));
        }
        if s.starts_with('%') {
            return match special_of(&s) {
                Some(sp) => Ok(Opnd::Special(sp)),
                None => self.err(format!("undeclared register `{s}`")),
            };
        }
        if s == "_" {
            return Ok(Opnd::Sink);
        }
        Ok(Opnd::Name(s))
    }

    fn operand(&mut self, regs: &HashMap<String, Reg>) -> Result<Opnd, ParseError> {
        if self.eat('{') {
            let mut v = Vec::new();
            loop {
                v.push(self.operand(regs)?);
                if self.eat('}') {
                    return Ok(Opnd::Vec(v));
                }
                self.expect(',')?;
            }
        }
        if self.eat('[') {
            let mut base = None;
            let mut off = 0i64;
            if let Some(Tok::Ident(_)) = self.peek() {
                let s = self.ident()?;
                base = Some(Box::new(self.name_operand(s, regs)?));
                // `+16`, `+-4` (number() takes the sign) or `-4`
                if self.eat('+') || self.at('-') {
                    off = self.number()? as i64;
                }
            } else {
                off = self.number()? as i64;
            }
            self.expect(']')?;
            return Ok(Opnd::Addr(base, off));
        }
        if self.eat('!') {
            let s = self.ident()?;
            return match regs.get(&s) {
                Some(&r) => Ok(Opnd::Not(r)),
                None => self.err(format!("undeclared predicate `{s}`")),
            };
        }
        let neg = self.eat('-');
        match self.next()? {
            Tok::Num(s) => match parse_num(&s, neg) {
                Some(v) => Ok(Opnd::Imm(v)),
                None => self.err(format!("bad number `{s}`")),
            },
            Tok::Ident(s) if !neg => {
                let o = self.name_operand(s, regs)?;
                if self.eat('|') {
                    let q = self.ident()?;
                    let (Opnd::Reg(p), Some(&q)) = (&o, regs.get(&q)) else {
                        return self.err("bad `a|b` destination pair");
                    };
                    return Ok(Opnd::Pair(*p, q));
                }
                Ok(o)
            }
            t => self.err(format!("unexpected operand {t:?}")),
        }
    }
}

#[cfg(test)]
mod tests;
