//! runc-style logging: `--log` file (default stderr), `--log-format text|json`, `--debug`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum, Debug)]
pub enum Format {
    Text,
    Json,
}

struct Logger {
    file: Option<PathBuf>,
    format: Format,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

pub fn init(file: Option<PathBuf>, format: Format, debug: bool) {
    let _ = LOGGER.set(Logger {
        file,
        format,
        debug,
    });
}

fn line(format: Format, level: &str, msg: &str, err: Option<&kosrun::Error>) -> String {
    let time = kosrun::time::now_rfc3339();
    match format {
        Format::Json => {
            let mut v = serde_json::json!({"level": level, "msg": msg, "time": time});
            // A supervisor reading the JSON log learns which failure it was, not only its
            // text: the same kind, stage and spec field the library returns.
            if let Some(e) = err {
                v["kind"] = serde_json::json!(e.kind());
                if let Some(stage) = e.stage() {
                    v["stage"] = serde_json::json!(stage);
                }
                if let Some(field) = e.field() {
                    v["field"] = serde_json::json!(field);
                }
                if let Some(errno) = e.errno() {
                    v["errno"] = serde_json::json!(errno);
                }
            }
            format!("{v}\n")
        }
        Format::Text => format!("time={time:?} level={level} msg={msg:?}\n"),
    }
}

fn write(level: &str, msg: &str, err: Option<&kosrun::Error>) {
    let Some(l) = LOGGER.get() else {
        eprintln!("kosrun: {msg}");
        return;
    };
    let text = line(l.format, level, msg, err);
    match &l.file {
        Some(p) => {
            if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(p) {
                let _ = f.write_all(text.as_bytes());
            }
        }
        None => {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }
}

pub fn error(msg: &str, err: Option<&kosrun::Error>) {
    write("error", msg, err);
    // The log may be a file a supervisor reads; a person at a terminal reads stderr.
    if LOGGER.get().is_some_and(|l| l.file.is_some()) {
        eprintln!("kosrun: {msg}");
    }
}

pub fn warn(msg: &str) {
    write("warning", msg, None);
}

pub fn debug(msg: &str) {
    if LOGGER.get().is_some_and(|l| l.debug) {
        write("debug", msg, None);
    }
}
