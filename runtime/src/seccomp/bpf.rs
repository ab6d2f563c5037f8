//! Classic BPF for seccomp: a small assembler with symbolic labels, and the code generator that
//! turns resolved rules into a filter program.
//!
//! Program layout (the shape libseccomp generates, without its binary-tree option):
//!
//! ```text
//!   ld  [arch]
//!   jeq #AUDIT_ARCH_A, body_A          one test per architecture group, native first
//!   jeq #AUDIT_ARCH_B, body_B
//!   ret bad_arch                       an architecture the filter does not know
//! body_A:
//!   ld  [nr]
//!   (x32 / x86_64 ABI check)           see `Abi`
//!   jeq #nr, ret_action                unconditional syscall (runs of consecutive numbers
//!   jge #lo / jgt #hi, ret_action        with one action become a range test)
//!   jeq #nr, block_nr                  syscall with argument rules
//!   ret default
//!   ret_action...                      shared returns
//! block_nr:
//!   rule 1: argument tests, each jumping to rule 2 on mismatch; ret action_1
//!   rule 2: ...
//!   ret default                        no rule matched
//! ```
//!
//! cBPF jumps only forward, conditional jumps by at most 255 instructions. The assembler lays the
//! program out and, wherever a conditional jump is too far, inserts a trampoline right after it:
//! a copy of the target when the target is a `ret`, else an unconditional `ja` (32-bit offset).

use super::arch::X32_SYSCALL_BIT;

/// `BPF_MAXINSNS`: the kernel refuses longer programs.
pub const MAX_INSNS: usize = 4096;

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JMP_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const JMP_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Offsets in `struct seccomp_data` (every supported architecture is little-endian).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(index: u8) -> u32 {
    16 + 8 * index as u32
}
const fn off_arg_hi(index: u8) -> u32 {
    off_arg_lo(index) + 4
}

/// One instruction, laid out like the kernel's `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Comparison operators, as libseccomp defines them on 64-bit values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & mask) == value`.
    MaskedEq {
        mask: u64,
    },
}

/// One argument test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cond {
    pub index: u8,
    pub op: Op,
    pub value: u64,
}

/// Argument tests ANDed together, and the action when all hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub conds: Vec<Cond>,
    pub action: u32,
}

/// What one syscall number gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// The same action whatever the arguments.
    Always(u32),
    /// Rules tried in order, the first match wins; none matching gives the default action.
    Rules(Vec<Rule>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub nr: u32,
    /// A 32-bit ABI's syscall: only the low word of an argument is compared.
    pub narrow: bool,
    pub body: Body,
}

/// How the x86_64 audit architecture is split between the x86_64 and x32 ABIs (libseccomp).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    /// No split: the architecture has one ABI, or both x86_64 and x32 are in the filter.
    Whole,
    /// x86_64 without x32: a number with `__X32_SYSCALL_BIT` gets the bad-arch action, except -1
    /// (which tracers use to skip a syscall).
    X86_64Only,
    /// x32 without x86_64: a number without `__X32_SYSCALL_BIT` gets the bad-arch action.
    X32Only,
}

/// The syscalls of one `seccomp_data.arch` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub audit: u32,
    pub abi: Abi,
    /// Sorted by number, one entry per number.
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub default_action: u32,
    pub bad_arch_action: u32,
    pub groups: Vec<Group>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BpfError {
    #[error(
        "the seccomp filter needs {0} BPF instructions, more than the kernel accepts ({MAX_INSNS})"
    )]
    TooLong(usize),
    #[error("internal error in the seccomp BPF generator: {0}")]
    Internal(&'static str),
}

/// Generates the filter program.
pub fn generate(program: &Program) -> Result<Vec<SockFilter>, BpfError> {
    let mut asm = Asm::default();
    asm.ld(OFF_ARCH);
    let bodies: Vec<Label> = program.groups.iter().map(|_| asm.label()).collect();
    for (group, &body) in program.groups.iter().zip(&bodies) {
        let next = asm.label();
        asm.jmp(JMP_JEQ_K, group.audit, body, next);
        asm.bind(next);
    }
    asm.ret(program.bad_arch_action);
    for (group, &body) in program.groups.iter().zip(&bodies) {
        asm.bind(body);
        group_body(&mut asm, program, group);
    }
    asm.assemble()
}

fn group_body(asm: &mut Asm, program: &Program, group: &Group) {
    let default = program.default_action;
    let mut rets: Vec<(u32, Label)> = Vec::new();
    let mut ret_label = |asm: &mut Asm, action: u32| -> Label {
        if let Some(&(_, l)) = rets.iter().find(|(a, _)| *a == action) {
            return l;
        }
        let l = asm.label();
        rets.push((action, l));
        l
    };
    let bad_arch = ret_label(asm, program.bad_arch_action);

    asm.ld(OFF_NR);
    match group.abi {
        Abi::Whole => {}
        Abi::X86_64Only => {
            let (check_minus_one, dispatch) = (asm.label(), asm.label());
            asm.jmp(JMP_JGE_K, X32_SYSCALL_BIT, check_minus_one, dispatch);
            asm.bind(check_minus_one);
            asm.jmp(JMP_JEQ_K, u32::MAX, dispatch, bad_arch);
            asm.bind(dispatch);
        }
        Abi::X32Only => {
            let dispatch = asm.label();
            asm.jmp(JMP_JGE_K, X32_SYSCALL_BIT, dispatch, bad_arch);
            asm.bind(dispatch);
        }
    }

    let mut blocks: Vec<(Label, &Entry, &[Rule])> = Vec::new();
    let mut i = 0;
    while i < group.entries.len() {
        let entry = &group.entries[i];
        match &entry.body {
            Body::Always(action) => {
                // Extend over consecutive numbers with the same unconditional action.
                let mut j = i;
                while let Some(next) = group.entries.get(j + 1) {
                    let consecutive = Some(next.nr) == group.entries[j].nr.checked_add(1);
                    if !(consecutive && next.body == Body::Always(*action)) {
                        break;
                    }
                    j += 1;
                }
                let target = ret_label(asm, *action);
                let (lo, hi) = (entry.nr, group.entries[j].nr);
                let after = asm.label();
                if lo == hi {
                    asm.jmp(JMP_JEQ_K, lo, target, after);
                } else {
                    let upper = asm.label();
                    asm.jmp(JMP_JGE_K, lo, upper, after);
                    asm.bind(upper);
                    asm.jmp(JMP_JGT_K, hi, after, target);
                }
                asm.bind(after);
                i = j + 1;
            }
            Body::Rules(rules) => {
                let block = asm.label();
                let after = asm.label();
                asm.jmp(JMP_JEQ_K, entry.nr, block, after);
                asm.bind(after);
                blocks.push((block, entry, rules));
                i += 1;
            }
        }
    }
    asm.ret(default);
    for (action, label) in rets {
        asm.bind(label);
        asm.ret(action);
    }
    for (block, entry, rules) in blocks {
        asm.bind(block);
        for rule in rules {
            let next_rule = asm.label();
            for cond in &rule.conds {
                condition(asm, *cond, entry.narrow, next_rule);
            }
            asm.ret(rule.action);
            asm.bind(next_rule);
        }
        asm.ret(default);
    }
}

/// Emits a test that falls through when `cond` holds and jumps to `fail` otherwise.
///
/// 64-bit values are compared as two 32-bit words, high word first (as libseccomp does): for the
/// orderings, a strictly greater/smaller high word decides; an equal one defers to the low word.
fn condition(asm: &mut Asm, cond: Cond, narrow: bool, fail: Label) {
    let (hi, lo) = ((cond.value >> 32) as u32, cond.value as u32);
    let pass = asm.label();
    if narrow {
        // 32-bit ABI: only the low word exists; values are truncated like libseccomp does.
        asm.ld(off_arg_lo(cond.index));
        match cond.op {
            Op::Eq => asm.jmp(JMP_JEQ_K, lo, pass, fail),
            Op::Ne => asm.jmp(JMP_JEQ_K, lo, fail, pass),
            Op::Gt => asm.jmp(JMP_JGT_K, lo, pass, fail),
            Op::Ge => asm.jmp(JMP_JGE_K, lo, pass, fail),
            Op::Lt => asm.jmp(JMP_JGE_K, lo, fail, pass),
            Op::Le => asm.jmp(JMP_JGT_K, lo, fail, pass),
            Op::MaskedEq { mask } => {
                asm.and(mask as u32);
                asm.jmp(JMP_JEQ_K, lo & mask as u32, pass, fail);
            }
        }
        asm.bind(pass);
        return;
    }
    asm.ld(off_arg_hi(cond.index));
    match cond.op {
        Op::Eq => {
            let low = asm.label();
            asm.jmp(JMP_JEQ_K, hi, low, fail);
            asm.bind(low);
            asm.ld(off_arg_lo(cond.index));
            asm.jmp(JMP_JEQ_K, lo, pass, fail);
        }
        Op::Ne => {
            let low = asm.label();
            asm.jmp(JMP_JEQ_K, hi, low, pass);
            asm.bind(low);
            asm.ld(off_arg_lo(cond.index));
            asm.jmp(JMP_JEQ_K, lo, fail, pass);
        }
        Op::MaskedEq { mask } => {
            // libseccomp masks the expected value too: (arg & mask) == (value & mask).
            let (mask_hi, mask_lo) = ((mask >> 32) as u32, mask as u32);
            let low = asm.label();
            asm.and(mask_hi);
            asm.jmp(JMP_JEQ_K, hi & mask_hi, low, fail);
            asm.bind(low);
            asm.ld(off_arg_lo(cond.index));
            asm.and(mask_lo);
            asm.jmp(JMP_JEQ_K, lo & mask_lo, pass, fail);
        }
        Op::Gt | Op::Ge => {
            // hi > H → pass; hi < H → fail; hi == H → compare the low word.
            let (equal, low) = (asm.label(), asm.label());
            asm.jmp(JMP_JGT_K, hi, pass, equal);
            asm.bind(equal);
            asm.jmp(JMP_JEQ_K, hi, low, fail);
            asm.bind(low);
            asm.ld(off_arg_lo(cond.index));
            let code = if cond.op == Op::Gt {
                JMP_JGT_K
            } else {
                JMP_JGE_K
            };
            asm.jmp(code, lo, pass, fail);
        }
        Op::Lt | Op::Le => {
            // hi > H → fail; hi < H → pass; hi == H → compare the low word.
            let (equal, low) = (asm.label(), asm.label());
            asm.jmp(JMP_JGT_K, hi, fail, equal);
            asm.bind(equal);
            asm.jmp(JMP_JEQ_K, hi, low, pass);
            asm.bind(low);
            asm.ld(off_arg_lo(cond.index));
            if cond.op == Op::Lt {
                asm.jmp(JMP_JGE_K, lo, fail, pass);
            } else {
                asm.jmp(JMP_JGT_K, lo, fail, pass);
            }
        }
    }
    asm.bind(pass);
}

type Label = usize;

#[derive(Clone, Copy, Debug)]
enum Item {
    Bind(Label),
    Stmt {
        code: u16,
        k: u32,
    },
    Ja(Label),
    Jmp {
        code: u16,
        k: u32,
        jt: Label,
        jf: Label,
    },
}

/// An assembler: instructions and label bindings, laid out by `assemble`.
#[derive(Default)]
struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        self.labels - 1
    }

    fn bind(&mut self, label: Label) {
        self.items.push(Item::Bind(label));
    }

    fn ld(&mut self, offset: u32) {
        self.items.push(Item::Stmt {
            code: LD_W_ABS,
            k: offset,
        });
    }

    fn and(&mut self, k: u32) {
        self.items.push(Item::Stmt { code: ALU_AND_K, k });
    }

    fn ret(&mut self, k: u32) {
        self.items.push(Item::Stmt { code: RET_K, k });
    }

    fn jmp(&mut self, code: u16, k: u32, jt: Label, jf: Label) {
        self.items.push(Item::Jmp { code, k, jt, jf });
    }

    /// Position of every label, and the total instruction count.
    fn layout(&self) -> (Vec<Option<usize>>, usize) {
        let mut pos = vec![None; self.labels];
        let mut pc = 0;
        for item in &self.items {
            match item {
                Item::Bind(l) => pos[*l] = Some(pc),
                _ => pc += 1,
            }
        }
        (pos, pc)
    }

    /// For each label bound right before a `ret`, that `ret`'s value.
    fn rets(&self) -> Vec<Option<u32>> {
        let mut rets = vec![None; self.labels];
        let mut pending = Vec::new();
        for item in &self.items {
            match *item {
                Item::Bind(l) => pending.push(l),
                Item::Stmt { code: RET_K, k } => {
                    pending.drain(..).for_each(|l| rets[l] = Some(k));
                }
                _ => pending.clear(),
            }
        }
        rets
    }

    fn assemble(mut self) -> Result<Vec<SockFilter>, BpfError> {
        // Relax: give every conditional jump that is too far a trampoline right after it (a copy
        // of the target if that is a `ret`, else a long `ja`), until no jump is too far. Each
        // branch is relaxed at most once, so this ends.
        loop {
            let (pos, _) = self.layout();
            let rets = self.rets();
            let mut relaxed = Vec::with_capacity(self.items.len());
            let mut changed = false;
            let mut pc = 0;
            let items = std::mem::take(&mut self.items);
            for item in items {
                let Item::Jmp { code, k, jt, jf } = item else {
                    if !matches!(item, Item::Bind(_)) {
                        pc += 1;
                    }
                    relaxed.push(item);
                    continue;
                };
                let far_t = distance(&pos, pc, jt)? > 255;
                let far_f = distance(&pos, pc, jf)? > 255;
                pc += 1;
                if !far_t && !far_f {
                    relaxed.push(item);
                    continue;
                }
                changed = true;
                let mut tramp = Vec::new();
                let mut branch = |target: Label, far: bool, labels: &mut usize| -> Label {
                    if !far {
                        return target;
                    }
                    let l = *labels;
                    *labels += 1;
                    tramp.push(Item::Bind(l));
                    tramp.push(match rets[target] {
                        Some(k) => Item::Stmt { code: RET_K, k },
                        None => Item::Ja(target),
                    });
                    l
                };
                let jt = branch(jt, far_t, &mut self.labels);
                let jf = branch(jf, far_f, &mut self.labels);
                relaxed.push(Item::Jmp { code, k, jt, jf });
                relaxed.extend(tramp);
            }
            self.items = relaxed;
            if !changed {
                break;
            }
        }

        let (pos, len) = self.layout();
        if len > MAX_INSNS {
            return Err(BpfError::TooLong(len));
        }
        let mut out = Vec::with_capacity(len);
        for item in &self.items {
            let pc = out.len();
            let insn = match *item {
                Item::Bind(_) => continue,
                Item::Stmt { code, k } => SockFilter {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Item::Ja(target) => SockFilter {
                    code: JMP_JA,
                    jt: 0,
                    jf: 0,
                    k: u32::try_from(distance(&pos, pc, target)?)
                        .map_err(|_| BpfError::Internal("jump offset overflow"))?,
                },
                Item::Jmp { code, k, jt, jf } => SockFilter {
                    code,
                    jt: u8::try_from(distance(&pos, pc, jt)?)
                        .map_err(|_| BpfError::Internal("unrelaxed jump"))?,
                    jf: u8::try_from(distance(&pos, pc, jf)?)
                        .map_err(|_| BpfError::Internal("unrelaxed jump"))?,
                    k,
                },
            };
            out.push(insn);
        }
        Ok(out)
    }
}

/// Instructions skipped by a jump at `pc` to `target` (cBPF jumps are relative to `pc + 1`).
fn distance(pos: &[Option<usize>], pc: usize, target: Label) -> Result<usize, BpfError> {
    let at = pos
        .get(target)
        .copied()
        .flatten()
        .ok_or(BpfError::Internal("jump to an unbound label"))?;
    at.checked_sub(pc + 1)
        .ok_or(BpfError::Internal("backward jump"))
}
