//! Syscall name -> number in every ABI this crate covers, resolved by one hash lookup.
//!
//! A profile names a few hundred syscalls and the runtime compiles it once per container, so
//! resolving names is on `kosrun run`'s path: one probe of a hash index over one table (giving
//! all ABIs' numbers at once) replaces matching every name against each ABI's full list.
//!
//! The table ([`super::names_table`]) is generated from the `syscalls` crate's tables plus the
//! x32 compat numbers below; the test `table_matches_its_sources` checks that it still matches
//! them and rewrites it when run with `KOS_REGEN_SYSCALL_TABLE=1`.

use std::sync::OnceLock;

use super::arch::Abi;
use super::names_table::TABLE;

/// Marks an ABI that lacks the syscall.
pub(crate) const NONE: u32 = u32::MAX;

/// One table row: the syscall's numbers in [`Abi::column`] order, as they appear in
/// `seccomp_data.nr` (x32's with `__X32_SYSCALL_BIT` set), [`NONE`] where the ABI lacks it.
pub(crate) type Numbers = [u32; Abi::COUNT];

/// The numbers of syscall `name` in every ABI, or `None` when no ABI knows the name.
pub(crate) fn numbers(name: &str) -> Option<&'static Numbers> {
    let slots = index();
    let mask = slots.len() - 1;
    let mut s = hash(name) & mask;
    loop {
        let row = *slots.get(s)?;
        // An EMPTY slot (never a row: the table is shorter) ends the probe: unknown name.
        let (n, numbers) = TABLE.get(usize::from(row))?;
        if *n == name {
            return Some(numbers);
        }
        s = (s + 1) & mask;
    }
}

/// An empty slot of the index.
const EMPTY: u16 = u16::MAX;

/// FNV-1a: a few cycles per byte, and syscall names are short.
fn hash(name: &str) -> usize {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h ^ (h >> 32)) as usize
}

/// Open-addressing index of [`TABLE`] rows by name hash, a quarter full so a lookup almost
/// always probes one slot. Built on first use: a few microseconds, once per process.
fn index() -> &'static [u16] {
    static INDEX: OnceLock<Box<[u16]>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut slots = vec![EMPTY; (TABLE.len() * 4).next_power_of_two()].into_boxed_slice();
        let mask = slots.len() - 1;
        for (row, (name, _)) in TABLE.iter().enumerate() {
            let mut s = hash(name) & mask;
            while slots[s] != EMPTY {
                s = (s + 1) & mask;
            }
            // The table has far fewer rows than u16::MAX (checked by the tests).
            slots[s] = row as u16;
        }
        slots
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::str::FromStr;

    use super::super::arch::X32_SYSCALL_BIT;
    use super::*;

    /// x32 syscalls whose numbers differ from x86-64's (the x32-specific compat entries,
    /// 512-547 in the kernel's table); every other x32 syscall is x86-64's number with bit 30
    /// set. x86-64 numbers 512+ do not exist; the x86-64-only entries those x32 ones replace
    /// are still valid numbers under x32 and just return ENOSYS.
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

    /// What the `syscalls` crate says, one name at a time through its `FromStr` (the way this
    /// crate resolved names before the table): the reference the table must equal.
    pub(crate) fn reference_nr(abi: Abi, name: &str) -> Option<u32> {
        match abi {
            Abi::X86_64 => syscalls::x86_64::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
            Abi::X32 => {
                if let Some(&(_, nr)) = X32_SPECIFIC.iter().find(|(n, _)| *n == name) {
                    return Some(nr | X32_SYSCALL_BIT);
                }
                let nr = syscalls::x86_64::Sysno::from_str(name).ok()?.id() as u32;
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

    /// Every name any ABI knows.
    pub(crate) fn all_names() -> Vec<String> {
        let mut names: Vec<String> = syscalls::x86_64::Sysno::iter()
            .map(|s| s.name().to_string())
            .chain(syscalls::x86::Sysno::iter().map(|s| s.name().to_string()))
            .chain(syscalls::aarch64::Sysno::iter().map(|s| s.name().to_string()))
            .chain(syscalls::arm::Sysno::iter().map(|s| s.name().to_string()))
            .chain(syscalls::riscv64::Sysno::iter().map(|s| s.name().to_string()))
            .chain(X32_SPECIFIC.iter().map(|(n, _)| n.to_string()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn expected() -> BTreeMap<String, Numbers> {
        all_names()
            .into_iter()
            .map(|name| {
                let row = Abi::ALL.map(|abi| reference_nr(abi, &name).unwrap_or(NONE));
                (name, row)
            })
            .collect()
    }

    fn render(rows: &BTreeMap<String, Numbers>) -> String {
        let mut s = String::from(
            "//! Generated by `names::tests::table_matches_its_sources` \
             (KOS_REGEN_SYSCALL_TABLE=1); do not edit.\n\
             //! Columns in `Abi::column` order: x86-64, x32, i386, AArch64, ARM, RISC-V 64.\n\n\
             use super::names::{Numbers, NONE as N};\n\n\
             /// Sorted by name (byte order), one row per name.\n\
             #[rustfmt::skip]\n\
             pub(crate) static TABLE: &[(&str, Numbers)] = &[\n",
        );
        for (name, row) in rows {
            let cols: Vec<String> = row
                .iter()
                .map(|&n| match n {
                    NONE => "N".to_string(),
                    n if n & X32_SYSCALL_BIT != 0 => format!("{n:#x}"),
                    n => n.to_string(),
                })
                .collect();
            s.push_str(&format!("    ({name:?}, [{}]),\n", cols.join(", ")));
        }
        s.push_str("];\n");
        s
    }

    #[test]
    fn table_matches_its_sources() {
        let want = render(&expected());
        if include_str!("names_table.rs") != want {
            if std::env::var_os("KOS_REGEN_SYSCALL_TABLE").is_some() {
                let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/seccomp/names_table.rs");
                std::fs::write(path, want).expect("write names_table.rs");
                panic!("{path} regenerated; run the tests again");
            }
            panic!(
                "names_table.rs is stale; regenerate with \
                 KOS_REGEN_SYSCALL_TABLE=1 cargo test -p kos-security names::"
            );
        }
        assert!(
            TABLE.windows(2).all(|w| w[0].0 < w[1].0),
            "table not sorted and unique"
        );
        assert!(
            TABLE.len() < usize::from(EMPTY),
            "rows must fit the u16 index"
        );
    }

    #[test]
    fn every_name_resolves_as_the_reference_does() {
        let mut names = all_names();
        names.extend(["", "no_such_call", "READ", "read ", "zzzz"].map(String::from));
        for name in &names {
            for abi in Abi::ALL {
                assert_eq!(
                    abi.syscall_nr(name),
                    reference_nr(abi, name),
                    "{abi:?} {name:?}"
                );
            }
        }
    }
}
