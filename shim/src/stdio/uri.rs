//! Where a process's stdout/stderr go, as the CreateTaskRequest/ExecProcessRequest names it.

use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Nothing: the process gets /dev/null.
    Null,
    /// A fifo containerd (or another client) made and reads.
    Fifo(PathBuf),
    /// `file:///ABS`: raw bytes appended to a file.
    File(PathBuf),
    /// `binary:///ABS?k=v`: a logging program fed through descriptors 3 and 4.
    Binary { path: PathBuf, args: Vec<String> },
    /// `json-file:///ABS?max-size=B&max-file=N`: Docker's json-file format.
    JsonFile {
        path: PathBuf,
        max_size: u64,
        max_file: u32,
    },
    /// `cri-log:///ABS`: the CRI log format.
    CriLog(PathBuf),
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        if s.is_empty() {
            return Ok(Target::Null);
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            if s.starts_with('/') {
                return Ok(Target::Fifo(PathBuf::from(s)));
            }
            return Err(format!(
                "stdio {s:?}: neither an absolute fifo path nor a URI"
            ));
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, q),
            None => (rest, ""),
        };
        let path = percent_decode(path)?;
        if !path.starts_with('/') {
            return Err(format!("stdio {s:?}: the path must be absolute"));
        }
        let query = parse_query(query)?;
        let path = PathBuf::from(path);
        match scheme {
            "fifo" => Ok(Target::Fifo(path)),
            "file" => Ok(Target::File(path)),
            "binary" => {
                // containerd passes each query key as an argument, followed by its value if any.
                let mut args = Vec::new();
                for (k, v) in query {
                    args.push(k);
                    if !v.is_empty() {
                        args.push(v);
                    }
                }
                Ok(Target::Binary { path, args })
            }
            "json-file" => {
                let mut max_size = 0;
                let mut max_file = 1;
                for (k, v) in query {
                    match k.as_str() {
                        "max-size" => {
                            max_size = parse_size(&v).ok_or_else(|| {
                                format!("stdio {s:?}: max-size {v:?} is not a size")
                            })?
                        }
                        "max-file" => {
                            max_file =
                                v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                                    format!("stdio {s:?}: max-file {v:?} is not a count >= 1")
                                })?
                        }
                        _ => return Err(format!("stdio {s:?}: unknown json-file option {k:?}")),
                    }
                }
                Ok(Target::JsonFile {
                    path,
                    max_size,
                    max_file,
                })
            }
            "cri-log" => Ok(Target::CriLog(path)),
            other => Err(format!("stdio {s:?}: unsupported scheme {other:?}")),
        }
    }
}

/// Bytes with an optional k/m/g suffix (Docker's max-size accepts `10m`).
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1u64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn parse_query(q: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.insert(percent_decode(k)?, percent_decode(v)?);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} decodes to invalid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(Target::parse("").expect("ok"), Target::Null);
        assert_eq!(
            Target::parse("/run/x/stdout").expect("ok"),
            Target::Fifo("/run/x/stdout".into())
        );
        assert_eq!(
            Target::parse("file:///var/log/a%20b").expect("ok"),
            Target::File("/var/log/a b".into())
        );
        assert_eq!(
            Target::parse("json-file:///l/c.log?max-size=10k&max-file=3").expect("ok"),
            Target::JsonFile {
                path: "/l/c.log".into(),
                max_size: 10240,
                max_file: 3
            }
        );
        assert_eq!(
            Target::parse("cri-log:///l/0.log").expect("ok"),
            Target::CriLog("/l/0.log".into())
        );
        assert_eq!(
            Target::parse("binary:///bin/logger?id=5&verbose").expect("ok"),
            Target::Binary {
                path: "/bin/logger".into(),
                args: vec!["id".into(), "5".into(), "verbose".into()]
            }
        );
    }

    #[test]
    fn refuses_bad_input() {
        assert!(Target::parse("relative/path").is_err());
        assert!(Target::parse("file://relative").is_err());
        assert!(Target::parse("ftp:///x").is_err());
        assert!(Target::parse("json-file:///x?max-file=0").is_err());
        assert!(Target::parse("json-file:///x?max-size=lots").is_err());
        assert!(Target::parse("json-file:///x?colour=red").is_err());
        assert!(Target::parse("file:///x%zz").is_err());
    }
}
