//! A tiny classic-BPF assembler for seccomp filters.
//!
//! Classic BPF conditional jumps carry 8-bit forward offsets, so the compiler keeps every
//! conditional jump local (inside one rule, or one chunk of the syscall-number search) and
//! crosses longer distances with `BPF_JA`, whose offset is 32 bits. Jumps name [`Label`]s;
//! [`Asm::finish`] resolves them and rejects any conditional jump that would not fit.

use super::SeccompError;

/// `struct sock_filter`, as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Offset when the condition holds.
    pub jt: u8,
    /// Offset when it does not.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

// BPF_LD | BPF_W | BPF_ABS
pub(crate) const BPF_LD_W_ABS: u16 = 0x20;
pub(crate) const BPF_ALU_AND_K: u16 = 0x04 | 0x50;
pub(crate) const BPF_JMP_JA: u16 = 0x05;
pub(crate) const BPF_JEQ_K: u16 = 0x05 | 0x10;
pub(crate) const BPF_JGT_K: u16 = 0x05 | 0x20;
pub(crate) const BPF_JGE_K: u16 = 0x05 | 0x30;
pub(crate) const BPF_RET_K: u16 = 0x06;

/// The kernel's limit on filter length (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

/// Offsets into `struct seccomp_data`.
pub(crate) const OFF_NR: u32 = 0;
pub(crate) const OFF_ARCH: u32 = 4;
pub(crate) const OFF_ARGS: u32 = 16;

/// A jump destination, bound to an instruction index by [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Where a conditional branch goes.
#[derive(Clone, Copy, Debug)]
pub enum Tgt {
    /// The next instruction.
    Next,
    /// A label.
    To(Label),
}

#[derive(Clone, Copy, Debug)]
enum Insn {
    Plain(SockFilter),
    Cond { code: u16, k: u32, jt: Tgt, jf: Tgt },
    Ja(Label),
}

/// Instruction buffer with labels.
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    /// A fresh, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Bind `l` to the next instruction emitted.
    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    /// Load the 32-bit word at `off` of `seccomp_data` into A.
    pub fn load(&mut self, off: u32) {
        self.plain(BPF_LD_W_ABS, off);
    }

    /// A &= k.
    pub fn and(&mut self, k: u32) {
        self.plain(BPF_ALU_AND_K, k);
    }

    /// Return `k` (a `SECCOMP_RET_*` value).
    pub fn ret(&mut self, k: u32) {
        self.plain(BPF_RET_K, k);
    }

    /// Unconditional jump to `l` (any distance).
    pub fn ja(&mut self, l: Label) {
        self.insns.push(Insn::Ja(l));
    }

    /// Conditional jump: `code` is one of the `BPF_J*_K` opcodes.
    pub fn jump(&mut self, code: u16, k: u32, jt: Tgt, jf: Tgt) {
        self.insns.push(Insn::Cond { code, k, jt, jf });
    }

    fn plain(&mut self, code: u16, k: u32) {
        self.insns.push(Insn::Plain(SockFilter {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }

    /// Number of instructions emitted so far.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// True when nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Resolve labels into offsets.
    pub fn finish(self) -> Result<Vec<SockFilter>, SeccompError> {
        if self.insns.len() > MAX_INSNS {
            return Err(SeccompError::TooLarge {
                insns: self.insns.len(),
            });
        }
        let resolve = |l: Label| -> Result<usize, SeccompError> {
            self.labels[l.0].ok_or(SeccompError::Internal("jump to an unbound label"))
        };
        let mut out = Vec::with_capacity(self.insns.len());
        for (i, insn) in self.insns.iter().enumerate() {
            let rel = |t: Tgt| -> Result<u8, SeccompError> {
                match t {
                    Tgt::Next => Ok(0),
                    Tgt::To(l) => {
                        let dest = resolve(l)?;
                        let off = dest
                            .checked_sub(i + 1)
                            .ok_or(SeccompError::Internal("backward jump"))?;
                        u8::try_from(off)
                            .map_err(|_| SeccompError::Internal("conditional jump too far"))
                    }
                }
            };
            out.push(match *insn {
                Insn::Plain(f) => f,
                Insn::Cond { code, k, jt, jf } => SockFilter {
                    code,
                    jt: rel(jt)?,
                    jf: rel(jf)?,
                    k,
                },
                Insn::Ja(l) => {
                    let dest = resolve(l)?;
                    let off = dest
                        .checked_sub(i + 1)
                        .ok_or(SeccompError::Internal("backward jump"))?;
                    SockFilter {
                        code: BPF_JMP_JA,
                        jt: 0,
                        jf: 0,
                        k: off as u32,
                    }
                }
            });
        }
        Ok(out)
    }
}

/// Offset of the low and high 32-bit halves of argument `index` (little-endian layout).
pub(crate) fn arg_offsets(index: u32) -> (u32, u32) {
    let base = OFF_ARGS + 8 * index;
    if cfg!(target_endian = "little") {
        (base, base + 4)
    } else {
        (base + 4, base)
    }
}

/// A 64-bit comparison of one syscall argument, emitted as 32-bit BPF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// arg == v
    Eq(u64),
    /// arg != v
    Ne(u64),
    /// arg < v (unsigned)
    Lt(u64),
    /// arg <= v
    Le(u64),
    /// arg > v
    Gt(u64),
    /// arg >= v
    Ge(u64),
    /// (arg & mask) == v
    MaskedEq {
        /// The mask.
        mask: u64,
        /// The value compared after masking.
        value: u64,
    },
}

fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}
fn lo(v: u64) -> u32 {
    v as u32
}

/// Emit a comparison of argument `index`: falls through when it holds, jumps to `fail`
/// otherwise.
pub fn emit_cmp(asm: &mut Asm, index: u32, cmp: Cmp, fail: Label) {
    let (off_lo, off_hi) = arg_offsets(index);
    let f = Tgt::To(fail);
    let ok = asm.label();
    match cmp {
        Cmp::Eq(v) => {
            asm.load(off_hi);
            asm.jump(BPF_JEQ_K, hi(v), Tgt::Next, f);
            asm.load(off_lo);
            asm.jump(BPF_JEQ_K, lo(v), Tgt::Next, f);
        }
        Cmp::MaskedEq { mask, value } => {
            asm.load(off_hi);
            asm.and(hi(mask));
            asm.jump(BPF_JEQ_K, hi(value), Tgt::Next, f);
            asm.load(off_lo);
            asm.and(lo(mask));
            asm.jump(BPF_JEQ_K, lo(value), Tgt::Next, f);
        }
        Cmp::Ne(v) => {
            asm.load(off_hi);
            asm.jump(BPF_JEQ_K, hi(v), Tgt::Next, Tgt::To(ok));
            asm.load(off_lo);
            asm.jump(BPF_JEQ_K, lo(v), f, Tgt::Next);
        }
        Cmp::Gt(v) | Cmp::Ge(v) => {
            // High word decides unless equal; then the low word does.
            asm.load(off_hi);
            asm.jump(BPF_JGT_K, hi(v), Tgt::To(ok), Tgt::Next);
            asm.jump(BPF_JEQ_K, hi(v), Tgt::Next, f);
            asm.load(off_lo);
            let code = if matches!(cmp, Cmp::Gt(_)) {
                BPF_JGT_K
            } else {
                BPF_JGE_K
            };
            asm.jump(code, lo(v), Tgt::Next, f);
        }
        Cmp::Lt(v) | Cmp::Le(v) => {
            // hi < v.hi holds outright; hi > v.hi fails; equal defers to the low word.
            asm.load(off_hi);
            asm.jump(BPF_JGE_K, hi(v), Tgt::Next, Tgt::To(ok));
            asm.jump(BPF_JEQ_K, hi(v), Tgt::Next, f);
            asm.load(off_lo);
            let code = if matches!(cmp, Cmp::Lt(_)) {
                BPF_JGE_K
            } else {
                BPF_JGT_K
            };
            asm.jump(code, lo(v), f, Tgt::Next);
        }
    }
    asm.bind(ok);
}

/// A minimal interpreter of the subset of classic BPF this module emits, so the compiler's
/// output can be checked against `seccomp_data` inputs without installing it.
#[cfg(test)]
pub(crate) fn run(prog: &[SockFilter], data: &[u8; 64]) -> u32 {
    run_counted(prog, data).0
}

/// [`run`], also saying how many instructions the input went through.
#[cfg(test)]
pub(crate) fn run_counted(prog: &[SockFilter], data: &[u8; 64]) -> (u32, usize) {
    let word = |off: u32| {
        let o = off as usize;
        u32::from_ne_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]])
    };
    let mut a = 0u32;
    let mut pc = 0usize;
    let mut steps = 0usize;
    loop {
        let ins = prog[pc];
        pc += 1;
        steps += 1;
        match ins.code {
            BPF_LD_W_ABS => a = word(ins.k),
            BPF_ALU_AND_K => a &= ins.k,
            BPF_RET_K => return (ins.k, steps),
            BPF_JMP_JA => pc += ins.k as usize,
            BPF_JEQ_K | BPF_JGT_K | BPF_JGE_K => {
                let hit = match ins.code {
                    BPF_JEQ_K => a == ins.k,
                    BPF_JGT_K => a > ins.k,
                    _ => a >= ins.k,
                };
                pc += if hit { ins.jt } else { ins.jf } as usize;
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

/// Build a `seccomp_data` image for [`run`].
#[cfg(test)]
pub(crate) fn data(nr: u32, arch: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&nr.to_ne_bytes());
    d[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        let (lo_off, hi_off) = arg_offsets(i as u32);
        d[lo_off as usize..lo_off as usize + 4].copy_from_slice(&(*a as u32).to_ne_bytes());
        d[hi_off as usize..hi_off as usize + 4].copy_from_slice(&((*a >> 32) as u32).to_ne_bytes());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: u32 = 1;
    const FAIL: u32 = 2;

    fn check(cmp: Cmp, arg: u64) -> bool {
        let mut asm = Asm::default();
        let fail = asm.label();
        emit_cmp(&mut asm, 3, cmp, fail);
        asm.ret(PASS);
        asm.bind(fail);
        asm.ret(FAIL);
        let prog = asm.finish().expect("assemble");
        let mut args = [0u64; 6];
        args[3] = arg;
        run(&prog, &data(0, 0, args)) == PASS
    }

    #[test]
    fn sixty_four_bit_comparisons() {
        let vals = [
            0u64,
            1,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_0000_0001,
            0x7fff_ffff_ffff_ffff,
            u64::MAX,
            0x2_0000_0000,
        ];
        for &v in &vals {
            for &a in &vals {
                assert_eq!(check(Cmp::Eq(v), a), a == v, "eq {a:#x} {v:#x}");
                assert_eq!(check(Cmp::Ne(v), a), a != v, "ne {a:#x} {v:#x}");
                assert_eq!(check(Cmp::Lt(v), a), a < v, "lt {a:#x} {v:#x}");
                assert_eq!(check(Cmp::Le(v), a), a <= v, "le {a:#x} {v:#x}");
                assert_eq!(check(Cmp::Gt(v), a), a > v, "gt {a:#x} {v:#x}");
                assert_eq!(check(Cmp::Ge(v), a), a >= v, "ge {a:#x} {v:#x}");
                let m = Cmp::MaskedEq {
                    mask: 0xffff_0000_0000_ff00,
                    value: v & 0xffff_0000_0000_ff00,
                };
                assert_eq!(
                    check(m, a),
                    a & 0xffff_0000_0000_ff00 == v & 0xffff_0000_0000_ff00,
                    "masked {a:#x} {v:#x}"
                );
            }
        }
    }

    #[test]
    fn far_conditional_jump_is_rejected() {
        let mut asm = Asm::default();
        let l = asm.label();
        asm.jump(BPF_JEQ_K, 0, Tgt::To(l), Tgt::Next);
        for _ in 0..300 {
            asm.ret(0);
        }
        asm.bind(l);
        asm.ret(0);
        assert!(asm.finish().is_err());
    }
}
