//! Syscall ABIs a filter can cover: their audit arch values and syscall tables.

use std::str::FromStr;

use oci_spec::runtime::Arch;

/// The ABIs whose syscall tables this crate carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Abi {
    /// x86-64.
    X86_64,
    /// x32: x86-64 registers, 32-bit pointers; shares x86-64's audit arch and sets bit 30 of nr.
    X32,
    /// i386.
    X86,
    /// AArch64.
    Aarch64,
    /// 32-bit ARM (EABI).
    Arm,
    /// RISC-V 64.
    Riscv64,
}

pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub(crate) const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
pub(crate) const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
pub(crate) const AUDIT_ARCH_RISCV64: u32 = 0xc000_00f3;

/// Bit 30 of the syscall number marks the x32 ABI on x86-64.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// x32 syscalls whose numbers differ from x86-64's (the x32-specific compat entries, 512-547
/// in the kernel's table); every other x32 syscall is x86-64's number with bit 30 set.
const X32_SPECIFIC: &[(&str, u32)] = &[
    ("rt_sigaction", 512),
    ("rt_sigreturn", 513),
    ("ioctl", 514),
    ("readv", 515),
    ("writev", 516),
    ("recvfrom", 517),
    ("sendmsg", 518),
    ("recvmsg", 519),
    ("execve", 520),
    ("ptrace", 521),
    ("rt_sigpending", 522),
    ("rt_sigtimedwait", 523),
    ("rt_sigqueueinfo", 524),
    ("sigaltstack", 525),
    ("timer_create", 526),
    ("mq_notify", 527),
    ("kexec_load", 528),
    ("waitid", 529),
    ("set_robust_list", 530),
    ("get_robust_list", 531),
    ("vmsplice", 532),
    ("move_pages", 533),
    ("preadv", 534),
    ("pwritev", 535),
    ("rt_tgsigqueueinfo", 536),
    ("recvmmsg", 537),
    ("sendmmsg", 538),
    ("process_vm_readv", 539),
    ("process_vm_writev", 540),
    ("setsockopt", 541),
    ("getsockopt", 542),
    ("io_setup", 543),
    ("io_submit", 544),
    ("execveat", 545),
    ("preadv2", 546),
    ("pwritev2", 547),
];

impl Abi {
    /// The ABI this crate was compiled for.
    pub fn native() -> Abi {
        if cfg!(target_arch = "x86_64") {
            Abi::X86_64
        } else if cfg!(target_arch = "aarch64") {
            Abi::Aarch64
        } else if cfg!(target_arch = "riscv64") {
            Abi::Riscv64
        } else if cfg!(target_arch = "arm") {
            Abi::Arm
        } else {
            Abi::X86
        }
    }

    /// ABIs whose syscalls a process on this host can make: the native one and its compat
    /// ABIs. Listing any other architecture in a profile has no effect here.
    pub fn runnable_on_host() -> &'static [Abi] {
        match Abi::native() {
            Abi::X86_64 => &[Abi::X86_64, Abi::X86, Abi::X32],
            Abi::Aarch64 => &[Abi::Aarch64, Abi::Arm],
            Abi::Riscv64 => &[Abi::Riscv64],
            Abi::Arm => &[Abi::Arm],
            Abi::X86 | Abi::X32 => &[Abi::X86],
        }
    }

    /// Map a spec architecture to an ABI with a table. `None` for architectures this crate has
    /// no table for (none of which can run on an x86-64, AArch64 or RISC-V host).
    pub fn from_spec(arch: Arch) -> Option<Abi> {
        match arch {
            Arch::ScmpArchNative => Some(Abi::native()),
            Arch::ScmpArchX86_64 => Some(Abi::X86_64),
            Arch::ScmpArchX86 => Some(Abi::X86),
            Arch::ScmpArchX32 => Some(Abi::X32),
            Arch::ScmpArchAarch64 => Some(Abi::Aarch64),
            Arch::ScmpArchArm => Some(Abi::Arm),
            Arch::ScmpArchRiscv64 => Some(Abi::Riscv64),
            _ => None,
        }
    }

    /// `AUDIT_ARCH_*` value the kernel puts in `seccomp_data.arch`.
    pub fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => AUDIT_ARCH_X86_64,
            Abi::X86 => AUDIT_ARCH_I386,
            Abi::Aarch64 => AUDIT_ARCH_AARCH64,
            Abi::Arm => AUDIT_ARCH_ARM,
            Abi::Riscv64 => AUDIT_ARCH_RISCV64,
        }
    }

    /// The number of syscall `name` in this ABI, as it appears in `seccomp_data.nr`.
    pub fn syscall_nr(self, name: &str) -> Option<u32> {
        match self {
            Abi::X86_64 => syscalls::x86_64::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
            Abi::X32 => {
                if let Some(&(_, nr)) = X32_SPECIFIC.iter().find(|(n, _)| *n == name) {
                    return Some(nr | X32_SYSCALL_BIT);
                }
                let nr = syscalls::x86_64::Sysno::from_str(name).ok()?.id() as u32;
                // x86-64 numbers 512+ do not exist; the x86-64-only entries those x32 ones
                // replace are still valid numbers and just return ENOSYS under x32.
                Some(nr | X32_SYSCALL_BIT)
            }
            Abi::X86 => syscalls::x86::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
            Abi::Aarch64 => syscalls::aarch64::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
            Abi::Arm => syscalls::arm::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
            Abi::Riscv64 => syscalls::riscv64::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_numbers() {
        assert_eq!(Abi::X86_64.syscall_nr("read"), Some(0));
        assert_eq!(Abi::X86_64.syscall_nr("openat2"), Some(437));
        assert_eq!(Abi::X86.syscall_nr("read"), Some(3));
        assert_eq!(Abi::X32.syscall_nr("read"), Some(X32_SYSCALL_BIT));
        assert_eq!(Abi::X32.syscall_nr("ioctl"), Some(X32_SYSCALL_BIT | 514));
        assert_eq!(Abi::Aarch64.syscall_nr("openat"), Some(56));
        assert_eq!(Abi::X86_64.syscall_nr("no_such_syscall"), None);
        assert_eq!(
            Abi::Aarch64.syscall_nr("open"),
            None,
            "aarch64 has no open(2)"
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn native_table_matches_libc() {
        assert_eq!(
            Abi::X86_64.syscall_nr("getppid"),
            Some(libc::SYS_getppid as u32)
        );
        assert_eq!(
            Abi::X86_64.syscall_nr("mkdirat"),
            Some(libc::SYS_mkdirat as u32)
        );
        assert_eq!(
            Abi::X86_64.syscall_nr("clone3"),
            Some(libc::SYS_clone3 as u32)
        );
    }
}
