//! Dockerfile parser: parser directives (`escape`, `syntax`), line
//! continuations, comments, heredocs, JSON (exec) and shell forms, flags and
//! every instruction of Docker's Dockerfile reference. Arguments stay raw
//! here; variables are substituted when the instruction runs, because their
//! values depend on the ENV and ARG instructions before it.

use super::lex::split_raw;

/// A parse error, naming the Dockerfile line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Dockerfile line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        message: message.into(),
    })
}

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub escape: char,
    pub syntax: Option<String>,
    /// ARG instructions before the first FROM (usable in FROM lines).
    pub meta_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    /// The `AS` name, lowercased.
    pub name: Option<String>,
    /// The raw image word (may hold `$VAR`s from meta ARGs).
    pub base: String,
    pub platform: Option<String>,
    pub line: usize,
    pub original: String,
    pub instructions: Vec<Instruction>,
}

/// One instruction with the line it starts on and its text as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub line: usize,
    /// The logical line (continuations joined), shown in `Step N/M : ...`.
    pub original: String,
    pub command: Command,
}

/// A heredoc body (`<<EOF ... EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// Unquoted delimiters expand variables in the body (COPY).
    pub expand: bool,
}

/// Shell form (run through the SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOrExec {
    Shell(String),
    Exec(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    pub cmd: ShellOrExec,
    /// `--network=none|host|default`.
    pub network: Option<String>,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    /// Raw source words (expanded at run time); heredoc sources are `<<NAME`.
    pub sources: Vec<String>,
    pub dest: String,
    pub heredocs: Vec<Heredoc>,
}

/// HEALTHCHECK settings; durations in nanoseconds as the image config holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub test: Vec<String>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub start_interval: Option<i64>,
    pub retries: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(RunArgs),
    Cmd(ShellOrExec),
    Entrypoint(ShellOrExec),
    /// Raw `key`/`value` words.
    Env(Vec<(String, String)>),
    /// Names and raw default values.
    Arg(Vec<(String, Option<String>)>),
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Copy(CopyArgs),
    Add(CopyArgs),
    /// The trigger's text, checked to parse.
    Onbuild(String),
    StopSignal(String),
    /// `None` for `HEALTHCHECK NONE`.
    Healthcheck(Option<Health>),
    Shell(Vec<String>),
    Maintainer(String),
}

impl Command {
    /// Whether the instruction changes the filesystem (and makes a layer).
    pub fn makes_layer(&self) -> bool {
        matches!(self, Command::Run(_) | Command::Copy(_) | Command::Add(_))
    }
}

/// Parses a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut i = 0;
    let mut seen = Vec::new();
    // Parser directives: only at the very top, before any other line.
    while i < lines.len() {
        let Some((key, value)) = directive(lines[i]) else {
            break;
        };
        if seen.contains(&key) {
            return err(
                i + 1,
                format!("only one {key} parser directive can be used"),
            );
        }
        match key.as_str() {
            "escape" => {
                escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return err(
                            i + 1,
                            format!("invalid escape token {other:?}: must be ` or \\"),
                        )
                    }
                }
            }
            "syntax" => syntax = Some(value),
            _ => {}
        }
        seen.push(key);
        i += 1;
    }

    let mut df = Dockerfile {
        escape,
        syntax,
        meta_args: Vec::new(),
        stages: Vec::new(),
    };
    while i < lines.len() {
        let start = i + 1;
        let first = lines[i];
        i += 1;
        let t = first.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut logical = String::new();
        let mut cur = first;
        loop {
            let trimmed = cur.trim_end();
            match trimmed.strip_suffix(escape) {
                Some(body) => {
                    logical.push_str(body);
                    // The next line that is neither blank nor a comment continues it.
                    let mut next = None;
                    while i < lines.len() {
                        let l = lines[i];
                        i += 1;
                        let lt = l.trim_start();
                        if lt.is_empty() || lt.starts_with('#') {
                            continue;
                        }
                        next = Some(l);
                        break;
                    }
                    match next {
                        Some(l) => cur = l,
                        None => break,
                    }
                }
                None => {
                    logical.push_str(cur);
                    break;
                }
            }
        }
        let logical = logical.trim().to_string();
        let (keyword, rest) = split_keyword(&logical);
        let upper = keyword.to_ascii_uppercase();
        let mut heredocs = Vec::new();
        if matches!(upper.as_str(), "RUN" | "COPY" | "ADD") {
            for (name, strip_tabs, expand) in heredoc_markers(rest) {
                let mut content = String::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let body = if strip_tabs {
                        l.trim_start_matches('\t')
                    } else {
                        l
                    };
                    if body == name {
                        closed = true;
                        break;
                    }
                    content.push_str(body);
                    content.push('\n');
                }
                if !closed {
                    return err(start, format!("unterminated heredoc <<{name}"));
                }
                heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                });
            }
        }
        if upper == "FROM" {
            df.stages
                .push(parse_from(rest, start, &logical, df.stages.len())?);
            continue;
        }
        let command = parse_command(&upper, keyword, rest, heredocs, start, escape)?;
        let ins = Instruction {
            line: start,
            original: logical.clone(),
            command,
        };
        match df.stages.last_mut() {
            Some(stage) => stage.instructions.push(ins),
            None if matches!(ins.command, Command::Arg(_)) => df.meta_args.push(ins),
            None => {
                return err(
                    start,
                    format!("{upper} before the first FROM: a Dockerfile must start with FROM (only ARG may come before it)"),
                )
            }
        }
    }
    if df.stages.is_empty() {
        return err(lines.len().max(1), "the Dockerfile has no FROM instruction");
    }
    Ok(df)
}

/// Parses one instruction line (an ONBUILD trigger).
pub fn parse_line(text: &str, line: usize, escape: char) -> Result<Instruction, ParseError> {
    let text = text.trim();
    let (keyword, rest) = split_keyword(text);
    let upper = keyword.to_ascii_uppercase();
    if upper == "FROM" {
        return err(line, "FROM is not allowed as an ONBUILD trigger");
    }
    let command = parse_command(&upper, keyword, rest, Vec::new(), line, escape)?;
    Ok(Instruction {
        line,
        original: text.to_string(),
        command,
    })
}

fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix('#')?.trim_start();
    let (key, value) = rest.split_once('=')?;
    let key = key.trim().to_ascii_lowercase();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    if !matches!(key.as_str(), "escape" | "syntax" | "check") {
        return None;
    }
    Some((key, value.trim().to_string()))
}

fn split_keyword(logical: &str) -> (&str, &str) {
    match logical.find(char::is_whitespace) {
        Some(p) => (&logical[..p], logical[p..].trim()),
        None => (logical, ""),
    }
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'` at the start of a word:
/// (delimiter, strip leading tabs, expand variables).
fn heredoc_markers(args: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    for word in args.split_whitespace() {
        let Some(mut rest) = word.strip_prefix("<<") else {
            continue;
        };
        if rest.starts_with('<') {
            continue;
        }
        let strip = rest.starts_with('-');
        if strip {
            rest = &rest[1..];
        }
        let (name, expand) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => match rest[1..].find(q) {
                Some(end) => (&rest[1..1 + end], false),
                None => continue,
            },
            _ => {
                let end = rest
                    .find(|c: char| {
                        !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
                    })
                    .unwrap_or(rest.len());
                (&rest[..end], true)
            }
        };
        if !name.is_empty() {
            out.push((name.to_string(), strip, expand));
        }
    }
    out
}

/// Leading `--name[=value]` flags; returns them and what follows.
fn take_flags(rest: &str) -> (Vec<(String, Option<String>)>, &str) {
    let mut flags = Vec::new();
    let mut r = rest.trim_start();
    while let Some(f) = r.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let word = &f[..end];
        match word.split_once('=') {
            Some((k, v)) => flags.push((k.to_ascii_lowercase(), Some(v.to_string()))),
            None => flags.push((word.to_ascii_lowercase(), None)),
        }
        r = f[end..].trim_start();
    }
    (flags, r)
}

fn check_flags(
    flags: &[(String, Option<String>)],
    allowed: &[&str],
    ins: &str,
    line: usize,
) -> Result<(), ParseError> {
    for (k, _) in flags {
        if !allowed.contains(&k.as_str()) {
            return err(line, format!("unknown flag --{k} for {ins}"));
        }
    }
    Ok(())
}

fn flag(
    flags: &[(String, Option<String>)],
    name: &str,
    line: usize,
) -> Result<Option<String>, ParseError> {
    match flags.iter().rev().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, Some(v))) => Ok(Some(v.clone())),
        Some((_, None)) => err(line, format!("flag --{name} needs a value (--{name}=...)")),
    }
}

fn json_array(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(rest).ok()
}

fn shell_or_exec(rest: &str) -> ShellOrExec {
    match json_array(rest) {
        Some(v) => ShellOrExec::Exec(v),
        None => ShellOrExec::Shell(rest.to_string()),
    }
}

fn parse_from(rest: &str, line: usize, original: &str, index: usize) -> Result<Stage, ParseError> {
    let (flags, rest) = take_flags(rest);
    check_flags(&flags, &["platform"], "FROM", line)?;
    let platform = flag(&flags, "platform", line)?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (base, name) = match words.as_slice() {
        [b] => (*b, None),
        [b, as_, n] if as_.eq_ignore_ascii_case("as") => (*b, Some(n.to_ascii_lowercase())),
        [] => return err(line, "FROM requires an image (FROM image [AS name])"),
        _ => {
            return err(
                line,
                format!("FROM takes one image and an optional AS name, got {rest:?}"),
            )
        }
    };
    if let Some(n) = &name {
        let ok = n.starts_with(|c: char| c.is_ascii_alphabetic())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            return err(line, format!("invalid stage name {n:?}: letters, digits, '_', '-', '.', starting with a letter"));
        }
    }
    Ok(Stage {
        index,
        name,
        base: base.to_string(),
        platform,
        line,
        original: original.to_string(),
        instructions: Vec::new(),
    })
}

fn name_values(
    rest: &str,
    ins: &str,
    line: usize,
    escape: char,
) -> Result<Vec<(String, String)>, ParseError> {
    let words = split_raw(rest, escape);
    let Some(first) = words.first() else {
        return err(line, format!("{ins} requires at least one argument"));
    };
    if !first.contains('=') {
        // Legacy `ENV key value with spaces`.
        let value = rest.trim_start()[first.len()..].trim().to_string();
        if value.is_empty() {
            return err(
                line,
                format!("{ins} {first} needs a value ({ins} key=value)"),
            );
        }
        return Ok(vec![(first.clone(), value)]);
    }
    let mut out = Vec::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => {
                return err(
                    line,
                    format!("{ins}: can't find '=' in {w:?}: must be of the form name=value"),
                )
            }
        }
    }
    Ok(out)
}

fn parse_command(
    upper: &str,
    keyword: &str,
    rest: &str,
    heredocs: Vec<Heredoc>,
    line: usize,
    escape: char,
) -> Result<Command, ParseError> {
    let need_args = |what: &str| -> Result<(), ParseError> {
        if rest.trim().is_empty() {
            return err(line, format!("{upper} requires {what}"));
        }
        Ok(())
    };
    Ok(match upper {
        "RUN" => {
            let (flags, body) = take_flags(rest);
            check_flags(&flags, &["network", "mount", "security"], "RUN", line)?;
            if flag(&flags, "mount", line)?.is_some() {
                return err(
                    line,
                    "RUN --mount needs BuildKit; this builder does not support it",
                );
            }
            if let Some(s) = flag(&flags, "security", line)? {
                if s != "sandbox" {
                    return err(line, format!("RUN --security={s} is not supported"));
                }
            }
            let network = flag(&flags, "network", line)?;
            if let Some(n) = &network {
                if !matches!(n.as_str(), "none" | "host" | "default") {
                    return err(
                        line,
                        format!("RUN --network={n}: must be none, host or default"),
                    );
                }
            }
            if body.is_empty() {
                return err(line, "RUN requires a command");
            }
            Command::Run(RunArgs {
                cmd: if heredocs.is_empty() {
                    shell_or_exec(body)
                } else {
                    ShellOrExec::Shell(body.to_string())
                },
                network,
                heredocs,
            })
        }
        "CMD" => {
            need_args("a command")?;
            Command::Cmd(shell_or_exec(rest))
        }
        "ENTRYPOINT" => {
            need_args("a command")?;
            Command::Entrypoint(shell_or_exec(rest))
        }
        "ENV" => Command::Env(name_values(rest, "ENV", line, escape)?),
        "LABEL" => Command::Label(name_values(rest, "LABEL", line, escape)?),
        "ARG" => {
            let words = split_raw(rest, escape);
            if words.is_empty() {
                return err(line, "ARG requires a name (ARG name[=default])");
            }
            let mut out = Vec::new();
            for w in words {
                let (k, v) = match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (w.clone(), None),
                };
                if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return err(line, format!("invalid ARG name {k:?}"));
                }
                out.push((k, v));
            }
            Command::Arg(out)
        }
        "EXPOSE" => {
            need_args("at least one port")?;
            Command::Expose(split_raw(rest, escape))
        }
        "VOLUME" => {
            need_args("at least one path")?;
            Command::Volume(json_array(rest).unwrap_or_else(|| split_raw(rest, escape)))
        }
        "USER" => {
            need_args("a user")?;
            Command::User(rest.trim().to_string())
        }
        "WORKDIR" => {
            need_args("a path")?;
            Command::Workdir(rest.trim().to_string())
        }
        "COPY" | "ADD" => {
            let (flags, body) = take_flags(rest);
            let allowed: &[&str] = if upper == "COPY" {
                &["from", "chown", "chmod", "link", "parents", "exclude"]
            } else {
                &["chown", "chmod", "link", "checksum", "keep-git-dir"]
            };
            check_flags(&flags, allowed, upper, line)?;
            for unsupported in ["parents", "exclude", "checksum", "keep-git-dir"] {
                if flags.iter().any(|(k, _)| k == unsupported) {
                    return err(
                        line,
                        format!("{upper} --{unsupported} is not supported by this builder"),
                    );
                }
            }
            let mut words = json_array(body).unwrap_or_else(|| split_raw(body, escape));
            if words.len() < 2 {
                return err(
                    line,
                    format!("{upper} requires at least one source and a destination"),
                );
            }
            let dest = words.pop().unwrap_or_default();
            let args = CopyArgs {
                from: flag(&flags, "from", line)?,
                chown: flag(&flags, "chown", line)?,
                chmod: flag(&flags, "chmod", line)?,
                sources: words,
                dest,
                heredocs,
            };
            if upper == "COPY" {
                Command::Copy(args)
            } else {
                Command::Add(args)
            }
        }
        "ONBUILD" => {
            need_args("an instruction")?;
            let (k, _) = split_keyword(rest.trim());
            let k = k.to_ascii_uppercase();
            if matches!(k.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return err(line, format!("{k} is not allowed as an ONBUILD trigger"));
            }
            parse_line(rest, line, escape)?;
            Command::Onbuild(rest.trim().to_string())
        }
        "STOPSIGNAL" => {
            need_args("a signal")?;
            Command::StopSignal(rest.trim().to_string())
        }
        "HEALTHCHECK" => parse_health(rest, line)?,
        "SHELL" => match json_array(rest) {
            Some(v) if !v.is_empty() => Command::Shell(v),
            _ => {
                return err(
                    line,
                    "SHELL requires a JSON array, e.g. SHELL [\"/bin/sh\", \"-c\"]",
                )
            }
        },
        "MAINTAINER" => {
            need_args("a name")?;
            Command::Maintainer(rest.trim().to_string())
        }
        _ => return err(line, format!("unknown instruction: {keyword}")),
    })
}

fn parse_health(rest: &str, line: usize) -> Result<Command, ParseError> {
    let (flags, body) = take_flags(rest);
    check_flags(
        &flags,
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        "HEALTHCHECK",
        line,
    )?;
    let (kind, args) = split_keyword(body);
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !flags.is_empty() || !args.is_empty() {
                return err(line, "HEALTHCHECK NONE takes no flags or arguments");
            }
            Ok(Command::Healthcheck(None))
        }
        "CMD" => {
            if args.is_empty() {
                return err(line, "HEALTHCHECK CMD requires a command");
            }
            let test = match json_array(args) {
                Some(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
                None => vec!["CMD-SHELL".to_string(), args.to_string()],
            };
            let dur = |name: &str| -> Result<Option<i64>, ParseError> {
                match flag(&flags, name, line)? {
                    None => Ok(None),
                    Some(v) => match parse_duration(&v) {
                        Some(d) if d >= 0 => Ok(Some(d)),
                        _ => err(
                            line,
                            format!("HEALTHCHECK --{name}={v}: not a duration like 30s or 1m30s"),
                        ),
                    },
                }
            };
            let retries = match flag(&flags, "retries", line)? {
                None => None,
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if n >= 0 => Some(n),
                    _ => return err(line, format!("HEALTHCHECK --retries={v}: not a count")),
                },
            };
            Ok(Command::Healthcheck(Some(Health {
                test,
                interval: dur("interval")?,
                timeout: dur("timeout")?,
                start_period: dur("start-period")?,
                start_interval: dur("start-interval")?,
                retries,
            })))
        }
        _ => err(line, "HEALTHCHECK must be followed by CMD or NONE"),
    }
}

/// Go's `time.ParseDuration` (`300ms`, `1.5h`, `2h45m`), in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    if total > i64::MAX as f64 {
        return None;
    }
    Some(total as i64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cmds(df: &Dockerfile, stage: usize) -> Vec<Command> {
        df.stages[stage]
            .instructions
            .iter()
            .map(|i| i.command.clone())
            .collect()
    }

    #[test]
    fn every_instruction() {
        let df = parse(
            r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM --platform=linux/amd64 ${BASE} AS Build
RUN echo hi && \
    echo there
RUN ["/bin/sh", "-c", "exit 0"]
CMD ["sh"]
ENTRYPOINT echo ep
ENV A=1 B="two words"
ENV LEGACY some value
ARG X Y=2
LABEL a=b "c d"=e
EXPOSE 80 443/udp
VOLUME ["/data", "/logs"]
VOLUME /v1 /v2
USER app:app
WORKDIR /srv
COPY --from=base --chown=1:2 --chmod=640 a b* /dst/
ADD x.tar /
ONBUILD RUN echo trig
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=3 CMD wget -q localhost
SHELL ["/bin/sh", "-ec"]
MAINTAINER someone
FROM scratch
HEALTHCHECK NONE
"#,
        )
        .unwrap();
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(df.meta_args.len(), 1);
        assert_eq!(df.stages.len(), 2);
        let s = &df.stages[0];
        assert_eq!(s.name.as_deref(), Some("build"));
        assert_eq!(s.base, "${BASE}");
        assert_eq!(s.platform.as_deref(), Some("linux/amd64"));
        assert_eq!(s.line, 3);
        let c = cmds(&df, 0);
        assert_eq!(
            c[0],
            Command::Run(RunArgs {
                cmd: ShellOrExec::Shell("echo hi &&     echo there".into()),
                network: None,
                heredocs: vec![]
            })
        );
        assert_eq!(df.stages[0].instructions[1].line, 6);
        assert!(
            matches!(&c[1], Command::Run(r) if r.cmd == ShellOrExec::Exec(vec!["/bin/sh".into(), "-c".into(), "exit 0".into()]))
        );
        assert_eq!(c[2], Command::Cmd(ShellOrExec::Exec(vec!["sh".into()])));
        assert_eq!(
            c[3],
            Command::Entrypoint(ShellOrExec::Shell("echo ep".into()))
        );
        assert_eq!(
            c[4],
            Command::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"two words\"".into())
            ])
        );
        assert_eq!(
            c[5],
            Command::Env(vec![("LEGACY".into(), "some value".into())])
        );
        assert_eq!(
            c[6],
            Command::Arg(vec![("X".into(), None), ("Y".into(), Some("2".into()))])
        );
        assert_eq!(
            c[7],
            Command::Label(vec![
                ("a".into(), "b".into()),
                ("\"c d\"".into(), "e".into())
            ])
        );
        assert_eq!(c[8], Command::Expose(vec!["80".into(), "443/udp".into()]));
        assert_eq!(c[9], Command::Volume(vec!["/data".into(), "/logs".into()]));
        assert_eq!(c[10], Command::Volume(vec!["/v1".into(), "/v2".into()]));
        assert_eq!(c[11], Command::User("app:app".into()));
        assert_eq!(c[12], Command::Workdir("/srv".into()));
        let Command::Copy(cp) = &c[13] else {
            panic!("copy")
        };
        assert_eq!(cp.from.as_deref(), Some("base"));
        assert_eq!(cp.chown.as_deref(), Some("1:2"));
        assert_eq!(cp.chmod.as_deref(), Some("640"));
        assert_eq!(cp.sources, vec!["a", "b*"]);
        assert_eq!(cp.dest, "/dst/");
        assert!(matches!(&c[14], Command::Add(a) if a.sources == vec!["x.tar"] && a.dest == "/"));
        assert_eq!(c[15], Command::Onbuild("RUN echo trig".into()));
        assert_eq!(c[16], Command::StopSignal("SIGINT".into()));
        let Command::Healthcheck(Some(h)) = &c[17] else {
            panic!("health")
        };
        assert_eq!(h.test, vec!["CMD-SHELL", "wget -q localhost"]);
        assert_eq!(h.interval, Some(5_000_000_000));
        assert_eq!(h.retries, Some(3));
        assert_eq!(c[18], Command::Shell(vec!["/bin/sh".into(), "-ec".into()]));
        assert_eq!(c[19], Command::Maintainer("someone".into()));
        assert_eq!(df.stages[1].base, "scratch");
        assert_eq!(cmds(&df, 1), vec![Command::Healthcheck(None)]);
    }

    #[test]
    fn escape_directive_and_comments() {
        let df = parse(
            "# escape=`\n\nFROM scratch\nRUN dir c:\\ `\n  # comment inside\n\n  && echo x\n",
        )
        .unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(
            cmds(&df, 0),
            vec![Command::Run(RunArgs {
                cmd: ShellOrExec::Shell("dir c:\\   && echo x".into()),
                network: None,
                heredocs: vec![]
            })]
        );
        // A directive after the first line is a plain comment.
        let df = parse("FROM scratch\n# escape=`\nRUN a \\\n b\n").unwrap();
        assert_eq!(df.escape, '\\');
        assert!(parse("# escape=x\nFROM scratch\n").is_err());
        assert!(parse("# escape=`\n# escape=\\\nFROM scratch\n").is_err());
    }

    #[test]
    fn heredocs() {
        let df = parse("FROM scratch\nRUN <<EOF\necho a\necho b\nEOF\nCOPY <<-\"X\" /f\n\thello $A\n\tX\nRUN cat <<A <<B\n1\nA\n2\nB\n").unwrap();
        let c = cmds(&df, 0);
        let Command::Run(r) = &c[0] else { panic!() };
        assert_eq!(r.cmd, ShellOrExec::Shell("<<EOF".into()));
        assert_eq!(r.heredocs[0].content, "echo a\necho b\n");
        let Command::Copy(cp) = &c[1] else { panic!() };
        assert_eq!(cp.sources, vec!["<<-\"X\""]);
        assert_eq!(cp.heredocs[0].content, "hello $A\n");
        assert!(!cp.heredocs[0].expand);
        let Command::Run(r) = &c[2] else { panic!() };
        assert_eq!(r.heredocs.len(), 2);
        assert_eq!(r.heredocs[1].content, "2\n");
        let e = parse("FROM scratch\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unterminated heredoc"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("FROM scratch\n\nFOO bar\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.to_string(), "Dockerfile line 3: unknown instruction: FOO");
        let e = parse("RUN x\nFROM scratch\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(parse("# just a comment\n").is_err());
        assert!(parse("FROM a AS\n").is_err());
        assert!(parse("FROM a AS 1x\n").is_err());
        assert!(parse("FROM a\nENV novalue\n").is_err());
        assert!(parse("FROM a\nCOPY onlyone\n").is_err());
        assert!(parse("FROM a\nCOPY --bogus=1 a b\n").is_err());
        assert!(parse("FROM a\nRUN --mount=type=cache,target=/x true\n").is_err());
        assert!(parse("FROM a\nSHELL sh -c\n").is_err());
        assert!(parse("FROM a\nONBUILD FROM x\n").is_err());
        assert!(parse("FROM a\nONBUILD BOGUS x\n").is_err());
        assert!(parse("FROM a\nHEALTHCHECK --interval=abc CMD true\n").is_err());
        assert!(parse("FROM a\nHEALTHCHECK true\n").is_err());
        assert!(parse("FROM a\nARG bad-name\n").is_err());
        assert!(parse("FROM a\nLABEL a=b c\n").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
