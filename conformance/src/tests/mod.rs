//! The test registry: every test is a named function over a [`Ctx`].

use anyhow::Result;

use crate::harness::ctx::Ctx;
use crate::harness::report::Departure;

mod bad_input;
mod cgroups;
mod compat;
mod crash;
mod escapes;
mod exec;
mod hooks;
mod lifecycle;
mod mounts;
mod namespaces;
mod process;

pub type TestFn = fn(&Ctx) -> Result<()>;

pub struct TestCase {
    pub name: &'static str,
    pub func: TestFn,
    pub departures: &'static [Departure],
}

/// A test with no known departures.
pub const fn t(name: &'static str, func: TestFn) -> TestCase {
    TestCase {
        name,
        func,
        departures: &[],
    }
}

/// A test that `runtime` is known to fail, with the spec clause it departs from.
pub const fn departs(
    name: &'static str,
    func: TestFn,
    departures: &'static [Departure],
) -> TestCase {
    TestCase {
        name,
        func,
        departures,
    }
}

pub fn all() -> Vec<TestCase> {
    let mut v = Vec::new();
    v.extend(lifecycle::tests());
    v.extend(exec::tests());
    v.extend(namespaces::tests());
    v.extend(mounts::tests());
    v.extend(process::tests());
    v.extend(cgroups::tests());
    v.extend(hooks::tests());
    v.extend(bad_input::tests());
    v.extend(compat::tests());
    v.extend(crash::tests());
    v.extend(escapes::tests());
    v
}
