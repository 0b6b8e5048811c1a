//! The systemd unit-file syntax (`systemd.syntax(7)`): `[Section]` headers, `Key=Value`
//! assignments, `#`/`;` comments, a trailing backslash continues a line. The lexer keeps each
//! assignment's file and line so later errors can name them.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Unit files and drop-ins larger than this are refused (systemd's own limit is 4 MiB for
/// the whole unit; ours are a few hundred bytes).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// One `Key=Value` with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub section: String,
    pub key: String,
    pub value: String,
    pub file: PathBuf,
    pub line: usize,
}

/// Reads a file with the size bound.
pub fn read_bounded(path: &Path) -> Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| Error::io("open unit file", path, e))?;
    let mut buf = String::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut buf)
        .map_err(|e| Error::io("read unit file", path, e))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Parse {
            file: path.to_path_buf(),
            line: 0,
            key: None,
            msg: format!("file larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    Ok(buf)
}

/// Splits `text` (the content of `file`) into assignments, in file order.
pub fn lex(file: &Path, text: &str) -> Result<Vec<Assignment>> {
    let err = |line: usize, msg: String| Error::Parse {
        file: file.to_path_buf(),
        line,
        key: None,
        msg,
    };
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    let mut lines = text.lines().enumerate();
    while let Some((idx, raw)) = lines.next() {
        let lineno = idx + 1;
        let mut line = raw.trim().to_string();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        // Continuations: the backslash-newline becomes a space; comment lines inside a
        // continued value are skipped, as systemd does.
        while line.ends_with('\\') {
            line.pop();
            line.push(' ');
            let next = lines
                .by_ref()
                .map(|(_, l)| l.trim())
                .find(|n| !(n.starts_with('#') || n.starts_with(';')));
            match next {
                Some(n) => line.push_str(n),
                None => break,
            }
        }
        let line = line.trim();
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| err(lineno, format!("bad section header {line:?}")))?;
            if name.is_empty() || name.contains(['[', ']']) {
                return Err(err(lineno, format!("bad section header {line:?}")));
            }
            section = Some(name.to_string());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| err(lineno, format!("expected Key=Value, found {line:?}")))?;
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(lineno, format!("bad key {key:?}")));
        }
        let Some(sec) = &section else {
            return Err(Error::Parse {
                file: file.to_path_buf(),
                line: lineno,
                key: Some(key.to_string()),
                msg: "assignment outside of any section".into(),
            });
        };
        out.push(Assignment {
            section: sec.clone(),
            key: key.to_string(),
            value: value.trim().to_string(),
            file: file.to_path_buf(),
            line: lineno,
        });
    }
    Ok(out)
}

/// Splits a value into words as systemd does for command lines and lists: whitespace
/// separates, single or double quotes group, backslash escapes the next character.
pub fn split_words(value: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                let n = chars
                    .next()
                    .ok_or_else(|| format!("trailing backslash in {value:?}"))?;
                cur.push(match n {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unterminated quote in {value:?}"));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_comments_continuations() {
        let text = "# head\n[Unit]\nDescription = A \\\n  long one\n; c\n\n[Service]\nRestart=always\nExecStartPre=/bin/a \\\n# skipped\n  b\n";
        let a = lex(Path::new("/x.container"), text).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(
            (a[0].section.as_str(), a[0].key.as_str()),
            ("Unit", "Description")
        );
        assert_eq!(a[0].value, "A  long one");
        assert_eq!(a[0].line, 3);
        assert_eq!(a[1].key, "Restart");
        assert_eq!(a[1].line, 8);
        assert_eq!(a[2].value, "/bin/a  b");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = lex(Path::new("/u/a.container"), "[Unit]\nDescription\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/u/a.container:2: expected Key=Value, found \"Description\""
        );
        let e = lex(Path::new("/u/a.container"), "Foo=1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/u/a.container:1: Foo: assignment outside of any section"
        );
        assert!(lex(Path::new("/a"), "[Unit\n").is_err());
        assert!(lex(Path::new("/a"), "[Unit]\nba d=1\n").is_err());
    }

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split_words(r#"/bin/sh -c "echo 'hi there'" x\ y"#).unwrap(),
            vec!["/bin/sh", "-c", "echo 'hi there'", "x y"]
        );
        assert_eq!(
            split_words(r#"A=1 "B=2 3" ''"#).unwrap(),
            vec!["A=1", "B=2 3", ""]
        );
        assert!(split_words("\"open").is_err());
        assert!(split_words("").unwrap().is_empty());
    }
}
