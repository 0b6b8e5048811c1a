//! The compiler as it was before the search tree, kept as the reference the new one must agree
//! with: names resolved one ABI at a time through the `syscalls` crate's `FromStr`, one
//! `JEQ nr` per syscall (argument-checked ones first, then groups of equal actions in number
//! order). The tests run both programs through the BPF interpreter over every syscall number
//! of every arch, with argument values chosen around every condition of the profile, and
//! require the same return value everywhere.

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::{Capability, LinuxSeccomp};
use serde_json::{json, Value};

use super::arch::{
    Abi, AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM, AUDIT_ARCH_I386, AUDIT_ARCH_RISCV64,
    AUDIT_ARCH_X86_64, X32_SYSCALL_BIT,
};
use super::bpf::{
    data, emit_cmp, run, run_counted, Asm, Cmp, SockFilter, Tgt, BPF_JEQ_K, BPF_JGE_K, BPF_JMP_JA,
    BPF_LD_W_ABS, BPF_RET_K, MAX_INSNS, OFF_ARCH, OFF_NR,
};
use super::compile::{
    action_ret, compile, plan, rules_of, Entry, Plan, Table, BAD_ARCH_ACTION, NOTIFY_FORBIDDEN,
};
use super::names::tests::{all_names, reference_nr};
use super::names::{Numbers, NONE};
use super::profile::{default_profile, default_profile_for};

/// Unconditional comparisons per group: keeps every conditional jump within 8-bit reach.
const GROUP: usize = 200;

fn reference_numbers(name: &str) -> Option<Numbers> {
    let row = Abi::ALL.map(|abi| reference_nr(abi, name).unwrap_or(NONE));
    row.iter().any(|&n| n != NONE).then_some(row)
}

/// The old compiler: old name resolution, old grouping of rules by number, linear emission.
/// Validation, flags and ABIs come from [`plan`], whose tables must equal the old grouping.
fn compile_linear(spec: &LinuxSeccomp) -> (Plan, Vec<SockFilter>) {
    let plan = plan(spec, reference_numbers).expect("profile plans");
    let tables = tables_by_insertion(spec, &plan.abis);
    assert_eq!(tables, plan.tables, "rules grouped differently");
    let filter = emit_linear(&tables, plan.default_ret).expect("linear emission");
    (plan, filter)
}

/// Rules grouped by number the old way: one map entry per number, filled in profile order
/// (conditional rules appended, the first unconditional action kept).
fn tables_by_insertion(spec: &LinuxSeccomp, abis: &[Abi]) -> BTreeMap<Abi, Table> {
    let mut tables: BTreeMap<Abi, BTreeMap<u32, Entry>> =
        abis.iter().map(|a| (*a, BTreeMap::new())).collect();
    for (i, sc) in spec.syscalls().as_deref().unwrap_or(&[]).iter().enumerate() {
        let what = format!("syscalls[{i}]");
        let ret = action_ret(sc.action(), sc.errno_ret(), &what).expect("action");
        let rules = rules_of(sc, ret, &what).expect("rules");
        let unconditional = sc.args().as_deref().unwrap_or(&[]).is_empty();
        for name in sc.names() {
            for (abi, table) in tables.iter_mut() {
                let Some(nr) = reference_nr(*abi, name) else {
                    continue;
                };
                let e = table.entry(nr).or_default();
                if unconditional {
                    if e.unconditional.is_none() {
                        e.unconditional = Some(ret);
                    }
                } else {
                    e.conditional.extend(rules.iter().cloned());
                }
            }
        }
    }
    tables
        .into_iter()
        .map(|(abi, t)| (abi, t.into_iter().collect()))
        .collect()
}

fn emit_linear(
    tables: &BTreeMap<Abi, Table>,
    default_ret: u32,
) -> Result<Vec<SockFilter>, super::SeccompError> {
    let mut asm = Asm::default();
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
    for (arch, block) in blocks {
        asm.bind(block);
        let abis: Vec<Abi> = tables
            .keys()
            .copied()
            .filter(|a| a.audit_arch() == arch)
            .collect();
        if arch == AUDIT_ARCH_X86_64 {
            let native64 = asm.label();
            let x32 = asm.label();
            asm.load(OFF_NR);
            asm.jump(BPF_JGE_K, X32_SYSCALL_BIT, Tgt::Next, Tgt::To(native64));
            asm.ja(x32);
            asm.bind(native64);
            match tables.get(&Abi::X86_64) {
                Some(t) => emit_body_linear(&mut asm, t, default_ret),
                None => asm.ret(BAD_ARCH_ACTION),
            }
            asm.bind(x32);
            match tables.get(&Abi::X32) {
                Some(t) => emit_body_linear(&mut asm, t, default_ret),
                None => asm.ret(BAD_ARCH_ACTION),
            }
        } else {
            for abi in abis {
                if let Some(t) = tables.get(&abi) {
                    emit_body_linear(&mut asm, t, default_ret);
                }
            }
        }
    }
    asm.finish()
}

fn emit_body_linear(asm: &mut Asm, table: &Table, default_ret: u32) {
    asm.load(OFF_NR);
    let mut groups: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (nr, e) in table {
        if e.conditional.is_empty() {
            let ret = e.unconditional.unwrap_or(default_ret);
            if ret != default_ret {
                groups.entry(ret).or_default().push(*nr);
            }
            continue;
        }
        let enter = asm.label();
        let skip = asm.label();
        asm.jump(BPF_JEQ_K, *nr, Tgt::To(enter), Tgt::Next);
        asm.ja(skip);
        asm.bind(enter);
        for rule in &e.conditional {
            let next = asm.label();
            for (idx, cmp) in &rule.conds {
                emit_cmp(asm, *idx, *cmp, next);
            }
            asm.ret(rule.ret);
            asm.bind(next);
        }
        asm.ret(e.unconditional.unwrap_or(default_ret));
        asm.bind(skip);
    }
    for (ret, nrs) in groups {
        for chunk in nrs.chunks(GROUP) {
            let hit = asm.label();
            let miss = asm.label();
            for nr in chunk {
                asm.jump(BPF_JEQ_K, *nr, Tgt::To(hit), Tgt::Next);
            }
            asm.ja(miss);
            asm.bind(hit);
            asm.ret(ret);
            asm.bind(miss);
        }
    }
    asm.ret(default_ret);
}

/// What the kernel's checker would refuse: jumps out of the program, a last instruction that
/// is not a return, a load outside `seccomp_data`, too many instructions.
fn assert_loadable(prog: &[SockFilter], what: &str) {
    assert!(
        !prog.is_empty() && prog.len() <= MAX_INSNS,
        "{what}: length {}",
        prog.len()
    );
    assert_eq!(
        prog[prog.len() - 1].code,
        BPF_RET_K,
        "{what}: must end in a return"
    );
    for (pc, ins) in prog.iter().enumerate() {
        let ends = |off: usize| pc + 1 + off < prog.len();
        match ins.code {
            BPF_JMP_JA => assert!(ends(ins.k as usize), "{what}: JA at {pc} out of range"),
            c if c & 0x07 == 0x05 => assert!(
                ends(ins.jt.into()) && ends(ins.jf.into()),
                "{what}: jump at {pc} out of range"
            ),
            BPF_LD_W_ABS => assert!(ins.k % 4 == 0 && ins.k < 64, "{what}: load at {pc}"),
            _ => {}
        }
    }
}

/// `seccomp_data` with a non-zero instruction pointer, so a load from the wrong offset shows.
fn input(nr: u32, arch: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = data(nr, arch, args);
    d[8..16].copy_from_slice(&0x7f00_dead_beef_u64.to_ne_bytes());
    d
}

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}

const ARCHES: &[u32] = &[
    AUDIT_ARCH_X86_64,
    AUDIT_ARCH_I386,
    AUDIT_ARCH_AARCH64,
    AUDIT_ARCH_ARM,
    AUDIT_ARCH_RISCV64,
    0,
    0x1234,
    u32::MAX,
];

/// Every syscall number 0..=600 of the plain and the x32 range, and the edges of nr's space.
fn numbers_to_try() -> Vec<u32> {
    let mut nrs: Vec<u32> = (0..=600).collect();
    nrs.extend((0..=600).map(|n| n | X32_SYSCALL_BIT));
    nrs.extend([
        1000,
        4095,
        65535,
        X32_SYSCALL_BIT - 1,
        0x7fff_ffff,
        0x8000_0000,
        0xbfff_ffff,
        0xc000_0000,
        0xc000_0001,
        u32::MAX - 1,
        u32::MAX,
    ]);
    nrs
}

/// Argument values at and around every value a condition of `plan` compares with.
fn values_around(plan: &Plan) -> Vec<u64> {
    let mut vals: BTreeSet<u64> = [0, 1, 0xffff_ffff, 1 << 32, u64::MAX, 1 << 63].into();
    for (_, e) in plan.tables.values().flatten() {
        for (_, cmp) in e.conditional.iter().flat_map(|r| &r.conds) {
            let (a, b) = match *cmp {
                Cmp::Eq(v) | Cmp::Ne(v) | Cmp::Lt(v) | Cmp::Le(v) | Cmp::Gt(v) | Cmp::Ge(v) => {
                    (v, v)
                }
                Cmp::MaskedEq { mask, value } => (value, value | !mask),
            };
            for v in [a, b] {
                vals.extend([
                    v,
                    v.wrapping_sub(1),
                    v.wrapping_add(1),
                    v ^ (1 << 32),
                    v ^ (1 << 63),
                    v & 0xffff_ffff,
                    v & !0xffff_ffff,
                ]);
            }
        }
    }
    vals.into_iter().collect()
}

/// Run both programs on every input; panic at the first difference.
fn assert_same(spec: &LinuxSeccomp, what: &str) -> (usize, usize) {
    let (plan, old) = compile_linear(spec);
    let new = compile(spec).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_loadable(&old, what);
    assert_loadable(&new.filter, what);
    assert_eq!(new.flags, plan.flags, "{what}: flags");
    assert_eq!(new.has_notify, plan.has_notify, "{what}: notify");
    assert_eq!(new.abis, plan.abis, "{what}: abis");

    let argued: BTreeSet<u32> = plan
        .tables
        .values()
        .flat_map(|t| t.iter())
        .filter(|(_, e)| !e.conditional.is_empty())
        .map(|(nr, _)| *nr)
        .collect();
    let vals = values_around(&plan);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ old.len() as u64);
    let mut arg_sets: Vec<[u64; 6]> = vec![[0; 6]];
    for i in 0..6 {
        for v in &vals {
            let mut a = [0; 6];
            a[i] = *v;
            arg_sets.push(a);
        }
    }
    for _ in 0..300 {
        arg_sets.push([(); 6].map(|_| *rng.pick(&vals)));
    }
    let plain: [u64; 6] = [(); 6].map(|_| rng.next());

    let check = |nr: u32, arch: u32, args: [u64; 6]| {
        let d = input(nr, arch, args);
        let (want, got) = (run(&old, &d), run(&new.filter, &d));
        assert_eq!(
            got, want,
            "{what}: nr {nr:#x} arch {arch:#x} args {args:x?}: new {got:#x}, old {want:#x}"
        );
    };
    for &arch in ARCHES {
        for nr in numbers_to_try() {
            check(nr, arch, [0; 6]);
            check(nr, arch, plain);
            if argued.contains(&nr) {
                for a in &arg_sets {
                    check(nr, arch, *a);
                }
            }
        }
    }
    (old.len(), new.filter.len())
}

fn parse(v: Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("profile")
}

/// As `kosrun spec` writes it and kosrun reads it back.
fn via_json(p: LinuxSeccomp) -> LinuxSeccomp {
    serde_json::from_str(&serde_json::to_string(&p).expect("serialize")).expect("parse")
}

#[test]
fn default_profile_decides_as_before_in_far_fewer_instructions() {
    let p = via_json(default_profile());
    let (old, new) = assert_same(&p, "default profile");
    if Abi::native() == Abi::X86_64 {
        assert_eq!(old, 1141, "the reference is the old compiler");
    }
    assert!(new * 3 < old, "{new} instructions, before {old}");

    // What a syscall costs: instructions run per syscall number, summed over the numbers the
    // kernel's action cache tries at load (every number of the native and the compat arch).
    let (_, old_prog) = compile_linear(&p);
    let new_prog = compile(&p).expect("default profile").filter;
    let (mut old_steps, mut new_steps, mut longest) = (0, 0, 0);
    for &arch in &ARCHES[..2] {
        for nr in 0..512 {
            let d = input(nr, arch, [0; 6]);
            old_steps += run_counted(&old_prog, &d).1;
            let (_, n) = run_counted(&new_prog, &d);
            new_steps += n;
            longest = longest.max(n);
        }
    }
    eprintln!(
        "default profile: {old} instructions before, {new} now; instructions run over \
         syscalls 0..512 of x86-64 and i386: {old_steps} before, {new_steps} now \
         (longest path {longest})"
    );
    assert!(
        new_steps * 10 < old_steps,
        "{new_steps} steps, before {old_steps}"
    );
}

#[test]
fn default_profiles_for_other_capabilities_decide_as_before() {
    let all = [
        Capability::SysAdmin,
        Capability::DacReadSearch,
        Capability::SysBoot,
        Capability::SysChroot,
        Capability::SysModule,
        Capability::SysPacct,
        Capability::SysPtrace,
        Capability::SysRawio,
        Capability::SysTime,
        Capability::SysTtyConfig,
        Capability::SysNice,
        Capability::Syslog,
        Capability::Bpf,
        Capability::Perfmon,
    ];
    assert_same(&via_json(default_profile_for(&all)), "all capabilities");
    assert_same(&via_json(default_profile_for(&[])), "no capabilities");
    assert_same(
        &via_json(default_profile_for(&[
            Capability::SysPtrace,
            Capability::SysTime,
        ])),
        "ptrace and time",
    );
}

/// Every operator, 64-bit operands with high bits, every action, repeated indexes (ORed),
/// several rules for one syscall, and unconditional rules before and after conditional ones.
fn mixed(default: Value, arches: Value) -> Value {
    json!({
        "defaultAction": default["action"], "defaultErrnoRet": default["errno"],
        "architectures": arches, "listenerPath": "/run/kos-agent.sock",
        "syscalls": [
            {"names": ["read", "pread64", "_llseek"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 2, "value": 0x1_0000_0040u64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["openat"], "action": "SCMP_ACT_LOG",
             "args": [{"index": 1, "value": 0xffff_ffff_0000_0000u64, "op": "SCMP_CMP_NE"},
                      {"index": 3, "value": 7, "op": "SCMP_CMP_LT"}]},
            {"names": ["openat"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mmap"], "action": "SCMP_ACT_TRACE", "errnoRet": 3,
             "args": [{"index": 0, "value": 0x8000_0000_0000_0000u64, "op": "SCMP_CMP_LE"}]},
            {"names": ["mmap"], "action": "SCMP_ACT_TRAP",
             "args": [{"index": 5, "value": 0x2_0000_0001u64, "op": "SCMP_CMP_GT"}]},
            {"names": ["ioctl"], "action": "SCMP_ACT_KILL_PROCESS",
             "args": [{"index": 1, "value": 0x5401, "op": "SCMP_CMP_GE"},
                      {"index": 1, "value": 0xffff_ffff_ffff_0000u64, "op": "SCMP_CMP_GE"}]},
            {"names": ["ioctl"], "action": "SCMP_ACT_KILL"},
            {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_NOTIFY",
             "args": [{"index": 0, "value": 0xff00_0000_0000_00ffu64,
                       "valueTwo": 0x1200_0000_0000_0010u64, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["socket", "getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["kill", "tkill", "tgkill"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["uname", "no_such_call_kos"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 3, "op": "SCMP_CMP_GT"},
                      {"index": 2, "value": 0xffff_ffffu64, "op": "SCMP_CMP_LE"},
                      {"index": 3, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_GE"},
                      {"index": 4, "value": 1, "op": "SCMP_CMP_NE"},
                      {"index": 5, "value": 0xf0, "valueTwo": 0x30, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["rt_sigaction", "execve", "ptrace"], "action": "SCMP_ACT_LOG"},
            {"names": ["clone"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 0x7e02_0000u64, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    })
}

#[test]
fn argument_conditions_and_every_action_decide_as_before() {
    let defaults = [
        json!({"action": "SCMP_ACT_ERRNO", "errno": 38}),
        json!({"action": "SCMP_ACT_ALLOW", "errno": null}),
        json!({"action": "SCMP_ACT_KILL_PROCESS", "errno": null}),
        json!({"action": "SCMP_ACT_LOG", "errno": null}),
        json!({"action": "SCMP_ACT_TRACE", "errno": 5}),
    ];
    let arch_lists = [
        json!(null),
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        json!(["SCMP_ARCH_X32"]),
        json!(["SCMP_ARCH_X86", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
    ];
    for d in &defaults {
        for a in &arch_lists {
            assert_same(
                &parse(mixed(d.clone(), a.clone())),
                &format!("mixed {d} {a}"),
            );
        }
    }
}

/// One range per syscall number: the most ranges a profile can make, so the search needs
/// `BPF_JA` hops over its far halves.
#[test]
fn alternating_actions_on_every_number_decide_as_before() {
    let actions = [
        json!({"action": "SCMP_ACT_ALLOW"}),
        json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 1}),
        json!({"action": "SCMP_ACT_LOG"}),
        json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 2}),
    ];
    let mut by_action: Vec<Vec<String>> = vec![Vec::new(); actions.len()];
    for (i, s) in syscalls::x86_64::Sysno::iter().enumerate() {
        by_action[i % actions.len()].push(s.name().to_string());
    }
    let syscalls: Vec<Value> = actions
        .iter()
        .zip(by_action)
        .map(|(a, names)| {
            let mut r = a.clone();
            r["names"] = json!(names);
            r
        })
        .collect();
    let p = parse(json!({
        "defaultAction": "SCMP_ACT_KILL",
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls
    }));
    let (old, new) = assert_same(&p, "alternating");
    eprintln!("alternating: {old} instructions before, {new} now");
}

const OPS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_GT",
    "SCMP_CMP_GE",
    "SCMP_CMP_MASKED_EQ",
];

const ACTIONS: &[(&str, bool)] = &[
    ("SCMP_ACT_ALLOW", false),
    ("SCMP_ACT_ERRNO", true),
    ("SCMP_ACT_KILL", false),
    ("SCMP_ACT_KILL_PROCESS", false),
    ("SCMP_ACT_KILL_THREAD", false),
    ("SCMP_ACT_TRAP", false),
    ("SCMP_ACT_TRACE", true),
    ("SCMP_ACT_LOG", false),
    ("SCMP_ACT_NOTIFY", false),
];

fn random_value(rng: &mut Rng) -> u64 {
    const EDGES: &[u64] = &[
        0,
        1,
        8,
        0xff,
        0x7fff_ffff,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0001,
        0x7fff_ffff_ffff_ffff,
        0x8000_0000_0000_0000,
        u64::MAX,
    ];
    if rng.below(3) == 0 {
        rng.next()
    } else {
        *rng.pick(EDGES)
    }
}

fn random_profile(rng: &mut Rng, names: &[String]) -> Value {
    let mut syscalls = Vec::new();
    for _ in 0..1 + rng.below(30) {
        let (action, errno) = *rng.pick(ACTIONS);
        let conditional = rng.below(3) == 0;
        let count = if conditional {
            1 + rng.below(4)
        } else {
            1 + rng.below(60)
        };
        let picked: Vec<&String> = (0..count)
            .map(|_| rng.pick(names))
            .filter(|n| action != "SCMP_ACT_NOTIFY" || !NOTIFY_FORBIDDEN.contains(&n.as_str()))
            .collect();
        if picked.is_empty() {
            continue;
        }
        let mut rule = json!({"names": picked, "action": action});
        if errno && rng.below(2) == 0 {
            rule["errnoRet"] = json!(rng.below(200));
        }
        if conditional {
            let args: Vec<Value> = (0..1 + rng.below(3))
                .map(|_| {
                    json!({"index": rng.below(6), "value": random_value(rng),
                           "valueTwo": random_value(rng), "op": *rng.pick(OPS)})
                })
                .collect();
            rule["args"] = json!(args);
        }
        syscalls.push(rule);
    }
    let (default, errno) = *rng.pick(&ACTIONS[..ACTIONS.len() - 1]);
    let arches: Vec<&str> = [
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_NATIVE",
    ]
    .into_iter()
    .filter(|_| rng.below(2) == 0)
    .collect();
    let mut p = json!({"defaultAction": default, "architectures": arches,
                       "listenerPath": "/run/kos-agent.sock", "syscalls": syscalls});
    if errno {
        p["defaultErrnoRet"] = json!(rng.below(4096));
    }
    p
}

#[test]
fn random_profiles_decide_as_before() {
    let mut names = all_names();
    names.push("no_such_call_kos".into());
    let mut rng = Rng(0x5eed_0000_0000_0009);
    for i in 0..40 {
        let p = random_profile(&mut rng, &names);
        assert_same(&parse(p.clone()), &format!("random profile {i}: {p}"));
    }
}
