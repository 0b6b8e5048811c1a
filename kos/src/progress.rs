//! Docker's JSON-lines progress streams (pull, push, build, load): one bar
//! per layer on a terminal (indicatif), docker's plain lines otherwise.

use std::collections::HashMap;
use std::io::{Read, Write};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::client;

/// What a stream left besides its text: `aux` payloads (image ids, digests).
#[derive(Default, Debug)]
pub struct Outcome {
    pub aux: Vec<Value>,
}

fn detail(m: &Value) -> Option<(u64, u64)> {
    let d = m.get("progressDetail")?;
    let cur = d.get("current").and_then(Value::as_u64).unwrap_or(0);
    let tot = d.get("total").and_then(Value::as_u64).unwrap_or(0);
    (cur > 0 || tot > 0).then_some((cur, tot))
}

/// The stream's error and its exit code (`errorDetail.code`, else 1).
fn error_of(m: &Value) -> Option<(String, i32)> {
    let code = m
        .get("errorDetail")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64)
        .filter(|c| *c > 0)
        .unwrap_or(1) as i32;
    m.get("errorDetail")
        .and_then(|e| e.get("message"))
        .or_else(|| m.get("error"))
        .and_then(Value::as_str)
        .map(|s| (s.to_string(), code))
}

fn s<'a>(m: &'a Value, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

/// docker's non-terminal rendering of one message (progress updates are dropped).
pub fn plain_line(m: &Value) -> Option<String> {
    if detail(m).is_some() && s(m, "stream").is_empty() {
        return None;
    }
    let mut out = String::new();
    if !s(m, "id").is_empty() {
        out.push_str(&format!("{}: ", s(m, "id")));
    }
    if !s(m, "from").is_empty() {
        out.push_str(&format!("(from {}) ", s(m, "from")));
    }
    let stream = s(m, "stream");
    if !stream.is_empty() {
        out.push_str(stream);
        return Some(out);
    }
    if m.get("status").is_none() && m.get("id").is_none() {
        return None;
    }
    out.push_str(s(m, "status"));
    out.push('\n');
    Some(out)
}

/// Renders a stream to `out`; an error message in it becomes the error.
pub fn display(r: impl Read, out: &mut dyn Write, terminal: bool) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let mp = terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let bytes_style =
        ProgressStyle::with_template("{prefix}: {msg:<12} [{bar:50}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let text_style = ProgressStyle::with_template("{prefix}: {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut failure = None;
    client::json_lines(r, |m| {
        if let Some(e) = error_of(&m) {
            failure = Some(e);
            return Ok(());
        }
        if let Some(a) = m.get("aux") {
            outcome.aux.push(a.clone());
            return Ok(());
        }
        match &mp {
            None => {
                if let Some(l) = plain_line(&m) {
                    out.write_all(l.as_bytes())?;
                    out.flush()?;
                }
            }
            Some(mp) => {
                let id = s(&m, "id").to_string();
                let stream = s(&m, "stream");
                if !stream.is_empty() {
                    mp.suspend(|| {
                        let _ = out.write_all(stream.as_bytes());
                        let _ = out.flush();
                    });
                } else if id.is_empty() || m.get("progressDetail").is_none() {
                    let line = plain_line(&m).unwrap_or_default();
                    mp.suspend(|| {
                        let _ = out.write_all(line.as_bytes());
                        let _ = out.flush();
                    });
                } else {
                    let bar = bars.entry(id.clone()).or_insert_with(|| {
                        let b = mp.add(ProgressBar::new(0));
                        b.set_style(text_style.clone());
                        b.set_prefix(id.clone());
                        b
                    });
                    match detail(&m) {
                        Some((cur, tot)) => {
                            bar.set_style(bytes_style.clone());
                            bar.set_length(tot.max(cur));
                            bar.set_position(cur);
                        }
                        None => bar.set_style(text_style.clone()),
                    }
                    bar.set_message(s(&m, "status").to_string());
                }
            }
        }
        Ok(())
    })?;
    for b in bars.values() {
        b.finish();
    }
    if let Some((e, code)) = failure {
        return Err(crate::status(code, e));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_lines_like_docker() {
        assert_eq!(
            plain_line(&json!({"status": "Pulling fs layer", "progressDetail": {}, "id": "abc"})),
            Some("abc: Pulling fs layer\n".into())
        );
        assert_eq!(
            plain_line(
                &json!({"status": "Downloading", "progressDetail": {"current": 5, "total": 10}, "id": "abc"})
            ),
            None
        );
        assert_eq!(
            plain_line(&json!({"status": "Digest: sha256:x"})),
            Some("Digest: sha256:x\n".into())
        );
        assert_eq!(
            plain_line(&json!({"stream": "Step 1/2 : FROM x\n"})),
            Some("Step 1/2 : FROM x\n".into())
        );
    }

    #[test]
    fn errors_end_the_stream() {
        let data = b"{\"status\":\"Pulling from x\",\"id\":\"1\"}\n{\"errorDetail\":{\"message\":\"boom\"},\"error\":\"boom\"}\n";
        let mut out = Vec::new();
        let e = display(&data[..], &mut out, false)
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("boom"));
        assert_eq!(String::from_utf8_lossy(&out), "1: Pulling from x\n");
    }
}
