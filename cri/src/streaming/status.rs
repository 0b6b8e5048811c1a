//! The Kubernetes `Status` object (metav1.Status as JSON) that the error channel carries
//! from protocol v4 on: how the client learns the exit code of an exec.

use serde_json::{json, Value};

/// How a streamed exec or attach ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited with this code.
    Exited(i32),
    /// The session could not run (or broke); the message says why.
    Failed(String),
}

pub fn success() -> Value {
    json!({"metadata": {}, "status": "Success"})
}

/// The Status for `outcome` (v4 and later): Success for exit 0, NonZeroExitCode with the
/// code as an `ExitCode` cause otherwise (what kubectl turns into its own exit code).
pub fn for_outcome(outcome: &Outcome, cmd: &[String]) -> Value {
    match outcome {
        Outcome::Exited(0) => success(),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(msg) => json!({
            "metadata": {},
            "status": "Failure",
            "message": msg,
            "reason": "InternalError",
            "details": {"causes": [{"message": msg}]},
            "code": 500,
        }),
    }
}

/// What the error channel says before v4: nothing on success, a line of text otherwise.
pub fn text_for_outcome(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Exited(0) => None,
        Outcome::Exited(code) => Some(format!(
            "command terminated with non-zero exit code: exit status {code}"
        )),
        Outcome::Failed(msg) => Some(msg.clone()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_become_statuses() {
        assert_eq!(for_outcome(&Outcome::Exited(0), &[])["status"], "Success");
        let s = for_outcome(&Outcome::Exited(3), &["sh".into()]);
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        let f = for_outcome(&Outcome::Failed("boom".into()), &[]);
        assert_eq!(f["reason"], "InternalError");
        assert_eq!(f["message"], "boom");
        assert_eq!(text_for_outcome(&Outcome::Exited(0)), None);
        assert!(text_for_outcome(&Outcome::Exited(2)).unwrap().contains('2'));
    }
}
