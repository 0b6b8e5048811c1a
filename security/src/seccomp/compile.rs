//! `linux.seccomp` of the runtime spec -> a BPF program.
//!
//! Semantics (libseccomp's, which the spec refers to):
//! - Every syscall not named takes `defaultAction` (with `defaultErrnoRet`).
//! - The native architecture is always covered; listed architectures that can run on this
//!   host are added. A syscall made through any other ABI kills the process, so a foreign ABI
//!   cannot be used to dodge the rules.
//! - A name unknown to an ABI's table is skipped for that ABI (runc does the same, with a debug
//!   log), so one profile serves kernels and architectures of different ages.
//! - The `args` of one entry are ANDed when their indexes are all distinct; when an index
//!   repeats, each condition becomes its own rule and they are ORed (runc's convention: the
//!   spec gives no combining rule, and "arg0 == A or arg0 == B" is the only useful reading of a
//!   repeated index).
//! - For one syscall, conditional rules are tried in profile order and the first that matches
//!   decides; an unconditional rule for the same syscall applies when none matches.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use super::arch::Abi;
use super::bpf::{Cmp, SockFilter};
use super::names::{self, Numbers};
use super::SeccompError;

pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(crate) const RET_KILL_THREAD: u32 = 0x0000_0000;
pub(crate) const RET_TRAP: u32 = 0x0003_0000;
pub(crate) const RET_ERRNO: u32 = 0x0005_0000;
pub(crate) const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub(crate) const RET_TRACE: u32 = 0x7ff0_0000;
pub(crate) const RET_LOG: u32 = 0x7ffc_0000;
pub(crate) const RET_ALLOW: u32 = 0x7fff_0000;
const RET_DATA: u32 = 0x0000_ffff;

pub(crate) const FLAG_TSYNC: u32 = 1;
pub(crate) const FLAG_LOG: u32 = 2;
pub(crate) const FLAG_SPEC_ALLOW: u32 = 4;
pub(crate) const FLAG_NEW_LISTENER: u32 = 8;
pub(crate) const FLAG_TSYNC_ESRCH: u32 = 16;
pub(crate) const FLAG_WAIT_KILLABLE_RECV: u32 = 32;

/// What a syscall from an ABI not in the filter gets.
pub const BAD_ARCH_ACTION: u32 = RET_KILL_PROCESS;

/// Syscalls the runtime itself makes after installing a filter with a NOTIFY rule and before
/// the listener fd reaches the agent; notifying them would deadlock the container's start.
pub const NOTIFY_FORBIDDEN: &[&str] = &["sendmsg", "write", "close"];

/// The compiled form, before installation.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub filter: Vec<SockFilter>,
    pub flags: u32,
    pub has_notify: bool,
    pub abis: Vec<Abi>,
}

fn action_name(a: LinuxSeccompAction) -> String {
    a.to_string()
}

/// The `SECCOMP_RET_*` value of an action with its errno (validated as the spec requires).
pub(crate) fn action_ret(
    action: LinuxSeccompAction,
    errno: Option<u32>,
    what: &str,
) -> Result<u32, SeccompError> {
    use LinuxSeccompAction as A;
    let data = match (action, errno) {
        (A::ScmpActErrno | A::ScmpActTrace, Some(e)) => {
            if e > RET_DATA {
                return Err(SeccompError::Invalid(format!(
                    "{what}: errno {e} does not fit in 16 bits"
                )));
            }
            e
        }
        (A::ScmpActErrno | A::ScmpActTrace, None) => libc::EPERM as u32,
        (_, Some(e)) => {
            return Err(SeccompError::Invalid(format!(
                "{what}: errno {e} given for {}, which does not return an errno",
                action_name(action)
            )))
        }
        (_, None) => 0,
    };
    Ok(match action {
        A::ScmpActKill | A::ScmpActKillThread => RET_KILL_THREAD,
        A::ScmpActKillProcess => RET_KILL_PROCESS,
        A::ScmpActTrap => RET_TRAP,
        A::ScmpActErrno => RET_ERRNO | data,
        A::ScmpActNotify => RET_USER_NOTIF,
        A::ScmpActTrace => RET_TRACE | data,
        A::ScmpActLog => RET_LOG,
        A::ScmpActAllow => RET_ALLOW,
    })
}

fn flag_bits(flags: &[LinuxSeccompFilterFlag]) -> u32 {
    flags
        .iter()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        })
        .fold(0, |a, b| a | b)
}

/// One ANDed set of argument conditions and the action taken when all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    /// (argument index, comparison).
    pub conds: Vec<(u32, Cmp)>,
    pub ret: u32,
}

/// Everything a profile says about one syscall number of one ABI.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Tried in profile order; the first that holds decides.
    pub conditional: Vec<Rule>,
    /// The first unconditional rule's action, taken when no conditional rule holds.
    pub unconditional: Option<u32>,
}

/// One rule of the profile naming a syscall: its action, or its argument rules (an index into
/// the profile's rule sets).
#[derive(Clone, Copy, Debug)]
enum Hit {
    Unconditional(u32),
    Rules(usize),
}

/// A syscall number named by the profile's rule `i`, as `nr << 32 | i`: sorting these plain
/// integers orders by number, then by the rule's place in the profile.
fn hit_key(nr: u32, i: usize) -> u64 {
    u64::from(nr) << 32 | i as u64
}

/// Fold the sorted hit keys of one ABI into one entry per number: conditional rules in profile
/// order, the first unconditional action.
fn entries(abi: Abi, keys: &[u64], hits: &[Hit], rule_sets: &[Vec<Rule>]) -> Table {
    let mut out: Vec<(u32, Entry)> = Vec::with_capacity(keys.len());
    for &key in keys {
        let (nr, hit) = ((key >> 32) as u32, hits[key as u32 as usize]);
        if out.last().map(|(n, _)| *n) != Some(nr) {
            out.push((nr, Entry::default()));
        }
        let Some((_, e)) = out.last_mut() else {
            continue;
        };
        match hit {
            Hit::Unconditional(ret) if e.unconditional.is_none() => e.unconditional = Some(ret),
            Hit::Unconditional(_) => {
                tracing::debug!(?abi, nr, "second unconditional rule ignored");
            }
            Hit::Rules(i) => e.conditional.extend(rule_sets[i].iter().cloned()),
        }
    }
    out
}

/// One ABI's entries: sorted by syscall number, one per number.
pub(crate) type Table = Vec<(u32, Entry)>;

/// A profile resolved to per-ABI rule tables, before any BPF is emitted.
#[derive(Debug)]
pub(crate) struct Plan {
    pub tables: BTreeMap<Abi, Table>,
    pub default_ret: u32,
    pub flags: u32,
    pub has_notify: bool,
    pub abis: Vec<Abi>,
}

fn cmp_of(arg: &LinuxSeccompArg, what: &str) -> Result<(u32, Cmp), SeccompError> {
    let index = arg.index();
    if index > 5 {
        return Err(SeccompError::Invalid(format!(
            "{what}: argument index {index} out of range (syscalls have arguments 0 to 5)"
        )));
    }
    let v = arg.value();
    let cmp = match arg.op() {
        LinuxSeccompOperator::ScmpCmpEq => Cmp::Eq(v),
        LinuxSeccompOperator::ScmpCmpNe => Cmp::Ne(v),
        LinuxSeccompOperator::ScmpCmpLt => Cmp::Lt(v),
        LinuxSeccompOperator::ScmpCmpLe => Cmp::Le(v),
        LinuxSeccompOperator::ScmpCmpGt => Cmp::Gt(v),
        LinuxSeccompOperator::ScmpCmpGe => Cmp::Ge(v),
        // libseccomp's SCMP_CMP_MASKED_EQ takes the mask first, then the datum.
        LinuxSeccompOperator::ScmpCmpMaskedEq => Cmp::MaskedEq {
            mask: v,
            value: arg.value_two().unwrap_or(0),
        },
    };
    Ok((index as u32, cmp))
}

pub(crate) fn rules_of(sc: &LinuxSyscall, ret: u32, what: &str) -> Result<Vec<Rule>, SeccompError> {
    let args = sc.args().as_deref().unwrap_or(&[]);
    let conds = args
        .iter()
        .map(|a| cmp_of(a, what))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = [false; 6];
    let repeated = conds.iter().any(|(i, _)| {
        let r = seen[*i as usize];
        seen[*i as usize] = true;
        r
    });
    Ok(if repeated {
        conds
            .into_iter()
            .map(|c| Rule {
                conds: vec![c],
                ret,
            })
            .collect()
    } else {
        vec![Rule { conds, ret }]
    })
}

/// Compile a spec profile. Pure: touches no kernel state.
pub(crate) fn compile(spec: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    let plan = plan(spec, |name| names::numbers(name).copied())?;
    let filter = super::emit::emit(&plan.tables, plan.default_ret)?;
    Ok(Compiled {
        filter,
        flags: plan.flags,
        has_notify: plan.has_notify,
        abis: plan.abis,
    })
}

/// Validate a profile and sort its rules by ABI and syscall number; `numbers` gives a name's
/// number in every ABI.
pub(crate) fn plan(
    spec: &LinuxSeccomp,
    numbers: impl Fn(&str) -> Option<Numbers>,
) -> Result<Plan, SeccompError> {
    if spec.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::Invalid(
            "defaultAction SCMP_ACT_NOTIFY is not allowed: the runtime's own syscalls after \
             installing the filter would wait on an agent that has no fd yet"
                .into(),
        ));
    }
    let default_ret = action_ret(
        spec.default_action(),
        spec.default_errno_ret(),
        "defaultAction",
    )?;
    if spec.listener_metadata().is_some() && spec.listener_path().is_none() {
        return Err(SeccompError::Invalid(
            "listenerMetadata is set but listenerPath is not".into(),
        ));
    }
    let mut flags = flag_bits(spec.flags().as_deref().unwrap_or(&[]));

    let mut abis = vec![Abi::native()];
    for arch in spec.architectures().as_deref().unwrap_or(&[]) {
        match Abi::from_spec(*arch) {
            Some(abi) if Abi::runnable_on_host().contains(&abi) => {
                if !abis.contains(&abi) {
                    abis.push(abi);
                }
            }
            _ => tracing::debug!(arch = %arch, "architecture cannot run on this host; skipped"),
        }
    }

    // Every (number, rule) pair per ABI, grouped by number afterwards.
    let named: usize = spec
        .syscalls()
        .iter()
        .flatten()
        .map(|s| s.names().len())
        .sum();
    let mut keys: Vec<(Abi, Vec<u64>)> = abis
        .iter()
        .map(|a| (*a, Vec::with_capacity(named)))
        .collect();
    keys.sort_by_key(|(abi, _)| *abi);
    let mut hits: Vec<Hit> = Vec::new();
    let mut rule_sets: Vec<Vec<Rule>> = Vec::new();
    let mut has_notify = false;
    for (i, sc) in spec.syscalls().as_deref().unwrap_or(&[]).iter().enumerate() {
        let what = format!("syscalls[{i}]");
        if sc.names().is_empty() {
            return Err(SeccompError::Invalid(format!("{what}: names is empty")));
        }
        let ret = action_ret(sc.action(), sc.errno_ret(), &what)?;
        if sc.action() == LinuxSeccompAction::ScmpActNotify {
            if let Some(bad) = sc
                .names()
                .iter()
                .find(|n| NOTIFY_FORBIDDEN.contains(&n.as_str()))
            {
                return Err(SeccompError::Invalid(format!(
                    "{what}: SCMP_ACT_NOTIFY on {bad} is not supported (the runtime needs it \
                     to hand the listener fd over)"
                )));
            }
            has_notify = true;
        }
        hits.push(if sc.args().as_deref().unwrap_or(&[]).is_empty() {
            Hit::Unconditional(ret)
        } else {
            rule_sets.push(rules_of(sc, ret, &what)?);
            Hit::Rules(rule_sets.len() - 1)
        });
        for name in sc.names() {
            let Some(row) = numbers(name) else {
                tracing::debug!(syscall = %name, "unknown syscall name skipped");
                continue;
            };
            for (abi, keys) in keys.iter_mut() {
                let nr = row[abi.column()];
                if nr != names::NONE {
                    keys.push(hit_key(nr, i));
                }
            }
        }
    }
    let tables = keys
        .into_iter()
        .map(|(abi, mut keys)| {
            keys.sort_unstable();
            (abi, entries(abi, &keys, &hits, &rule_sets))
        })
        .collect();
    if !has_notify && flags & FLAG_WAIT_KILLABLE_RECV != 0 {
        // The kernel refuses this flag without a listener; with no NOTIFY rule it means nothing.
        tracing::debug!("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV without a NOTIFY rule ignored");
        flags &= !FLAG_WAIT_KILLABLE_RECV;
    }
    if has_notify {
        flags |= FLAG_NEW_LISTENER;
        if flags & FLAG_TSYNC != 0 {
            flags |= FLAG_TSYNC_ESRCH;
        }
    }

    Ok(Plan {
        tables,
        default_ret,
        flags,
        has_notify,
        abis,
    })
}

#[cfg(test)]
mod tests {
    use super::super::arch::{AUDIT_ARCH_I386, X32_SYSCALL_BIT};
    use super::super::bpf::{data, run};
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).expect("profile json")
    }

    fn nr(name: &str) -> u32 {
        Abi::native().syscall_nr(name).expect("known syscall")
    }

    fn eval(c: &Compiled, name: &str, args: [u64; 6]) -> u32 {
        run(&c.filter, &data(nr(name), Abi::native().audit_arch(), args))
    }

    #[test]
    fn default_and_named_actions() {
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
                "syscalls":[{"names":["getppid","getpid"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
                            {"names":["kill"],"action":"SCMP_ACT_TRAP"},
                            {"names":["tkill"],"action":"SCMP_ACT_KILL_PROCESS"},
                            {"names":["tgkill"],"action":"SCMP_ACT_LOG"},
                            {"names":["uname"],"action":"SCMP_ACT_TRACE","errnoRet":7},
                            {"names":["no_such_call_kos"],"action":"SCMP_ACT_ALLOW"}]}"#,
        ))
        .expect("compile");
        assert_eq!(eval(&c, "getppid", [0; 6]), RET_ALLOW);
        assert_eq!(eval(&c, "getpid", [0; 6]), RET_ALLOW);
        assert_eq!(eval(&c, "mkdirat", [0; 6]), RET_ERRNO | 13);
        assert_eq!(eval(&c, "kill", [0; 6]), RET_TRAP);
        assert_eq!(eval(&c, "tkill", [0; 6]), RET_KILL_PROCESS);
        assert_eq!(eval(&c, "tgkill", [0; 6]), RET_LOG);
        assert_eq!(eval(&c, "uname", [0; 6]), RET_TRACE | 7);
        assert_eq!(eval(&c, "read", [0; 6]), RET_ERRNO | 38);
        assert!(!c.has_notify);
    }

    #[test]
    fn foreign_abi_is_killed_unless_listed() {
        let p = r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#;
        let c = compile(&profile(p)).expect("compile");
        let d = data(3, AUDIT_ARCH_I386, [0; 6]);
        if Abi::native() == Abi::X86_64 {
            assert_eq!(run(&c.filter, &d), BAD_ARCH_ACTION);
            // x32 through the x86-64 audit arch too.
            let x32 = data(
                X32_SYSCALL_BIT,
                super::super::arch::AUDIT_ARCH_X86_64,
                [0; 6],
            );
            assert_eq!(run(&c.filter, &x32), BAD_ARCH_ACTION);
            let c = compile(&profile(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"],
                    "syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO"}]}"#,
            ))
            .expect("compile");
            assert_eq!(run(&c.filter, &d), RET_ERRNO | 1, "i386 read is nr 3");
            assert_eq!(run(&c.filter, &data(4, AUDIT_ARCH_I386, [0; 6])), RET_ALLOW);
            assert_eq!(run(&c.filter, &x32), RET_ERRNO | 1);
        }
        assert_eq!(run(&c.filter, &data(0, 0x1234, [0; 6])), BAD_ARCH_ACTION);
    }

    #[test]
    fn args_and_combination_and_or_on_repeated_index() {
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":22,
                 "args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"},{"index":1,"value":3,"op":"SCMP_CMP_GT"}]},
                {"names":["socket"],"action":"SCMP_ACT_ERRNO","errnoRet":97,
                 "args":[{"index":0,"value":16,"op":"SCMP_CMP_EQ"},{"index":0,"value":17,"op":"SCMP_CMP_EQ"}]},
                {"names":["clone"],"action":"SCMP_ACT_ERRNO",
                 "args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
                {"names":["clone"],"action":"SCMP_ACT_KILL"}]}"#,
        ))
        .expect("compile");
        assert_eq!(eval(&c, "personality", [8, 4, 0, 0, 0, 0]), RET_ERRNO | 22);
        assert_eq!(eval(&c, "personality", [8, 3, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(eval(&c, "personality", [9, 4, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(eval(&c, "socket", [16, 0, 0, 0, 0, 0]), RET_ERRNO | 97);
        assert_eq!(eval(&c, "socket", [17, 0, 0, 0, 0, 0]), RET_ERRNO | 97);
        assert_eq!(eval(&c, "socket", [2, 0, 0, 0, 0, 0]), RET_ALLOW);
        // No namespace flags: masked value 0 -> first rule; with CLONE_NEWUSER -> unconditional.
        assert_eq!(eval(&c, "clone", [0x11, 0, 0, 0, 0, 0]), RET_ERRNO | 1);
        assert_eq!(
            eval(&c, "clone", [0x1000_0000, 0, 0, 0, 0, 0]),
            RET_KILL_THREAD
        );
    }

    #[test]
    fn notify_sets_listener_flag() {
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/kos-agent.sock",
                "flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_TSYNC"],
                "syscalls":[{"names":["getppid"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        ))
        .expect("compile");
        assert!(c.has_notify);
        assert_eq!(
            c.flags,
            FLAG_LOG | FLAG_TSYNC | FLAG_NEW_LISTENER | FLAG_TSYNC_ESRCH
        );
        assert_eq!(eval(&c, "getppid", [0; 6]), RET_USER_NOTIF);
    }

    #[test]
    fn wait_killable_needs_a_listener() {
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
        ))
        .expect("compile");
        assert_eq!(c.flags, 0);
    }

    #[test]
    fn bad_input_is_rejected() {
        let cases = [
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
                "index 6 out of range",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","errnoRet":1}]}"#,
                "does not return an errno",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_KILL","defaultErrnoRet":1}"#,
                "does not return an errno",
            ),
            (r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#, "defaultAction"),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[],"action":"SCMP_ACT_ERRNO"}]}"#,
                "names is empty",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["write"],"action":"SCMP_ACT_NOTIFY"}]}"#,
                "NOTIFY on write",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}"#,
                "16 bits",
            ),
        ];
        for (json, needle) in cases {
            let e = compile(&profile(json)).expect_err(json);
            assert!(
                e.to_string().contains(needle),
                "{e} should mention {needle}"
            );
        }
    }

    #[test]
    fn many_syscalls_stay_within_jump_range() {
        let names: Vec<String> = syscalls::x86_64::Sysno::iter()
            .map(|s| format!("\"{}\"", s.name()))
            .collect();
        let json = format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{{"names":[{}],"action":"SCMP_ACT_ALLOW"}}]}}"#,
            names.join(",")
        );
        let c = compile(&profile(&json)).expect("compile big profile");
        assert_eq!(eval(&c, "read", [0; 6]), RET_ALLOW);
        assert_eq!(eval(&c, "openat2", [0; 6]), RET_ALLOW);
    }
}
