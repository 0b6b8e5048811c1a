//! Test outcomes, known departures and the summary.

use std::fmt;
use std::time::Duration;

/// Raised by a test (as an `anyhow::Error`) when the machine truly lacks what it needs.
#[derive(Debug)]
pub struct Skip(pub String);

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped: {}", self.0)
    }
}

impl std::error::Error for Skip {}

/// Returns early from a test with a skip.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::harness::report::Skip(format!($($arg)*))))
    };
}

/// A place where a named runtime is known to depart from the spec, with the clause.
#[derive(Debug, Clone, Copy)]
pub struct Departure {
    pub runtime: &'static str,
    pub clause: &'static str,
}

#[derive(Debug)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

#[derive(Debug)]
pub struct TestResult {
    pub name: &'static str,
    pub outcome: Outcome,
    pub elapsed: Duration,
    /// Set when the test failed and the runtime under test is one it is known to depart for.
    pub departure: Option<Departure>,
    pub log: Vec<String>,
}

impl TestResult {
    pub fn line(&self) -> String {
        let t = self.elapsed.as_secs_f64();
        match &self.outcome {
            Outcome::Pass => format!("PASS {} ({t:.2}s)", self.name),
            Outcome::Skip(why) => format!("SKIP {} ({t:.2}s): {why}", self.name),
            Outcome::Fail(msg) => {
                let mut s = format!("FAIL {} ({t:.2}s): {msg}", self.name);
                if let Some(d) = self.departure {
                    s.push_str(&format!(
                        "\n     known_{}_departure: {}",
                        d.runtime, d.clause
                    ));
                }
                s
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub departures: usize,
    pub not_run: usize,
}

impl Summary {
    pub fn add(&mut self, r: &TestResult) {
        match r.outcome {
            Outcome::Pass => self.passed += 1,
            Outcome::Skip(_) => self.skipped += 1,
            Outcome::Fail(_) => {
                self.failed += 1;
                if r.departure.is_some() {
                    self.departures += 1;
                }
            }
        }
    }

    /// The closing line, in the plain form CI reads.
    pub fn closing_line(&self) -> String {
        if self.skipped > 0 {
            format!(
                "{} passed, {} failed, {} skipped",
                self.passed, self.failed, self.skipped
            )
        } else {
            format!("{} passed, {} failed", self.passed, self.failed)
        }
    }
}
