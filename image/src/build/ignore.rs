//! `.dockerignore`: Go `filepath.Match` patterns, `**` for any number of
//! directories, `!` exceptions, the last matching line deciding.

/// A malformed pattern (unclosed `[`, trailing escape).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad pattern {0:?}")]
pub struct BadPattern(pub String);

/// Go's `filepath.Match` for one path (`*` and `?` never match `/`).
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    validate(&p).map_err(|()| BadPattern(pattern.to_string()))?;
    Ok(match_from(&p, &n))
}

/// Whether a pattern has glob meta characters at all.
pub fn has_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

fn validate(p: &[char]) -> Result<(), ()> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(());
                }
                i += 2;
            }
            '[' => {
                let (_, next) = class_end(p, i + 1).ok_or(())?;
                i = next;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Finds the end of a class that starts after `[`; returns (content range end, index after `]`).
fn class_end(p: &[char], mut i: usize) -> Option<(usize, usize)> {
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let mut first = true;
    while i < p.len() {
        match p[i] {
            ']' if !first => return Some((i, i + 1)),
            '\\' => i += 2,
            _ => i += 1,
        }
        first = false;
    }
    None
}

fn match_from(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    // Backtracking point for the last `*`: (pattern index after it, name index).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() && n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' if ni < n.len() && n[ni] != '/' => {
                    if let Some((ok, next)) = class_match(p, pi + 1, n[ni]) {
                        if ok {
                            pi = next;
                            ni += 1;
                            continue;
                        }
                    }
                }
                '\\' if pi + 1 < p.len() && ni < n.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                c if c != '?' && c != '[' && c != '\\' && ni < n.len() && c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return true;
        }
        // Mismatch: let the last star swallow one more character (never a '/').
        match star {
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp;
                ni = sn + 1;
            }
            _ => return false,
        }
    }
}

/// Matches `c` against the class starting after `[` at `i`: (matched, index after `]`).
fn class_match(p: &[char], mut i: usize, c: char) -> Option<(bool, usize)> {
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let lo = if p[i] == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            p[i]
        };
        i += 1;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&x| x != ']') {
            i += 1;
            let h = if p[i] == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                p[i]
            };
            i += 1;
            h
        } else {
            lo
        };
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    None
}

/// Lexically cleans a slash path (Go's `path.Clean` without the leading
/// slash): `a/./b/../c/` -> `a/c`; `..` past the start stays as `..`.
pub fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if matches!(out.last(), Some(l) if *l != "..") {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

#[derive(Debug, Clone)]
struct Rule {
    parts: Vec<String>,
    exception: bool,
}

/// The parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

impl Ignore {
    /// Parses the file's text: one pattern per line, `#` comments, blank lines skipped.
    pub fn parse(text: &str) -> Result<Self, BadPattern> {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pat = clean(pat);
            if pat.is_empty() {
                continue;
            }
            let parts: Vec<String> = pat.split('/').map(str::to_string).collect();
            for p in &parts {
                if p != "**" {
                    glob_match(p, "").map_err(|_| BadPattern(line.to_string()))?;
                }
            }
            rules.push(Rule { parts, exception });
        }
        Ok(Ignore { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any `!` exception exists (excluded directories must then still be walked).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether the context-relative slash path `path` is excluded.
    pub fn excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut excluded = false;
        for r in &self.rules {
            // A pattern matching a parent directory excludes what is below it.
            let hit = (1..=comps.len()).any(|k| match_parts(&r.parts, &comps[..k]));
            if hit {
                excluded = !r.exception;
            }
        }
        excluded
    }
}

fn match_parts(pat: &[String], comps: &[&str]) -> bool {
    match pat.split_first() {
        None => comps.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=comps.len()).any(|skip| match_parts(rest, &comps[skip..]))
        }
        Some((first, rest)) => match comps.split_first() {
            None => false,
            Some((c, crest)) => {
                // `**` inside a component (`**.txt`) acts as `*`.
                let one = first.replace("**", "*");
                glob_match(&one, c).unwrap_or(false) && match_parts(rest, crest)
            }
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn go_match() {
        let m = |p, n| glob_match(p, n).unwrap();
        assert!(m("abc", "abc"));
        assert!(m("*", "abc"));
        assert!(m("*c", "abc"));
        assert!(!m("a*", "ab/c"));
        assert!(m("a*/b", "abc/b"));
        assert!(m("a*b*c*d*e*/f", "axbxcxdxe/f"));
        assert!(!m("a*b*c*d*e*/f", "axbxcxdxexxx/fff"));
        assert!(m("ab[c]", "abc"));
        assert!(m("ab[b-d]", "abc"));
        assert!(!m("ab[^c]", "abc"));
        assert!(m("ab[^e-g]", "abc"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "ab"));
        assert!(m("a?b", "a☺b"));
        assert!(!m("a?b", "a/b"));
        assert!(m("[\\]a]", "]"));
        assert!(m("[-]", "-"));
        assert!(glob_match("[", "a").is_err());
        assert!(glob_match("a\\", "a").is_err());
        assert!(glob_match("[a-", "a").is_err());
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert_eq!(clean("/x"), "x");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("a/../../x"), "../x");
    }

    #[test]
    fn dockerignore_rules() {
        let ig = Ignore::parse(
            "# comment\n\n*.log\n!keep.log\nbuild/\n**/*.tmp\ndocs/**/secret\n/abs\n",
        )
        .unwrap();
        assert!(ig.excluded("a.log"));
        assert!(!ig.excluded("keep.log"));
        assert!(!ig.excluded("sub/a.log"), "*.log only matches at the top");
        assert!(ig.excluded("build"));
        assert!(ig.excluded("build/x/y"));
        assert!(ig.excluded("x.tmp"));
        assert!(ig.excluded("a/b/x.tmp"));
        assert!(ig.excluded("docs/secret"));
        assert!(ig.excluded("docs/a/b/secret"));
        assert!(!ig.excluded("docs/a/b/public"));
        assert!(ig.excluded("abs"));
        assert!(!ig.excluded("src/main.rs"));
        assert!(ig.has_exceptions());
    }

    #[test]
    fn later_lines_win() {
        let ig = Ignore::parse("!a.txt\n*.txt\n").unwrap();
        assert!(ig.excluded("a.txt"));
        let ig = Ignore::parse("dir\n!dir/keep\n").unwrap();
        assert!(ig.excluded("dir/x"));
        assert!(!ig.excluded("dir/keep"));
        assert!(Ignore::parse("[bad\n").is_err());
    }
}
