//! Compiling device rules into a BPF_PROG_TYPE_CGROUP_DEVICE program.
//!
//! The kernel calls the program with a `struct bpf_cgroup_dev_ctx { u32 access_type; u32
//! major; u32 minor; }`, where access_type holds the device type in its low 16 bits and the
//! requested access (mknod 1, read 2, write 4) in the high 16. The program returns 1 to allow
//! and 0 to deny. Rules are evaluated like the v1 controller's list: the last rule that
//! matches decides, and with no match the access is denied. So the program tests the rules
//! from last to first and returns at the first hit.
//!
//! An allow rule matches when every requested access is in the rule; a deny rule matches when
//! any requested access is in it, so "deny w" stops a read-write open but not a read.

use crate::validate::DeviceRule;

/// One eBPF instruction as the kernel lays it out (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const BPF_LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const BPF_ALU64_MOV_K: u8 = 0xb7;
const BPF_ALU64_MOV_X: u8 = 0xbf;
const BPF_ALU64_AND_K: u8 = 0x57;
const BPF_ALU64_RSH_K: u8 = 0x77;
const BPF_JMP_JNE_K: u8 = 0x55;
/// 32-bit compare, so a major or minor above i32::MAX still matches its immediate.
const BPF_JMP32_JNE_K: u8 = 0x56;
const BPF_JMP_JEQ_K: u8 = 0x15;
const BPF_JMP_JSET_K: u8 = 0x45;
const BPF_EXIT: u8 = 0x95;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

// Registers: r1 the context, r2 type, r3 access, r4 major, r5 minor, r6 scratch, r0 result.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

fn access_bits(access: &str) -> i32 {
    access.chars().fold(0, |a, c| {
        a | match c {
            'm' => ACC_MKNOD,
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => 0,
        }
    })
}

/// A jump whose target is the start of the next rule, patched once the block is complete.
const NEXT: i16 = i16::MIN;

fn rule_block(r: &DeviceRule) -> Vec<Insn> {
    let mut b = Vec::new();
    match r.kind {
        'b' => b.push(insn(BPF_JMP_JNE_K, R2, 0, NEXT, DEV_BLOCK)),
        'c' => b.push(insn(BPF_JMP_JNE_K, R2, 0, NEXT, DEV_CHAR)),
        _ => {}
    }
    let acc = access_bits(&r.access);
    if r.allow {
        let outside = !acc & 0x7;
        if outside != 0 {
            b.push(insn(BPF_JMP_JSET_K, R3, 0, NEXT, outside));
        }
    } else if acc != 0x7 {
        b.push(insn(BPF_ALU64_MOV_X, R6, R3, 0, 0));
        b.push(insn(BPF_ALU64_AND_K, R6, 0, 0, acc));
        b.push(insn(BPF_JMP_JEQ_K, R6, 0, NEXT, 0));
    }
    if let Some(m) = r.major {
        b.push(insn(BPF_JMP32_JNE_K, R4, 0, NEXT, m as i32));
    }
    if let Some(m) = r.minor {
        b.push(insn(BPF_JMP32_JNE_K, R5, 0, NEXT, m as i32));
    }
    b.push(insn(BPF_ALU64_MOV_K, R0, 0, 0, i32::from(r.allow)));
    b.push(insn(BPF_EXIT, 0, 0, 0, 0));
    let len = b.len();
    for (i, ins) in b.iter_mut().enumerate() {
        if ins.off == NEXT {
            // A jump's offset counts from the instruction after it.
            ins.off = (len - i - 1) as i16;
        }
    }
    b
}

/// The whole program for `rules` in spec order.
pub(crate) fn compile(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(BPF_LDX_MEM_W, R2, R1, 0, 0),
        insn(BPF_ALU64_AND_K, R2, 0, 0, 0xffff),
        insn(BPF_LDX_MEM_W, R3, R1, 0, 0),
        insn(BPF_ALU64_RSH_K, R3, 0, 0, 16),
        insn(BPF_LDX_MEM_W, R4, R1, 4, 0),
        insn(BPF_LDX_MEM_W, R5, R1, 8, 0),
    ];
    for r in rules.iter().rev() {
        let b = rule_block(r);
        let unconditional = b.len() == 2;
        p.extend(b);
        // A rule that matches everything decides every request; the verifier rejects the
        // unreachable code that earlier rules would add.
        if unconditional {
            return p;
        }
    }
    p.push(insn(BPF_ALU64_MOV_K, R0, 0, 0, 0));
    p.push(insn(BPF_EXIT, 0, 0, 0, 0));
    p
}

/// Runs a compiled program on one request, as the kernel would; lets the unit tests check
/// rule semantics without loading anything.
#[cfg(test)]
pub(crate) fn interpret(prog: &[Insn], kind: char, major: u32, minor: u32, access: &str) -> bool {
    let ty: u64 = match kind {
        'b' => DEV_BLOCK as u64,
        'c' => DEV_CHAR as u64,
        _ => 0,
    };
    let ctx = [
        ((access_bits(access) as u64) << 16 | ty) as u32,
        major,
        minor,
    ];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        let imm = i.imm as i64 as u64;
        let mut jump = false;
        match i.code {
            BPF_LDX_MEM_W => {
                assert_eq!(src, 1);
                r[dst] = u64::from(ctx[(i.off / 4) as usize]);
            }
            BPF_ALU64_MOV_K => r[dst] = imm,
            BPF_ALU64_MOV_X => r[dst] = r[src],
            BPF_ALU64_AND_K => r[dst] &= imm,
            BPF_ALU64_RSH_K => r[dst] >>= imm,
            BPF_JMP_JNE_K => jump = r[dst] != imm,
            BPF_JMP32_JNE_K => jump = r[dst] as u32 != i.imm as u32,
            BPF_JMP_JEQ_K => jump = r[dst] == imm,
            BPF_JMP_JSET_K => jump = r[dst] & imm != 0,
            BPF_EXIT => return r[0] == 1,
            c => panic!("unknown opcode {c:#x}"),
        }
        pc += 1;
        if jump {
            pc += i.off as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        kind: char,
        major: Option<u32>,
        minor: Option<u32>,
        access: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: access.into(),
        }
    }

    #[test]
    fn nothing_follows_a_rule_that_matches_everything() {
        let rules = [
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(false, 'a', None, None, "rwm"),
        ];
        let p = compile(&rules);
        assert_eq!(p.len(), 6 + 2);
        assert!(!interpret(&p, 'c', 1, 3, "r"));
        let p = compile(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "r"),
        ]);
        // Prologue, the allow rule (type, access, major, minor, mov, exit), the deny-all.
        assert_eq!(p.len(), 6 + 6 + 2);
    }

    #[test]
    fn default_is_deny() {
        let p = compile(&[]);
        assert!(!interpret(&p, 'c', 1, 3, "r"));
    }

    #[test]
    fn last_match_wins() {
        let rules = [
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(true, 'c', Some(1), None, "r"),
            rule(false, 'c', Some(1), Some(5), "w"),
        ];
        let p = compile(&rules);
        assert!(interpret(&p, 'c', 1, 3, "rw"));
        assert!(interpret(&p, 'c', 1, 3, "m"));
        assert!(!interpret(&p, 'b', 1, 3, "r"), "block 1:3 is not char 1:3");
        assert!(interpret(&p, 'c', 1, 9, "r"));
        assert!(!interpret(&p, 'c', 1, 9, "rw"), "allow r does not cover rw");
        assert!(
            interpret(&p, 'c', 1, 5, "r"),
            "deny w leaves r to earlier rules"
        );
        assert!(!interpret(&p, 'c', 1, 5, "rw"));
        assert!(!interpret(&p, 'c', 2, 0, "r"));
    }

    #[test]
    fn large_numbers_compare_as_u32() {
        let p = compile(&[rule(true, 'c', Some(u32::MAX), Some(3_000_000_000), "r")]);
        assert!(interpret(&p, 'c', u32::MAX, 3_000_000_000, "r"));
        assert!(!interpret(&p, 'c', 1, 3_000_000_000, "r"));
    }

    #[test]
    fn allow_all_then_deny_one() {
        let rules = [
            rule(true, 'a', None, None, "rwm"),
            rule(false, 'b', Some(8), None, "m"),
        ];
        let p = compile(&rules);
        assert!(interpret(&p, 'b', 8, 0, "rw"));
        assert!(!interpret(&p, 'b', 8, 0, "m"));
        assert!(interpret(&p, 'c', 8, 0, "m"));
    }
}
