//! The project's default seccomp profile: in effect what Docker's default profile does.
//!
//! Everything not listed fails with EPERM. The list allows the syscalls ordinary programs use,
//! gates a few on their arguments (namespace-creating `clone` flags, `personality` domains,
//! `AF_VSOCK` sockets) and opens privileged groups only when the container holds the matching
//! capability, so a container given e.g. `CAP_SYS_ADMIN` can use `mount`.

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// Allowed for every container.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    // ptrace and cross-process memory access are safe without CAP_SYS_PTRACE since 4.8, where
    // seccomp is checked after ptrace's own changes to a syscall.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    // Architecture-specific housekeeping.
    "arch_prctl",
    "modify_ldt",
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
    "riscv_flush_icache",
    "riscv_hwprobe",
];

/// `personality(2)` domains allowed: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and
/// the 0xffffffff query.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP: creating namespaces needs
/// CAP_SYS_ADMIN.
const CLONE_NS_FLAGS: u64 = 0x7e02_0000;

const AF_VSOCK: u64 = 40;

/// Syscall groups opened by a capability.
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "init_module", "finit_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (
        Capability::SysTime,
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// Docker's default capability set, which [`default_profile`] assumes.
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

fn arg(
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    let b = match value_two {
        Some(v) => b.value_two(v),
        None => b,
    };
    // Every field has a default, so building cannot fail.
    b.build().expect("LinuxSeccompArg builder with defaults")
}

fn rule(
    names: &[&str],
    action: LinuxSeccompAction,
    errno: Option<u32>,
    args: Vec<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(action);
    s.set_errno_ret(errno);
    s.set_args(if args.is_empty() { None } else { Some(args) });
    s
}

fn host_architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else if cfg!(target_arch = "riscv64") {
        vec![Arch::ScmpArchRiscv64]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

/// The default profile for a container holding Docker's default capabilities.
pub fn default_profile() -> LinuxSeccomp {
    default_profile_for(DEFAULT_CAPABILITIES)
}

/// The default profile for a container whose bounding set is `caps`.
pub fn default_profile_for(caps: &[Capability]) -> LinuxSeccomp {
    use LinuxSeccompAction::{ScmpActAllow as Allow, ScmpActErrno as Errno};
    let mut syscalls = vec![rule(ALLOWED, Allow, None, vec![])];
    for p in PERSONALITIES {
        syscalls.push(rule(
            &["personality"],
            Allow,
            None,
            vec![arg(0, *p, None, LinuxSeccompOperator::ScmpCmpEq)],
        ));
    }
    syscalls.push(rule(
        &["socket"],
        Allow,
        None,
        vec![arg(0, AF_VSOCK, None, LinuxSeccompOperator::ScmpCmpNe)],
    ));
    let has = |c: Capability| caps.contains(&c);
    for (cap, names) in BY_CAPABILITY {
        if has(*cap) {
            syscalls.push(rule(names, Allow, None, vec![]));
        }
    }
    if !has(Capability::SysAdmin) {
        // Plain clone without namespace flags stays usable (fork, threads).
        syscalls.push(rule(
            &["clone"],
            Allow,
            None,
            vec![arg(
                0,
                CLONE_NS_FLAGS,
                Some(0),
                LinuxSeccompOperator::ScmpCmpMaskedEq,
            )],
        ));
        // clone3 passes flags in memory, out of BPF's reach: ENOSYS makes libcs fall back
        // to clone, whose flags can be checked.
        syscalls.push(rule(&["clone3"], Errno, Some(libc::ENOSYS as u32), vec![]));
    }
    let mut p = LinuxSeccomp::default();
    p.set_default_action(Errno);
    p.set_default_errno_ret(Some(libc::EPERM as u32));
    p.set_architectures(Some(host_architectures()));
    p.set_syscalls(Some(syscalls));
    p
}

#[cfg(test)]
mod tests {
    use super::super::arch::Abi;
    use super::super::bpf::{data, run};
    use super::super::compile::{compile, RET_ALLOW, RET_ERRNO};
    use super::*;

    fn eval(p: &LinuxSeccomp, name: &str, args: [u64; 6]) -> u32 {
        let c = compile(p).expect("default profile compiles");
        let nr = Abi::native().syscall_nr(name).expect("known");
        run(&c.filter, &data(nr, Abi::native().audit_arch(), args))
    }

    #[test]
    fn default_profile_effects() {
        let p = default_profile();
        assert_eq!(eval(&p, "read", [0; 6]), RET_ALLOW);
        assert_eq!(
            eval(&p, "chroot", [0; 6]),
            RET_ALLOW,
            "CAP_SYS_CHROOT is default"
        );
        assert_eq!(eval(&p, "mount", [0; 6]), RET_ERRNO | 1);
        assert_eq!(eval(&p, "unshare", [0; 6]), RET_ERRNO | 1);
        assert_eq!(eval(&p, "clone", [0x11, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(
            eval(&p, "clone", [0x1000_0011, 0, 0, 0, 0, 0]),
            RET_ERRNO | 1
        );
        assert_eq!(eval(&p, "clone3", [0; 6]), RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(eval(&p, "personality", [8, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(
            eval(&p, "personality", [0x40000, 0, 0, 0, 0, 0]),
            RET_ERRNO | 1
        );
        assert_eq!(eval(&p, "socket", [2, 1, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(eval(&p, "socket", [AF_VSOCK, 1, 0, 0, 0, 0]), RET_ERRNO | 1);
        assert_eq!(eval(&p, "kexec_load", [0; 6]), RET_ERRNO | 1);
        assert_eq!(eval(&p, "open_by_handle_at", [0; 6]), RET_ERRNO | 1);
    }

    #[test]
    fn capabilities_open_their_groups() {
        let p = default_profile_for(&[Capability::SysAdmin, Capability::SysTime]);
        assert_eq!(eval(&p, "mount", [0; 6]), RET_ALLOW);
        assert_eq!(eval(&p, "clone", [0x1000_0011, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(eval(&p, "clone3", [0; 6]), RET_ALLOW);
        assert_eq!(eval(&p, "settimeofday", [0; 6]), RET_ALLOW);
        assert_eq!(eval(&p, "chroot", [0; 6]), RET_ERRNO | 1);
    }

    #[test]
    fn default_profile_round_trips_as_json() {
        let json = serde_json::to_string(&default_profile()).expect("serialize");
        let back: LinuxSeccomp = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, default_profile());
        assert!(json.contains("SCMP_CMP_MASKED_EQ"));
    }
}
