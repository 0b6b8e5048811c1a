//! Syscall ABIs a filter can cover: their audit arch values and syscall tables.

use oci_spec::runtime::Arch;

use super::names;

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

impl Abi {
    /// How many ABIs there are.
    pub const COUNT: usize = 6;

    /// Every ABI, in the order of the syscall table's columns.
    pub const ALL: [Abi; Abi::COUNT] = [
        Abi::X86_64,
        Abi::X32,
        Abi::X86,
        Abi::Aarch64,
        Abi::Arm,
        Abi::Riscv64,
    ];

    /// This ABI's column in the syscall name table.
    pub(crate) fn column(self) -> usize {
        self as usize
    }

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
        names::numbers(name)
            .map(|row| row[self.column()])
            .filter(|&nr| nr != names::NONE)
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
