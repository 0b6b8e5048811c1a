//! Linux mechanics of a container: namespaces, rootfs, the init process.

pub mod confine;
pub mod console;
pub mod exec;
pub mod init;
pub mod namespaces;
pub mod netlo;
pub mod process;
pub mod rdt;
pub mod rootfs;
pub mod spawn;
pub mod sync;
pub mod sysctl;
pub mod tty;
