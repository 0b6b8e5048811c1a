//! The machinery shared by all tests: rootfs, bundles, runtime invocation, fixtures, report.

pub mod bundle;
pub mod console;
pub mod ctx;
pub mod host;
pub mod parse;
pub mod report;
pub mod rootfs;
pub mod runtime;
