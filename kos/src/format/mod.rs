//! Output as docker prints it: `--format` handling (table, json, templates),
//! Go's tabwriter layout, and JSON indentation that keeps the daemon's bytes.

pub mod template;
pub mod units;

use serde_json::Value;

pub use template::{Labels, Template};

/// Go's `text/tabwriter` as docker's formatters configure it (minwidth 10,
/// padding 3, spaces): every tab-terminated cell is padded to its column's width.
pub fn tabwrite(text: &str) -> String {
    tabwrite_min(text, 10)
}

/// The same with another minimum cell width (`top` uses 20).
pub fn tabwrite_min(text: &str, minwidth: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_terminator('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    let mut widths: Vec<usize> = Vec::new();
    for l in &lines {
        // The last segment of a line is not a cell of any column.
        for (i, c) in l.iter().take(l.len().saturating_sub(1)).enumerate() {
            let w = (c.chars().count() + 3).max(minwidth);
            if widths.len() <= i {
                widths.push(w);
            } else if widths[i] < w {
                widths[i] = w;
            }
        }
    }
    let mut out = String::new();
    for l in &lines {
        let n = l.len();
        for (i, c) in l.iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                let pad = widths[i].saturating_sub(c.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// A `--format` value resolved the way docker resolves it.
pub struct Format {
    kind: Kind,
    ctx: Ctx,
}

enum Kind {
    /// `table ...`: a header row, then rows, aligned.
    Table(Template),
    /// Anything else: the template per row, as is.
    Raw(Template),
}

/// The Go type docker executes a command's rows with, named in its template
/// errors (`... can't evaluate field X in type *formatter.imageContext`).
#[derive(Debug, Clone, Copy)]
pub struct Ctx(pub &'static str);

impl Ctx {
    pub const NONE: Ctx = Ctx("");

    /// A field error of the context itself names the context's type.
    pub fn explain(self, e: String) -> String {
        if !self.0.is_empty() && e.contains("can't evaluate field") && !e.contains(" in type ") {
            format!("{e} in type {}", self.0)
        } else {
            e
        }
    }
}

/// docker ps's check of `--format` before it lists anything: the whole
/// string as given, over an empty container, fails as docker's does.
pub fn validate(format: &str, blank: &Value, ctx: Ctx) -> Result<(), String> {
    let f = if format.trim() == "json" {
        "{{json .}}".to_string()
    } else {
        format.replace("\\t", "\t").replace("\\n", "\n")
    };
    let empty = Value::Object(serde_json::Map::new());
    Template::parse(&f)
        .and_then(|t| t.render_with(blank, true, Labels::Of(&empty)))
        .map(|_| ())
        .map_err(|e| format!("failed to execute template: {}", ctx.explain(e)))
}

impl Format {
    /// `format`: the user's flag (None/empty for the default table);
    /// `default_table`: the command's default, `table {{.ID}}\t...`.
    pub fn new(format: Option<&str>, default_table: &str) -> Result<Format, String> {
        let f = match format.map(str::trim) {
            None | Some("") | Some("table") => default_table.to_string(),
            Some("json") => "{{json .}}".to_string(),
            Some(other) => other.to_string(),
        };
        let unescape = |s: &str| s.replace("\\t", "\t").replace("\\n", "\n");
        let kind = if let Some(rest) = f.strip_prefix("table") {
            let body = unescape(rest.trim_matches(' '));
            Kind::Table(Template::parse(&body)?)
        } else {
            Kind::Raw(Template::parse(&unescape(&f))?)
        };
        Ok(Format {
            kind,
            ctx: Ctx::NONE,
        })
    }

    /// Names the Go type of the rows in errors, as docker's formatter does.
    pub fn in_context(mut self, ctx: Ctx) -> Format {
        self.ctx = ctx;
        self
    }

    /// Renders `rows` (JSON objects of a command's fields), with `headers`
    /// naming each field's column title.
    pub fn render(&self, rows: &[Value], headers: &[(&str, &str)]) -> Result<String, String> {
        self.render_labeled(rows, None, headers)
    }

    /// The same for contexts with docker's `Label "key"` method: `labels[i]`
    /// is row i's label object.
    pub fn render_labeled(
        &self,
        rows: &[Value],
        labels: Option<&[Value]>,
        headers: &[(&str, &str)],
    ) -> Result<String, String> {
        let empty = Value::Object(serde_json::Map::new());
        let lab = |i: usize| match labels {
            None => Labels::None,
            Some(l) => Labels::Of(l.get(i).unwrap_or(&empty)),
        };
        let head_labels = if labels.is_some() {
            Labels::Header
        } else {
            Labels::None
        };
        // docker's formatter executes the template per row; with no rows
        // only a table's header is written (an unknown field as <no value>).
        let row_err = |e: String| format!("template parsing error: {}", self.ctx.explain(e));
        match &self.kind {
            Kind::Raw(t) => {
                let mut out = String::new();
                for (i, r) in rows.iter().enumerate() {
                    out.push_str(&t.render_with(r, true, lab(i)).map_err(row_err)?);
                    out.push('\n');
                }
                Ok(out)
            }
            Kind::Table(t) => {
                let mut body = String::new();
                for (i, r) in rows.iter().enumerate() {
                    body.push_str(&t.render_with(r, true, lab(i)).map_err(row_err)?);
                    body.push('\n');
                }
                let mut h = serde_json::Map::new();
                for (k, v) in headers {
                    h.insert((*k).to_string(), Value::String((*v).to_string()));
                }
                // A field of the rows without a known title gets its name upper-cased.
                if let Some(Value::Object(first)) = rows.first() {
                    for k in first.keys() {
                        if !h.contains_key(k) {
                            h.insert(k.clone(), Value::String(k.to_uppercase()));
                        }
                    }
                }
                let mut text = t
                    .render_with(&Value::Object(h), false, head_labels)
                    .map_err(row_err)?;
                text.push('\n');
                text.push_str(&body);
                Ok(tabwrite(&text))
            }
        }
    }
}

/// The key order of a Go struct docker marshals (`--format json` of
/// `version` and `info`): listed keys first in this order, then any others
/// sorted; `nested` orders the objects (or arrays of objects) under a key.
pub struct KeyOrder<'a> {
    pub keys: &'a [&'a str],
    pub nested: &'a [(&'a str, &'a KeyOrder<'a>)],
}

/// Compact JSON of `v` with its object keys in `order` (Go's HTML escaping
/// included, as docker's encoder).
pub fn json_ordered(v: &Value, order: &KeyOrder<'_>) -> String {
    fn esc(s: String) -> String {
        s.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
    }
    fn plain(v: &Value) -> String {
        esc(serde_json::to_string(v).unwrap_or_default())
    }
    let Value::Object(m) = v else {
        return match v {
            Value::Array(a) => format!(
                "[{}]",
                a.iter()
                    .map(|x| json_ordered(x, order))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            other => plain(other),
        };
    };
    let mut keys: Vec<&String> = Vec::new();
    for k in order.keys {
        if let Some((key, _)) = m.get_key_value(*k) {
            keys.push(key);
        }
    }
    let mut rest: Vec<&String> = m
        .keys()
        .filter(|k| !order.keys.contains(&k.as_str()))
        .collect();
    rest.sort();
    keys.extend(rest);
    let parts: Vec<String> = keys
        .iter()
        .map(|k| {
            let val = &m[k.as_str()];
            let body = match order.nested.iter().find(|(n, _)| *n == k.as_str()) {
                Some((_, o)) => json_ordered(val, o),
                None => plain(val),
            };
            format!("{}:{body}", plain(&Value::String((*k).clone())))
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Go's `json.Compact` with HTML escaping, as `encoding/json` marshals a
/// `RawMessage`: the daemon's bytes and key order, whitespace removed, `<`,
/// `>`, `&`, U+2028 and U+2029 inside strings escaped.
pub fn json_compact(src: &[u8]) -> String {
    let text = String::from_utf8_lossy(src);
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut esc = false;
    for c in text.chars() {
        if in_str {
            match c {
                '<' => out.push_str("\\u003c"),
                '>' => out.push_str("\\u003e"),
                '&' => out.push_str("\\u0026"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                _ => out.push(c),
            }
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        out.push(c);
    }
    out
}

/// Go's `json.Indent(dst, src, "", indent)`: the daemon's bytes and key
/// order are kept, only whitespace changes.
pub fn json_indent(src: &[u8], indent: &str) -> String {
    let mut out = Vec::with_capacity(src.len() * 2);
    let mut depth = 0usize;
    let mut in_str = false;
    let mut esc = false;
    let mut need_indent = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        for _ in 0..depth {
            out.extend_from_slice(indent.as_bytes());
        }
    };
    for &c in src {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        if need_indent && c != b']' && c != b'}' {
            need_indent = false;
            depth += 1;
            newline(&mut out, depth);
        }
        match c {
            b'"' => {
                in_str = true;
                out.push(c);
            }
            b'{' | b'[' => {
                out.push(c);
                need_indent = true;
            }
            b',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            b':' => {
                out.push(c);
                out.push(b' ');
            }
            b'}' | b']' => {
                if need_indent {
                    // An empty object or array stays on one line.
                    need_indent = false;
                } else {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// docker's `Ellipsis`: at most `n` characters, the last one "…" when cut.
pub fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Image and container ids as docker shows them: 12 hex digits, no algorithm.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tabwriter_like_go() {
        let t = tabwrite("CONTAINER ID\tNAMES\nabc\tx\n");
        assert_eq!(t, "CONTAINER ID   NAMES\nabc            x\n");
        let t = tabwrite("A\tB\tC\n");
        assert_eq!(t, "A         B         C\n");
    }

    #[test]
    fn formats() {
        let rows = vec![json!({"ID": "abc", "Names": "web"})];
        let h = [("ID", "CONTAINER ID"), ("Names", "NAMES")];
        let f = Format::new(Some("table {{.ID}}\\t{{.Names}}"), "").unwrap();
        assert_eq!(
            f.render(&rows, &h).unwrap(),
            "CONTAINER ID   NAMES\nabc            web\n"
        );
        let f = Format::new(Some("{{.Names}}"), "").unwrap();
        assert_eq!(f.render(&rows, &h).unwrap(), "web\n");
        let f = Format::new(Some("json"), "").unwrap();
        assert_eq!(
            f.render(&rows, &h).unwrap(),
            "{\"ID\":\"abc\",\"Names\":\"web\"}\n"
        );
        let none = vec![json!({"Tag": "<none>"})];
        assert_eq!(
            Format::new(Some("json"), "")
                .unwrap()
                .render(&none, &h)
                .unwrap(),
            "{\"Tag\":\"\\u003cnone\\u003e\"}\n"
        );
        let f = Format::new(None, "table {{.ID}}").unwrap();
        assert_eq!(f.render(&rows, &h).unwrap(), "CONTAINER ID\nabc\n");
        let e = Format::new(Some("x {{.Nope}}"), "")
            .unwrap()
            .in_context(Ctx("*formatter.imageContext"))
            .render(&rows, &h)
            .unwrap_err();
        assert_eq!(e, "template parsing error: template: :1:4: executing \"\" at <.Nope>: can't evaluate field Nope in type *formatter.imageContext");
        // No rows: nothing runs the template; a table shows its header only.
        assert_eq!(
            Format::new(Some("{{.Nope}}"), "")
                .unwrap()
                .render(&[], &h)
                .unwrap(),
            ""
        );
        assert_eq!(
            Format::new(Some("table x {{.Nope}}"), "")
                .unwrap()
                .render(&[], &h)
                .unwrap(),
            "x <no value>\n"
        );
        let blank = json!({"ID": "", "Names": ""});
        assert!(validate("table {{.ID}}", &blank, Ctx::NONE).is_ok());
        assert_eq!(
            validate("table x {{.Nope}}", &blank, Ctx("*formatter.ContainerContext")).unwrap_err(),
            "failed to execute template: template: :1:10: executing \"\" at <.Nope>: can't evaluate field Nope in type *formatter.ContainerContext"
        );
        assert_eq!(
            Format::new(Some("{{.ID}}"), "")
                .unwrap()
                .render(&[], &h)
                .unwrap(),
            ""
        );
    }

    #[test]
    fn ordered_like_go_structs() {
        const INNER: KeyOrder = KeyOrder {
            keys: &["Name", "Version"],
            nested: &[],
        };
        const OUTER: KeyOrder = KeyOrder {
            keys: &["Version", "Components", "Api"],
            nested: &[("Components", &INNER)],
        };
        let v = json!({"Api": "1.47", "Zed": 1, "Extra": "<x>", "Version": "1",
                       "Components": [{"Version": "2", "Name": "E", "Details": {"b": 1, "a": 2}}]});
        assert_eq!(
            json_ordered(&v, &OUTER),
            r#"{"Version":"1","Components":[{"Name":"E","Version":"2","Details":{"a":2,"b":1}}],"Api":"1.47","Extra":"\u003cx\u003e","Zed":1}"#
        );
    }

    #[test]
    fn compact_like_go() {
        assert_eq!(
            json_compact(b"{\n  \"A\": \"x <y> & z\",\n  \"B\": [1, 2],\n  \"C\": \"q\\\" s\"\n}"),
            r#"{"A":"x \u003cy\u003e \u0026 z","B":[1,2],"C":"q\" s"}"#
        );
    }

    #[test]
    fn indent_like_go() {
        let s = br#"[{"A":1,"B":{},"C":[],"D":["x","y"],"E":"a,b:{c}"}]"#;
        assert_eq!(
            json_indent(s, "    "),
            "[\n    {\n        \"A\": 1,\n        \"B\": {},\n        \"C\": [],\n        \"D\": [\n            \"x\",\n            \"y\"\n        ],\n        \"E\": \"a,b:{c}\"\n    }\n]"
        );
    }

    #[test]
    fn ellipsis_and_ids() {
        assert_eq!(
            ellipsis("\"sh -c 'while true; do'\"", 20),
            "\"sh -c 'while true;…"
        );
        assert_eq!(ellipsis("\"true\"", 20), "\"true\"");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
