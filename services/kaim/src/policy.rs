//! Rego policies evaluated in-process with regorus.
//!
//! A policy is a Rego v1 module in `package kaim`. It decides with `allow` (a boolean, default
//! false) and may veto with `deny` (a set of messages); `reason` (a string) names the rule that
//! allowed. The decision is allow only when `allow` is true and `deny` is empty. Any error while
//! evaluating is a deny: the engine fails closed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use regorus::{Engine, Value};

use crate::error::{Error, Result};

/// Largest policy file read.
const MAX_POLICY: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub reason: String,
}

impl Decision {
    pub fn deny(reason: impl Into<String>) -> Decision {
        Decision {
            allow: false,
            reason: reason.into(),
        }
    }
}

pub struct Policy {
    path: PathBuf,
    engine: Mutex<Engine>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("path", &self.path).finish()
    }
}

impl Policy {
    pub fn from_file(path: &Path) -> Result<Policy> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_POLICY + 1).read_to_string(&mut text))
            .map_err(|source| Error::PolicyRead {
                path: path.to_path_buf(),
                source,
            })?;
        if text.len() as u64 > MAX_POLICY {
            return Err(Error::PolicyCompile {
                path: path.to_path_buf(),
                message: format!("larger than {MAX_POLICY} bytes"),
            });
        }
        Policy::from_source(path, &text)
    }

    /// Reads and compiles the file again and swaps it in; on any error the policy in force
    /// stays as it was.
    pub fn reload(&self) -> Result<()> {
        let fresh = Policy::from_file(&self.path)?;
        let engine = fresh.engine.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut cur = match self.engine.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *cur = engine;
        Ok(())
    }

    /// `path` only names the policy in errors and audit records.
    pub fn from_source(path: &Path, rego: &str) -> Result<Policy> {
        let compile = |message: String| Error::PolicyCompile {
            path: path.to_path_buf(),
            message: one_line(&message),
        };
        let mut engine = Engine::new();
        let package = engine
            .add_policy(path.display().to_string(), rego.to_string())
            .map_err(|e| compile(e.to_string()))?;
        if package != "data.kaim" {
            return Err(compile(format!(
                "package is {package}, expected `package kaim`"
            )));
        }
        let policy = Policy {
            path: path.to_path_buf(),
            engine: Mutex::new(engine),
        };
        // Catch rules that cannot evaluate at all now rather than on the first request.
        policy
            .evaluate_value(serde_json::json!({}))
            .map_err(|e| compile(e.to_string()))?;
        Ok(policy)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Decides on `input`; an evaluation error is a deny naming the error.
    pub fn evaluate(&self, input: serde_json::Value) -> Decision {
        match self.evaluate_value(input) {
            Ok(d) => d,
            Err(e) => Decision::deny(format!("policy error: {e}")),
        }
    }

    fn evaluate_value(&self, input: serde_json::Value) -> Result<Decision> {
        let mut engine = match self.engine.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        engine.set_input(Value::from(input));
        let allow = match eval(&mut engine, "data.kaim.allow")? {
            Value::Undefined => false,
            Value::Bool(b) => b,
            other => return Err(wrong_type("data.kaim.allow", &other, "a boolean")),
        };
        let mut denies = Vec::new();
        match eval(&mut engine, "data.kaim.deny")? {
            Value::Undefined => {}
            Value::Set(s) => {
                for v in s.iter() {
                    denies.push(message(v));
                }
            }
            Value::Array(a) => {
                for v in a.iter() {
                    denies.push(message(v));
                }
            }
            other => return Err(wrong_type("data.kaim.deny", &other, "a set of messages")),
        }
        if !denies.is_empty() {
            return Ok(Decision::deny(denies.join("; ")));
        }
        if !allow {
            return Ok(Decision::deny("no allow rule matched"));
        }
        let reason = match eval(&mut engine, "data.kaim.reason")? {
            Value::String(s) => s.to_string(),
            _ => "allow".to_string(),
        };
        Ok(Decision {
            allow: true,
            reason,
        })
    }
}

/// The rule's value, or Undefined when the policy does not define it (or it did not fire).
fn eval(engine: &mut Engine, rule: &str) -> Result<Value> {
    let results = engine
        .eval_query(rule.to_string(), false)
        .map_err(|e| Error::PolicyEval {
            rule: rule.to_string(),
            message: one_line(&e.to_string()),
        })?;
    Ok(results
        .result
        .into_iter()
        .next()
        .and_then(|r| r.expressions.into_iter().next())
        .map_or(Value::Undefined, |e| e.value))
}

/// regorus reports with a source excerpt over several lines; errors here are one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn message(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        other => other.to_json_str().unwrap_or_else(|_| "deny".to_string()),
    }
}

fn wrong_type(rule: &str, v: &Value, expected: &'static str) -> Error {
    Error::PolicyType {
        rule: rule.to_string(),
        value: v.to_json_str().unwrap_or_default(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(src: &str) -> Policy {
        Policy::from_source(Path::new("test.rego"), src).expect("policy")
    }

    #[test]
    fn allow_deny_and_reason() {
        let p = policy(
            r#"package kaim
default allow := false
allow if input.RequestMethod == "GET"
reason := "reads" if input.RequestMethod == "GET"
deny contains "no secrets" if startswith(input.RequestPath, "/secrets")
"#,
        );
        let d = p.evaluate(json!({"RequestMethod": "GET", "RequestPath": "/_ping"}));
        assert_eq!(
            d,
            Decision {
                allow: true,
                reason: "reads".into()
            }
        );
        let d = p.evaluate(json!({"RequestMethod": "POST", "RequestPath": "/_ping"}));
        assert!(!d.allow);
        let d = p.evaluate(json!({"RequestMethod": "GET", "RequestPath": "/secrets/x"}));
        assert_eq!(d, Decision::deny("no secrets"));
    }

    #[test]
    fn undefined_allow_is_deny() {
        let p = policy("package kaim\nallow if input.x == 1\n");
        assert!(!p.evaluate(json!({})).allow);
        assert!(p.evaluate(json!({"x": 1})).allow);
    }

    #[test]
    fn wrong_package_or_syntax_refused() {
        assert!(
            Policy::from_source(Path::new("a.rego"), "package other\nallow := true\n").is_err()
        );
        assert!(Policy::from_source(Path::new("a.rego"), "package kaim\nallow if {{\n").is_err());
    }

    #[test]
    fn non_boolean_allow_fails_closed() {
        let p = policy("package kaim\nallow := input.v\n");
        let d = p.evaluate(json!({"v": "yes"}));
        assert!(!d.allow);
        assert!(d.reason.starts_with("policy error"), "{}", d.reason);
    }
}
