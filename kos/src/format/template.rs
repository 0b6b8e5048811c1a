//! The Go-template subset `--format` takes, over JSON values: `{{.A.B}}`,
//! pipelines (`{{.Names | upper}}`), docker's functions (`json`, `join`,
//! `index`, `upper`, `lower`, `title`, `split`, `truncate`, `len`, `print`,
//! `println`, `printf`, `pad`), and `if`/`else`/`range`/`with`/`end`.

use serde_json::Value;

/// Where a node starts in the template: line (from 1) and byte column
/// (from 0), as Go's errors name it (`template: :1:2: ...`).
type Pos = (usize, usize);

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Field(Vec<String>, Pos),
    Str(String),
    Num(f64),
    Func(String),
    Bool(bool),
}

type Pipe = Vec<Vec<Arg>>;

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

const FUNCS: &[&str] = &[
    "json", "join", "index", "upper", "lower", "title", "split", "truncate", "len", "print",
    "println", "printf", "pad",
];

/// The words of an action and the byte offset where each starts.
fn lex_action(src: &str) -> Result<Vec<(String, usize)>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    let mut chars = src.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' | '`' => {
                if !cur.is_empty() {
                    out.push((std::mem::take(&mut cur), start));
                }
                let quote = c;
                let mut s = String::from("\"");
                let mut closed = false;
                while let Some((_, d)) = chars.next() {
                    if d == quote {
                        closed = true;
                        break;
                    }
                    if d == '\\' && quote == '"' {
                        match chars.next().map(|(_, x)| x) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('\\') => s.push('\\'),
                            Some('"') => s.push('"'),
                            Some(o) => {
                                s.push('\\');
                                s.push(o)
                            }
                            None => {}
                        }
                    } else {
                        s.push(d);
                    }
                }
                if !closed {
                    return Err("unterminated quoted string".into());
                }
                out.push((s, i));
            }
            '|' => {
                if !cur.is_empty() {
                    out.push((std::mem::take(&mut cur), start));
                }
                out.push(("|".into(), i));
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push((std::mem::take(&mut cur), start));
                }
            }
            c => {
                if cur.is_empty() {
                    start = i;
                }
                cur.push(c)
            }
        }
    }
    if !cur.is_empty() {
        out.push((cur, start));
    }
    Ok(out)
}

fn parse_pipe(words: &[(String, Pos)]) -> Result<Pipe, String> {
    let mut pipe = Vec::new();
    let mut cmd = Vec::new();
    for (w, pos) in words {
        let pos = *pos;
        if w == "|" {
            if cmd.is_empty() {
                return Err("missing command in pipeline".into());
            }
            pipe.push(std::mem::take(&mut cmd));
            continue;
        }
        let a = if let Some(s) = w.strip_prefix('"') {
            Arg::Str(s.to_string())
        } else if w == "." {
            Arg::Field(Vec::new(), pos)
        } else if let Some(p) = w.strip_prefix('.') {
            // Go places a field chain at its last link (`.A.B` at `.B`).
            let last = w.rfind('.').unwrap_or(0);
            Arg::Field(
                p.split('.').map(str::to_string).collect(),
                (pos.0, pos.1 + last),
            )
        } else if w == "true" || w == "false" {
            Arg::Bool(w == "true")
        } else if let Ok(n) = w.parse::<f64>() {
            Arg::Num(n)
        } else if FUNCS.contains(&w.as_str()) {
            Arg::Func(w.clone())
        } else {
            return Err(format!("function {w:?} not defined"));
        };
        cmd.push(a);
    }
    if cmd.is_empty() {
        return Err("missing value for command".into());
    }
    pipe.push(cmd);
    Ok(pipe)
}

enum Tok {
    Text(String),
    Act(Vec<(String, Pos)>),
}

/// Line (from 1) and column (from 0) of byte `at` of `src`.
fn line_col(src: &str, at: usize) -> Pos {
    let before = &src[..at.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|n| at - n - 1).unwrap_or(at);
    (line, col)
}

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(i) = rest.find("{{") {
        let mut text = &rest[..i];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[i + 2..];
        let (after, trim_prev) = match after.strip_prefix("- ") {
            Some(a) => (a, true),
            None => (after, false),
        };
        if trim_prev {
            text = text.trim_end();
        }
        if !text.is_empty() {
            toks.push(Tok::Text(text.to_string()));
        }
        let end = after.find("}}").ok_or("unclosed action")?;
        let mut inner = &after[..end];
        trim_next = false;
        if let Some(x) = inner.strip_suffix(" -") {
            inner = x;
            trim_next = true;
        }
        let base = inner.as_ptr() as usize - src.as_ptr() as usize;
        let words = lex_action(inner)?
            .into_iter()
            .map(|(w, off)| (w, line_col(src, base + off)))
            .collect();
        toks.push(Tok::Act(words));
        rest = &after[end + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        toks.push(Tok::Text(text.to_string()));
    }
    Ok(toks)
}

fn build(
    toks: &mut std::iter::Peekable<std::vec::IntoIter<Tok>>,
) -> Result<(Vec<Node>, Option<String>), String> {
    let mut nodes = Vec::new();
    while let Some(t) = toks.next() {
        match t {
            Tok::Text(s) => nodes.push(Node::Text(s)),
            Tok::Act(words) => {
                let first = words.first().map(|(w, _)| w.as_str()).unwrap_or("");
                match first {
                    "" => return Err("missing value for command".into()),
                    "end" | "else" => return Ok((nodes, Some(first.to_string()))),
                    "if" | "range" | "with" => {
                        let pipe = parse_pipe(&words[1..])?;
                        let (body, stop) = build(toks)?;
                        let els = match stop.as_deref() {
                            Some("else") => {
                                let (e, stop2) = build(toks)?;
                                if stop2.as_deref() != Some("end") {
                                    return Err(format!("unexpected EOF in {first}"));
                                }
                                e
                            }
                            Some("end") => Vec::new(),
                            _ => return Err(format!("unexpected EOF in {first}")),
                        };
                        nodes.push(match first {
                            "if" => Node::If(pipe, body, els),
                            "range" => Node::Range(pipe, body, els),
                            _ => Node::With(pipe, body, els),
                        });
                    }
                    _ => nodes.push(Node::Action(parse_pipe(&words)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let toks = tokenize(src).map_err(|e| format!("template parsing error: {e}"))?;
        let mut it = toks.into_iter().peekable();
        let (nodes, stop) = build(&mut it).map_err(|e| format!("template parsing error: {e}"))?;
        if let Some(s) = stop {
            return Err(format!("template parsing error: unexpected {{{{{s}}}}}"));
        }
        Ok(Template { nodes })
    }

    /// Renders with `root` as dot. `strict`: a missing field of the root is an
    /// error (docker's typed contexts for ps, images, ...), not "<no value>".
    pub fn render(&self, root: &Value, strict: bool) -> Result<String, String> {
        self.render_with(root, strict, Labels::None)
    }

    /// Renders with docker's `Label "key"` method on dot (containers,
    /// volumes, networks): `labels` answers it.
    pub fn render_with(
        &self,
        root: &Value,
        strict: bool,
        labels: Labels<'_>,
    ) -> Result<String, String> {
        let mut out = String::new();
        let cx = Cx {
            root,
            strict,
            labels,
        };
        cx.nodes(&self.nodes, root, &mut out)?;
        Ok(out)
    }
}

/// What `{{.Label "key"}}` reads: nothing (the context has no such method),
/// an object's labels, or the header row of a table (the key itself).
#[derive(Debug, Clone, Copy)]
pub enum Labels<'a> {
    None,
    Of(&'a Value),
    Header,
}

struct Cx<'a> {
    root: &'a Value,
    strict: bool,
    labels: Labels<'a>,
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Go's `%v` of a decoded JSON value.
pub fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 1e21 {
                    format!("{f:.0}")
                } else {
                    f.to_string()
                }
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_print_inner).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(o) => format!(
            "map[{}]",
            o.iter()
                .map(|(k, v)| format!("{k}:{}", go_print_inner(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn go_print_inner(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        other => go_print(other),
    }
}

fn as_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => go_print(other),
    }
}

impl Cx<'_> {
    fn nodes(&self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), String> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    out.push_str(&go_print(&v));
                }
                Node::If(p, a, b) => {
                    if truthy(&self.pipe(p, dot)?) {
                        self.nodes(a, dot, out)?;
                    } else {
                        self.nodes(b, dot, out)?;
                    }
                }
                Node::With(p, a, b) => {
                    let v = self.pipe(p, dot)?;
                    if truthy(&v) {
                        self.nodes(a, &v, out)?;
                    } else {
                        self.nodes(b, dot, out)?;
                    }
                }
                Node::Range(p, a, b) => {
                    let v = self.pipe(p, dot)?;
                    let items: Vec<Value> = match v {
                        Value::Array(a) => a,
                        Value::Object(o) => o.into_iter().map(|(_, v)| v).collect(),
                        Value::Null => Vec::new(),
                        other => {
                            return Err(format!("range can't iterate over {}", go_print(&other)))
                        }
                    };
                    if items.is_empty() {
                        self.nodes(b, dot, out)?;
                    }
                    for it in &items {
                        self.nodes(a, it, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn field(&self, dot: &Value, path: &[String], pos: Pos) -> Result<Value, String> {
        let (line, col) = pos;
        let mut cur = dot.clone();
        for (i, k) in path.iter().enumerate() {
            cur = match &cur {
                Value::Object(o) => match o.get(k).or_else(|| {
                    // Go templates name struct fields (APIVersion) where the
                    // JSON has its tags (ApiVersion): a unique case-insensitive match.
                    let mut m = o.iter().filter(|(x, _)| x.eq_ignore_ascii_case(k));
                    match (m.next(), m.next()) {
                        (Some((_, v)), None) => Some(v),
                        _ => None,
                    }
                }) {
                    Some(v) => v.clone(),
                    None if self.strict && i == 0 && std::ptr::eq(dot, self.root) => {
                        return Err(format!(
                            "template: :{line}:{col}: executing \"\" at <.{}>: can't evaluate field {k}",
                            path.join(".")
                        ))
                    }
                    None => Value::Null,
                },
                Value::Null => Value::Null,
                _ => {
                    return Err(format!(
                    "template: :{line}:{col}: executing \"\" at <.{}>: can't evaluate field {k} in type {}",
                    path.join("."),
                    type_name(&cur)
                ))
                }
            };
        }
        Ok(cur)
    }

    fn arg(&self, a: &Arg, dot: &Value) -> Result<Value, String> {
        Ok(match a {
            Arg::Field(p, pos) => self.field(dot, p, *pos)?,
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Num(n) => serde_json::json!(n),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Func(f) => call(f, &[])?,
        })
    }

    fn pipe(&self, p: &Pipe, dot: &Value) -> Result<Value, String> {
        let mut prev: Option<Value> = None;
        for cmd in p {
            let v = match &cmd[0] {
                Arg::Func(f) => {
                    let mut args = Vec::new();
                    for a in &cmd[1..] {
                        args.push(self.arg(a, dot)?);
                    }
                    if let Some(pv) = prev.take() {
                        args.push(pv);
                    }
                    let v = call(f, &args)?;
                    // docker's list contexts marshal themselves with Go's
                    // default HTML escaping.
                    if f == "json" && self.strict {
                        html_escape(v)
                    } else {
                        v
                    }
                }
                Arg::Field(f, (line, col))
                    if f.len() == 1
                        && f[0] == "Label"
                        && !matches!(self.labels, Labels::None)
                        && std::ptr::eq(dot, self.root) =>
                {
                    let mut args = Vec::new();
                    for a in &cmd[1..] {
                        args.push(self.arg(a, dot)?);
                    }
                    if let Some(pv) = prev.take() {
                        args.push(pv);
                    }
                    if args.len() != 1 {
                        return Err(format!(
                            "template: :{line}:{col}: executing \"\" at <.Label>: wrong number of args for Label: want 1 got {}",
                            args.len()
                        ));
                    }
                    let key = as_str(&args[0]);
                    match self.labels {
                        Labels::Header => Value::String(key),
                        Labels::Of(m) => Value::String(m.get(&key).map(as_str).unwrap_or_default()),
                        Labels::None => Value::Null,
                    }
                }
                other => {
                    // A missing field is reported first, as Go evaluates it first.
                    let v = self.arg(other, dot)?;
                    if cmd.len() > 1 || prev.is_some() {
                        let name = match other {
                            Arg::Field(f, _) => format!(".{}", f.join(".")),
                            o => format!("{o:?}"),
                        };
                        return Err(format!("can't give argument to non-function {name}"));
                    }
                    v
                }
            };
            prev = Some(v);
        }
        Ok(prev.unwrap_or(Value::Null))
    }
}

fn html_escape(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(
            s.replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026"),
        ),
        o => o,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "float64",
        Value::Bool(_) => "bool",
        Value::Array(_) => "[]interface {}",
        _ => "interface {}",
    }
}

fn need(f: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {f}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn call(f: &str, args: &[Value]) -> Result<Value, String> {
    let s = |v: &Value| as_str(v);
    Ok(match f {
        "json" => {
            need(f, args, 1)?;
            Value::String(serde_json::to_string(&args[0]).map_err(|e| e.to_string())?)
        }
        "join" => {
            need(f, args, 2)?;
            let items: Vec<String> = match &args[0] {
                Value::Array(a) => a.iter().map(as_str).collect(),
                Value::Null => Vec::new(),
                other => vec![as_str(other)],
            };
            Value::String(items.join(&s(&args[1])))
        }
        "index" => {
            need(f, args, 2)?;
            match (&args[0], &args[1]) {
                (Value::Object(o), k) => o.get(&s(k)).cloned().unwrap_or(Value::Null),
                (Value::Array(a), Value::Number(n)) => {
                    let i = n.as_f64().unwrap_or(-1.0);
                    if i < 0.0 || i as usize >= a.len() {
                        return Err(format!("index out of range: {i}"));
                    }
                    a[i as usize].clone()
                }
                (Value::Null, _) => Value::Null,
                (o, _) => return Err(format!("can't index item of type {}", type_name(o))),
            }
        }
        "upper" => {
            need(f, args, 1)?;
            Value::String(s(&args[0]).to_uppercase())
        }
        "lower" => {
            need(f, args, 1)?;
            Value::String(s(&args[0]).to_lowercase())
        }
        "title" => {
            need(f, args, 1)?;
            let t: String = s(&args[0])
                .split(' ')
                .map(|w| {
                    let mut c = w.chars();
                    match c.next() {
                        Some(h) => h.to_uppercase().chain(c).collect::<String>(),
                        None => String::new(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            Value::String(t)
        }
        "split" => {
            need(f, args, 2)?;
            Value::Array(
                s(&args[0])
                    .split(s(&args[1]).as_str())
                    .map(|x| Value::String(x.into()))
                    .collect(),
            )
        }
        "truncate" => {
            need(f, args, 2)?;
            let n = args[1].as_f64().unwrap_or(0.0).max(0.0) as usize;
            Value::String(s(&args[0]).chars().take(n).collect())
        }
        "len" => {
            need(f, args, 1)?;
            let n = match &args[0] {
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                Value::String(x) => x.len(),
                Value::Null => 0,
                o => return Err(format!("len of type {}", type_name(o))),
            };
            serde_json::json!(n)
        }
        "pad" => {
            need(f, args, 3)?;
            let l = args[1].as_f64().unwrap_or(0.0).max(0.0) as usize;
            let r = args[2].as_f64().unwrap_or(0.0).max(0.0) as usize;
            Value::String(format!("{}{}{}", " ".repeat(l), s(&args[0]), " ".repeat(r)))
        }
        "print" => Value::String(args.iter().map(as_str).collect::<Vec<_>>().join("")),
        "println" => Value::String(args.iter().map(as_str).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => {
            let Some((fmt, rest)) = args.split_first() else {
                return Err("printf needs a format".into());
            };
            Value::String(printf(&s(fmt), rest))
        }
        other => return Err(format!("function {other:?} not defined")),
    })
}

/// `%s`, `%d`, `%v`, `%q` and `%%`; enough for format strings users write.
fn printf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('q') => out.push_str(
                &serde_json::to_string(&as_str(it.next().unwrap_or(&Value::Null)))
                    .unwrap_or_default(),
            ),
            Some(_) => out.push_str(&as_str(it.next().unwrap_or(&Value::Null))),
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v, false).unwrap()
    }

    #[test]
    fn fields_functions_and_blocks() {
        let v = json!({"ID": "abc", "State": {"Running": true, "Pid": 42}, "Names": ["a", "b"],
                       "Labels": {"k": "v", "a": "b"}, "Nets": {"n1": {"IP": "10.0.0.2"}, "n2": {"IP": "10.0.0.3"}}});
        assert_eq!(r("{{.ID}}", &v), "abc");
        assert_eq!(r("{{.State.Pid}} {{.State.Running}}", &v), "42 true");
        assert_eq!(r("{{json .State}}", &v), r#"{"Pid":42,"Running":true}"#);
        assert_eq!(r("{{join .Names \",\"}}", &v), "a,b");
        assert_eq!(r("{{index .Labels \"k\"}}", &v), "v");
        assert_eq!(r("{{.ID | upper}}", &v), "ABC");
        assert_eq!(
            r("{{range .Nets}}{{.IP}} {{end}}", &v),
            "10.0.0.2 10.0.0.3 "
        );
        assert_eq!(r("{{if .State.Running}}up{{else}}down{{end}}", &v), "up");
        assert_eq!(r("{{with .State}}{{.Pid}}{{end}}", &v), "42");
        assert_eq!(r("{{.Missing}}", &v), "<no value>");
        assert_eq!(r("{{.id}} {{.state.pid}}", &v), "abc 42");
        assert_eq!(r("{{.Labels}}", &v), "map[a:b k:v]");
        assert_eq!(r("{{printf \"%s-%d\" .ID .State.Pid}}", &v), "abc-42");
        assert_eq!(r("{{len .Names}}", &v), "2");
        assert_eq!(r("x {{- .ID -}} y", &v), "xabcy");
    }

    #[test]
    fn label_method() {
        let t = Template::parse("{{.Names}} {{.Label \"k\"}}|{{\"a\" | .Label}}|{{.Label \"x\"}}|")
            .unwrap();
        let row = json!({"Names": "c1", "Labels": "a=b,k=v"});
        let labels = json!({"k": "v", "a": "b"});
        assert_eq!(
            t.render_with(&row, true, Labels::Of(&labels)).unwrap(),
            "c1 v|b||"
        );
        let head = json!({"Names": "NAMES"});
        assert_eq!(
            t.render_with(&head, false, Labels::Header).unwrap(),
            "NAMES k|a|x|"
        );
        // No labels map: a field like any other, missing in docker's image context.
        assert!(t.render(&row, true).is_err());
        let two = Template::parse("{{.Label \"a\" \"b\"}}").unwrap();
        let e = two
            .render_with(&row, true, Labels::Of(&labels))
            .unwrap_err();
        assert!(e.contains("want 1 got 2"), "{e}");
        // Inside range, dot is not the context: no method there.
        let r = Template::parse("{{range .L}}{{.Label \"k\"}}{{end}}").unwrap();
        assert!(r
            .render_with(&json!({"L": [{"x": 1}]}), true, Labels::Of(&labels))
            .is_err());
    }

    #[test]
    fn errors() {
        assert!(Template::parse("{{.ID").is_err());
        assert!(Template::parse("{{bogus .ID}}").is_err());
        assert!(Template::parse("{{if .X}}").is_err());
        let t = Template::parse("{{.Nope}}").unwrap();
        let e = t.render(&json!({"ID": "x"}), true).unwrap_err();
        assert!(e.contains("can't evaluate field Nope"), "{e}");
        // Go's position of the node: line from 1, byte column from 0.
        let t = Template::parse("ab {{.ID}}\nx {{ .Nope}}").unwrap();
        let e = t.render(&json!({"ID": "x"}), true).unwrap_err();
        assert!(e.starts_with("template: :2:5: executing"), "{e}");
        let t = Template::parse("{{.Nope.X}}").unwrap();
        let e = t.render(&json!({"ID": "x"}), true).unwrap_err();
        assert!(e.starts_with("template: :1:7: executing"), "{e}");
    }
}
