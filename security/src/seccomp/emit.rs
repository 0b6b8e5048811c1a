//! Rule tables -> BPF: dispatch on the audit arch, then a balanced binary search over ranges of
//! syscall numbers that share one outcome, then the argument checks of the few syscalls that
//! have them.
//!
//! Why a search and not a chain of `JEQ nr` per syscall: the kernel's cost at load (checking,
//! converting and JIT-compiling the program, then running it for every syscall number of every
//! arch to fill its action cache) grows with the program's length and with the path a syscall
//! takes through it. Numbers that take the same action merge into ranges (most of a profile is
//! "allow" runs and "default" gaps), and each syscall then passes about log2(ranges) compares.

use std::collections::{BTreeMap, BTreeSet};

use super::arch::{Abi, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use super::bpf::{emit_cmp, Asm, Label, SockFilter, Tgt, BPF_JEQ_K, BPF_JGE_K, OFF_ARCH, OFF_NR};
use super::compile::{Entry, Table, BAD_ARCH_ACTION};

/// The reach of a conditional jump (8-bit offset).
const MAX_COND_JUMP: usize = u8::MAX as usize;

/// What a range of syscall numbers gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Leaf {
    /// This return value, whatever the arguments.
    Ret(u32),
    /// An argument block: an index into [`ArgBlocks::blocks`].
    Args(usize),
}

/// Syscall numbers from `lo` up to the next range's `lo` (the last one up to `u32::MAX`).
#[derive(Clone, Copy, Debug)]
struct Range {
    lo: u32,
    leaf: Leaf,
}

/// The argument blocks of the whole filter, each emitted once however many arches and numbers
/// share it (the default profile's few argument checks are the same for all three x86 ABIs).
#[derive(Default)]
struct ArgBlocks<'a> {
    blocks: Vec<(&'a Entry, Label)>,
}

impl<'a> ArgBlocks<'a> {
    fn leaf(&mut self, asm: &mut Asm, e: &'a Entry) -> Leaf {
        let i = match self.blocks.iter().position(|(b, _)| *b == e) {
            Some(i) => i,
            None => {
                self.blocks.push((e, asm.label()));
                self.blocks.len() - 1
            }
        };
        Leaf::Args(i)
    }
}

/// Ranges covering all of `seccomp_data.nr` for one audit arch, neighbours never both the same
/// return.
#[derive(Default)]
struct Cover {
    ranges: Vec<Range>,
}

impl Cover {
    fn push(&mut self, lo: u32, leaf: Leaf) {
        if let (Some(last), Leaf::Ret(_)) = (self.ranges.last(), leaf) {
            if last.leaf == leaf {
                return;
            }
        }
        self.ranges.push(Range { lo, leaf });
    }

    /// Cover `lo..=hi` with `table`'s rules; `None` means the ABI is not in the filter.
    fn add<'a>(
        &mut self,
        asm: &mut Asm,
        args: &mut ArgBlocks<'a>,
        table: Option<&'a Table>,
        (lo, hi): (u32, u32),
        default_ret: u32,
    ) {
        let Some(table) = table else {
            self.push(lo, Leaf::Ret(BAD_ARCH_ACTION));
            return;
        };
        // u64: the first number not yet covered may be one past u32::MAX.
        let mut next = u64::from(lo);
        let from = table.partition_point(|(nr, _)| *nr < lo);
        for (nr, e) in table[from..].iter().take_while(|(nr, _)| *nr <= hi) {
            let nr = *nr;
            if u64::from(nr) > next {
                self.push(next as u32, Leaf::Ret(default_ret));
            }
            let leaf = if e.conditional.is_empty() {
                Leaf::Ret(e.unconditional.unwrap_or(default_ret))
            } else {
                args.leaf(asm, e)
            };
            self.push(nr, leaf);
            next = u64::from(nr) + 1;
        }
        if next <= u64::from(hi) {
            self.push(next as u32, Leaf::Ret(default_ret));
        }
    }
}

/// Emit the filter for per-ABI rule tables.
pub(crate) fn emit(
    tables: &BTreeMap<Abi, Table>,
    default_ret: u32,
) -> Result<Vec<SockFilter>, super::SeccompError> {
    let mut asm = Asm::default();
    // Dispatch on the audit arch; any other arch is killed.
    let mut arches: Vec<u32> = tables.keys().map(|a| a.audit_arch()).collect();
    arches.dedup();
    asm.load(OFF_ARCH);
    let mut blocks = Vec::new();
    for arch in &arches {
        let next = asm.label();
        let block = asm.label();
        asm.jump(BPF_JEQ_K, *arch, Tgt::Next, Tgt::To(next));
        asm.ja(block);
        asm.bind(next);
        blocks.push((*arch, block));
    }
    asm.ret(BAD_ARCH_ACTION);

    let mut args = ArgBlocks::default();
    for (arch, block) in blocks {
        asm.bind(block);
        let mut cover = Cover::default();
        if arch == AUDIT_ARCH_X86_64 {
            // x86-64 and x32 share the audit arch; bit 30 of nr selects x32.
            let (x86_64, x32) = (tables.get(&Abi::X86_64), tables.get(&Abi::X32));
            let low = (0, X32_SYSCALL_BIT - 1);
            cover.add(&mut asm, &mut args, x86_64, low, default_ret);
            let high = (X32_SYSCALL_BIT, u32::MAX);
            cover.add(&mut asm, &mut args, x32, high, default_ret);
        } else {
            let table = tables
                .iter()
                .find(|(abi, _)| abi.audit_arch() == arch)
                .map(|(_, t)| t);
            cover.add(&mut asm, &mut args, table, (0, u32::MAX), default_ret);
        }
        asm.load(OFF_NR);
        let labels: Vec<Label> = args.blocks.iter().map(|(_, l)| *l).collect();
        emit_search(&mut asm, &cover.ranges, &labels);
    }
    for (e, label) in args.blocks {
        asm.bind(label);
        emit_args(&mut asm, e, default_ret);
    }
    asm.finish()
}

/// Instructions [`emit_chunk`] emits for `ranges`: a compare per split, then one return (or
/// jump to an argument block) per distinct leaf.
fn chunk_len(ranges: &[Range]) -> usize {
    let leaves: BTreeSet<Leaf> = ranges.iter().map(|r| r.leaf).collect();
    ranges.len() - 1 + leaves.len()
}

/// Instructions [`emit_search`] emits for `ranges`.
fn search_len(ranges: &[Range]) -> usize {
    let whole = chunk_len(ranges);
    if whole <= MAX_COND_JUMP + 1 {
        return whole;
    }
    let (left, right) = ranges.split_at(ranges.len() / 2);
    let left = search_len(left);
    1 + usize::from(left > MAX_COND_JUMP) + left + search_len(right)
}

/// Binary search with nr in A. Halves too big for one chunk are split at the first number of
/// the upper half, hopping over the lower half with `BPF_JA` when it is out of a conditional
/// jump's reach.
fn emit_search(asm: &mut Asm, ranges: &[Range], args: &[Label]) {
    if ranges.is_empty() {
        return;
    }
    if chunk_len(ranges) <= MAX_COND_JUMP + 1 {
        emit_chunk(asm, ranges, args);
        return;
    }
    let (left, right) = ranges.split_at(ranges.len() / 2);
    let upper = asm.label();
    if search_len(left) > MAX_COND_JUMP {
        let lower = asm.label();
        asm.jump(BPF_JGE_K, right[0].lo, Tgt::Next, Tgt::To(lower));
        asm.ja(upper);
        asm.bind(lower);
    } else {
        asm.jump(BPF_JGE_K, right[0].lo, Tgt::To(upper), Tgt::Next);
    }
    emit_search(asm, left, args);
    asm.bind(upper);
    emit_search(asm, right, args);
}

/// A search small enough that every compare reaches every leaf: the compares first, then each
/// distinct leaf once (a return, or a jump to the argument block), shared by all its ranges.
fn emit_chunk(asm: &mut Asm, ranges: &[Range], args: &[Label]) {
    let mut pool: Vec<(Leaf, Label)> = Vec::new();
    if ranges.len() > 1 {
        emit_splits(asm, ranges, &mut pool);
    } else {
        pool.push((ranges[0].leaf, asm.label()));
    }
    for (leaf, label) in pool {
        asm.bind(label);
        match leaf {
            Leaf::Ret(k) => asm.ret(k),
            Leaf::Args(i) => asm.ja(args[i]),
        }
    }
}

/// The compares of a chunk (at least two ranges), in pre-order.
fn emit_splits(asm: &mut Asm, ranges: &[Range], pool: &mut Vec<(Leaf, Label)>) {
    let (left, right) = ranges.split_at(ranges.len() / 2);
    let mut target = |asm: &mut Asm, half: &[Range]| -> Label {
        if let [only] = half {
            if let Some((_, l)) = pool.iter().find(|(leaf, _)| *leaf == only.leaf) {
                return *l;
            }
            let l = asm.label();
            pool.push((only.leaf, l));
            l
        } else {
            asm.label()
        }
    };
    let (lower, upper) = (target(asm, left), target(asm, right));
    asm.jump(BPF_JGE_K, right[0].lo, Tgt::To(upper), Tgt::To(lower));
    if left.len() > 1 {
        asm.bind(lower);
        emit_splits(asm, left, pool);
    }
    if right.len() > 1 {
        asm.bind(upper);
        emit_splits(asm, right, pool);
    }
}

/// One syscall's conditional rules in profile order (the first that holds decides), then its
/// unconditional action or the default. Needs nothing in A; ends in a return.
fn emit_args(asm: &mut Asm, e: &Entry, default_ret: u32) {
    for rule in &e.conditional {
        let next = asm.label();
        for (idx, cmp) in &rule.conds {
            emit_cmp(asm, *idx, *cmp, next);
        }
        asm.ret(rule.ret);
        asm.bind(next);
    }
    asm.ret(e.unconditional.unwrap_or(default_ret));
}

#[cfg(test)]
mod tests {
    use super::super::bpf::{data, run};
    use super::*;

    #[test]
    fn search_len_matches_what_is_emitted() {
        for n in 1..700 {
            let ranges: Vec<Range> = (0..n)
                .map(|i| Range {
                    lo: i as u32 * 2,
                    leaf: Leaf::Ret(i as u32 % 3),
                })
                .collect();
            let mut asm = Asm::default();
            asm.load(OFF_NR);
            emit_search(&mut asm, &ranges, &[]);
            assert_eq!(asm.len(), 1 + search_len(&ranges), "{n} ranges");
            let prog = asm.finish().expect("every jump in reach");
            for nr in 0..2 * n as u32 + 2 {
                let want = (nr / 2).min(n as u32 - 1) % 3;
                assert_eq!(run(&prog, &data(nr, 0, [0; 6])), want, "nr {nr} of {n}");
            }
        }
    }
}
