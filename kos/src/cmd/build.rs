//! `build`: the context sent as a tar with `.dockerignore` applied (uid/gid 0,
//! symlinks kept), the legacy builder's query parameters, and its JSON-lines
//! output printed as docker prints it.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::cli::BuildCmd;
use crate::client::{query, Client, ReqBody, Request};
use crate::progress;
use crate::status;

/// One `.dockerignore` rule.
#[derive(Debug, Clone)]
struct Rule {
    parts: Vec<String>,
    exception: bool,
}

/// `.dockerignore` rules with docker's semantics: last match wins, `!`
/// re-includes, a pattern matching a directory covers what is below it.
#[derive(Debug, Default, Clone)]
pub struct Ignore {
    rules: Vec<Rule>,
}

fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    out.join("/")
}

/// `filepath.Match` for one path segment: `*`, `?`, `[...]`, `\` escapes.
fn seg_match(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|i| seg_match(&p[1..], &s[i..])),
        Some('?') => !s.is_empty() && seg_match(&p[1..], &s[1..]),
        Some('[') => {
            let Some(c) = s.first() else { return false };
            let mut i = 1;
            let neg = p.get(1).is_some_and(|x| *x == '^' || *x == '!');
            if neg {
                i += 1;
            }
            let mut hit = false;
            let mut first = true;
            while i < p.len() && (p[i] != ']' || first) {
                first = false;
                let lo = if p[i] == '\\' && i + 1 < p.len() {
                    i += 1;
                    p[i]
                } else {
                    p[i]
                };
                if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                    let hi = p[i + 2];
                    hit |= lo <= *c && *c <= hi;
                    i += 3;
                } else {
                    hit |= lo == *c;
                    i += 1;
                }
            }
            if i >= p.len() {
                return false;
            }
            hit != neg && seg_match(&p[i + 1..], &s[1..])
        }
        Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && seg_match(&p[2..], &s[1..]),
        Some(c) => s.first() == Some(c) && seg_match(&p[1..], &s[1..]),
    }
}

fn parts_match(p: &[String], s: &[&str]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(x) if x == "**" => (0..=s.len()).any(|i| parts_match(&p[1..], &s[i..])),
        Some(x) => {
            !s.is_empty() && {
                let pc: Vec<char> = x.chars().collect();
                let sc: Vec<char> = s[0].chars().collect();
                seg_match(&pc, &sc) && parts_match(&p[1..], &s[1..])
            }
        }
    }
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (exception, pat) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let c = clean(pat);
            if c.is_empty() {
                continue;
            }
            rules.push(Rule {
                parts: c.split('/').map(str::to_string).collect(),
                exception,
            });
        }
        Ignore { rules }
    }

    /// Keeps `name` whatever the rules say (the Dockerfile and .dockerignore).
    pub fn keep(&mut self, name: &str) {
        let c = clean(name);
        if !c.is_empty() {
            self.rules.push(Rule {
                parts: c.split('/').map(str::to_string).collect(),
                exception: true,
            });
        }
    }

    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether `rel` (slash separated, relative to the context) is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        let segs: Vec<&str> = rel.split('/').collect();
        let mut out = false;
        for r in &self.rules {
            // A rule matching the path or one of its parent directories.
            let hit = (1..=segs.len()).any(|n| parts_match(&r.parts, &segs[..n]));
            if hit {
                out = !r.exception;
            }
        }
        out
    }
}

fn append(b: &mut tar::Builder<impl Write>, full: &Path, rel: &str) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(full)?;
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    h.set_uid(0);
    h.set_gid(0);
    let _ = h.set_username("");
    let _ = h.set_groupname("");
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(full)?;
        h.set_size(0);
        b.append_link(&mut h, rel, target)
    } else if ft.is_dir() {
        h.set_size(0);
        b.append_data(&mut h, format!("{rel}/"), io::empty())
    } else if ft.is_file() {
        let f = std::fs::File::open(full)?;
        b.append_data(&mut h, rel, f)
    } else {
        // Sockets, fifos and devices have no place in a build context.
        Ok(())
    }
}

/// Writes the context directory as a tar, leaving out what `ign` excludes.
pub fn write_context(
    dir: &Path,
    ign: &Ignore,
    extra: Option<(&str, &[u8])>,
    out: impl Write,
) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, rel)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)?.collect::<io::Result<Vec<_>>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let excluded = ign.excluded(&r);
            let is_dir = e.file_type()?.is_dir();
            if excluded && !(is_dir && ign.has_exceptions()) {
                continue;
            }
            if !excluded {
                append(&mut b, &e.path(), &r)?;
            }
            if is_dir {
                stack.push((e.path(), r));
            }
        }
    }
    if let Some((name, data)) = extra {
        let mut h = file_header(data.len());
        b.append_data(&mut h, name, data)?;
    }
    b.into_inner()?.flush()
}

/// A header for a file kos makes up (a Dockerfile from stdin or outside the context).
fn file_header(len: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o600);
    h.set_size(len as u64);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Counts the bytes read through it (the context size docker reports).
struct Counting<'a> {
    inner: &'a mut dyn Read,
    n: u64,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

fn kv_json(items: &[String], from_env: bool) -> Value {
    let mut m = serde_json::Map::new();
    for i in items {
        match i.split_once('=') {
            Some((k, v)) => {
                m.insert(k.to_string(), json!(v));
            }
            None if from_env => {
                m.insert(
                    i.clone(),
                    std::env::var(i).map(Value::String).unwrap_or(Value::Null),
                );
            }
            None => {
                m.insert(i.clone(), json!(""));
            }
        }
    }
    Value::Object(m)
}

pub fn build(c: &Client, b: BuildCmd) -> Result<i32> {
    let mut q: Vec<(&str, String)> = Vec::new();
    for t in &b.tag {
        q.push(("t", t.clone()));
    }
    let bool_q = |x: bool| if x { "1".to_string() } else { String::new() };
    q.push(("target", b.target.clone().unwrap_or_default()));
    q.push(("nocache", bool_q(b.no_cache)));
    q.push(("pull", bool_q(b.pull)));
    q.push(("q", bool_q(b.quiet)));
    q.push(("rm", if b.rm { "1".into() } else { "0".into() }));
    q.push(("forcerm", bool_q(b.force_rm)));
    q.push(("networkmode", b.network.clone().unwrap_or_default()));
    q.push(("platform", b.platform.clone().unwrap_or_default()));
    if !b.build_arg.is_empty() {
        q.push(("buildargs", kv_json(&b.build_arg, true).to_string()));
    }
    if !b.label.is_empty() {
        q.push(("labels", kv_json(&b.label, false).to_string()));
    }
    if !b.cache_from.is_empty() {
        q.push(("cachefrom", json!(b.cache_from).to_string()));
    }
    if !b.add_host.is_empty() {
        q.push(("extrahosts", b.add_host.join(",")));
    }
    q.push(("version", "1".into()));

    // The context as a tar on a pipe, written by a thread while the request streams it.
    let (mut rd, wr) = std::os::unix::net::UnixStream::pair()?;
    let writer: std::thread::JoinHandle<io::Result<()>>;
    if b.context == "-" {
        if b.file.as_deref() == Some("-") {
            return Err(status(
                1,
                "invalid argument: can't use stdin for both build context and dockerfile",
            ));
        }
        // A tar on stdin is the context; anything else is a Dockerfile alone.
        let mut head = vec![0u8; 512];
        let mut stdin = io::stdin().lock();
        let mut n = 0;
        while n < 512 {
            let k = stdin.read(&mut head[n..])?;
            if k == 0 {
                break;
            }
            n += k;
        }
        head.truncate(n);
        let is_tar = n >= 262 && &head[257..262] == b"ustar";
        // The lock goes before the rest of stdin is read (again, or on a thread).
        let mut rest = Vec::new();
        if !is_tar {
            stdin.take(16 << 20).read_to_end(&mut rest)?;
        } else {
            drop(stdin);
        }
        if is_tar {
            if let Some(f) = &b.file {
                q.push(("dockerfile", f.clone()));
            }
            writer = std::thread::spawn(move || {
                let mut w = wr;
                w.write_all(&head)?;
                io::copy(&mut io::stdin().lock(), &mut w)?;
                Ok(())
            });
        } else {
            let mut df = head;
            df.extend_from_slice(&rest);
            writer = std::thread::spawn(move || {
                let mut bld = tar::Builder::new(wr);
                let mut h = file_header(df.len());
                bld.append_data(&mut h, "Dockerfile", &df[..])?;
                bld.into_inner()?.flush()
            });
        }
    } else {
        let dir = PathBuf::from(&b.context);
        if !dir.is_dir() {
            return Err(status(
                1,
                format!("unable to prepare context: path {:?} not found", b.context),
            ));
        }
        let canon = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        // -f is relative to the current directory, as docker's.
        let (df_name, extra): (String, Option<Vec<u8>>) = match b.file.as_deref() {
            Some("-") => {
                let mut df = Vec::new();
                io::stdin().lock().take(16 << 20).read_to_end(&mut df)?;
                (format!(".dockerfile.kos-{}", std::process::id()), Some(df))
            }
            Some(f) => {
                let p = PathBuf::from(f);
                let p = if p.is_absolute() {
                    p
                } else {
                    std::env::current_dir()?.join(p)
                };
                let pc = p.canonicalize().map_err(|e| status(1, format!("unable to prepare context: unable to evaluate symlinks in Dockerfile path: {e}")))?;
                match pc.strip_prefix(&canon) {
                    Ok(rel) => (rel.to_string_lossy().into_owned(), None),
                    Err(_) => {
                        let data = std::fs::read(&pc)
                            .with_context(|| format!("reading {}", pc.display()))?;
                        (
                            format!(".dockerfile.kos-{}", std::process::id()),
                            Some(data),
                        )
                    }
                }
            }
            None => {
                if !canon.join("Dockerfile").exists() && !canon.join("dockerfile").exists() {
                    return Err(status(1, format!("unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: no such file or directory", canon.join("Dockerfile").display())));
                }
                ("Dockerfile".to_string(), None)
            }
        };
        let ignore_text = match std::fs::metadata(canon.join(".dockerignore")) {
            Ok(m) if m.len() > 1 << 20 => {
                return Err(status(1, ".dockerignore is larger than 1 MiB"))
            }
            Ok(_) => std::fs::read_to_string(canon.join(".dockerignore"))
                .context("reading .dockerignore")?,
            Err(_) => String::new(),
        };
        let mut ign = Ignore::parse(&ignore_text);
        if extra.is_none() {
            ign.keep(&df_name);
        }
        ign.keep(".dockerignore");
        q.push(("dockerfile", df_name.clone()));
        writer = std::thread::spawn(move || {
            let extra_ref = extra.as_ref().map(|d| (df_name.as_str(), d.as_slice()));
            write_context(
                &canon,
                &ign,
                extra_ref,
                io::BufWriter::with_capacity(256 * 1024, wr),
            )
        });
    }
    let mut req = Request::new("POST", format!("/build{}", query(&q)));
    req.headers
        .push(("X-Registry-Config".into(), "e30=".into()));
    let mut counted = Counting {
        inner: &mut rd,
        n: 0,
    };
    req.body = ReqBody::Stream(&mut counted, "application/x-tar");
    let resp = c.request(req);
    let sent = counted.n;
    drop(rd);
    if !b.quiet {
        // docker's legacy builder line, with its progress writer's line ending.
        print!(
            "Sending build context to Docker daemon  {}\r\r\n",
            crate::format::units::human_size4(sent as f64)
        );
        let _ = io::stdout().flush();
    }
    let w = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the context writer failed"))?;
    let resp = resp?;
    if let Err(e) = w {
        return Err(status(1, format!("error reading the build context: {e}")));
    }
    let outcome = if b.quiet {
        progress::display(resp, &mut io::sink(), false)?
    } else {
        progress::display(resp, &mut io::stdout(), false)?
    };
    let id = outcome
        .aux
        .iter()
        .find_map(|a| a["ID"].as_str().map(str::to_string));
    if b.quiet {
        if let Some(id) = &id {
            println!("{id}");
        }
    }
    if let (Some(f), Some(id)) = (&b.iidfile, &id) {
        std::fs::write(f, id).with_context(|| format!("writing {f}"))?;
    }
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules() {
        let mut i =
            Ignore::parse("# c\n*.log\nbuild/\n!build/keep.txt\n**/*.tmp\n/secret\ndocs/*.md\n");
        i.keep("Dockerfile");
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("dir/a.log"));
        assert!(i.excluded("build"));
        assert!(i.excluded("build/x.o"));
        assert!(!i.excluded("build/keep.txt"));
        assert!(i.excluded("x/y/z.tmp"));
        assert!(i.excluded("z.tmp"));
        assert!(i.excluded("secret"));
        assert!(i.excluded("secret/inner"));
        assert!(i.excluded("docs/a.md"));
        assert!(!i.excluded("docs/sub/a.md"));
        assert!(!i.excluded("Dockerfile"));
        assert!(!i.excluded("src/main.rs"));
        let j = Ignore::parse("[a-c]?.txt\nfile\\*\n");
        assert!(j.excluded("bx.txt"));
        assert!(!j.excluded("dx.txt"));
        assert!(j.excluded("file*"));
        assert!(!j.excluded("filex"));
    }

    #[test]
    fn context_tar_applies_rules() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(d.path().join("a.log"), "x").unwrap();
        std::fs::create_dir(d.path().join("src")).unwrap();
        std::fs::write(d.path().join("src/m.rs"), "y").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        let mut ign = Ignore::parse("*.log\nDockerfile\n");
        ign.keep("Dockerfile");
        let mut buf = Vec::new();
        write_context(d.path(), &ign, Some((".df", b"FROM x")), &mut buf).unwrap();
        let mut ar = tar::Archive::new(&buf[..]);
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().uid().unwrap(), 0);
            names.push(e.path().unwrap().to_string_lossy().into_owned());
            if names.last().unwrap() == "link" {
                assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);
            }
        }
        names.sort();
        assert_eq!(names, [".df", "Dockerfile", "link", "src/", "src/m.rs"]);
    }
}
