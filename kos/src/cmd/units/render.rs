//! Unit output as systemctl prints it: the `list-units` table and its
//! legend, the job failure messages, the enable/disable change lines.

use serde_json::Value;

/// Title of each UnitSummary field in `table` formats.
pub const UNIT_HEADERS: &[(&str, &str)] = &[
    ("Name", "UNIT"),
    ("LoadState", "LOAD"),
    ("ActiveState", "ACTIVE"),
    ("SubState", "SUB"),
    ("Description", "DESCRIPTION"),
    ("Result", "RESULT"),
    ("MainPID", "MAIN PID"),
    ("Status", "STATUS"),
    ("ActiveEnterTimestamp", "SINCE"),
    ("UnitFileState", "STATE"),
    ("Preset", "PRESET"),
    ("ContainerID", "CONTAINER ID"),
];

fn s<'a>(u: &'a Value, k: &str) -> &'a str {
    u[k].as_str().unwrap_or("")
}

/// `systemctl list-units`: a column per field as wide as its widest cell,
/// `●` before failed and not-loaded units, then the legend and the count.
pub fn list_table(units: &[Value], all: bool, legend: bool) -> String {
    let mut out = String::new();
    let cols = ["Name", "LoadState", "ActiveState", "SubState"];
    let titles = ["UNIT", "LOAD", "ACTIVE", "SUB"];
    let widths: Vec<usize> = cols
        .iter()
        .zip(titles)
        .map(|(k, t)| {
            units
                .iter()
                .map(|u| s(u, k).chars().count())
                .max()
                .unwrap_or(0)
                .max(t.len())
        })
        .collect();
    let row = |mark: &str, cells: [&str; 4], desc: &str| {
        let mut l = String::from(mark);
        for (c, w) in cells.iter().zip(&widths) {
            l.push(' ');
            l.push_str(c);
            l.extend(std::iter::repeat_n(' ', w - c.chars().count()));
        }
        l.push(' ');
        l.push_str(desc);
        let mut l = l.trim_end().to_string();
        l.push('\n');
        l
    };
    if !units.is_empty() {
        if legend {
            out.push_str(&row(" ", titles, "DESCRIPTION"));
        }
        for u in units {
            let failed = s(u, "ActiveState") == "failed" || s(u, "LoadState") != "loaded";
            out.push_str(&row(
                if failed { "●" } else { " " },
                [
                    s(u, "Name"),
                    s(u, "LoadState"),
                    s(u, "ActiveState"),
                    s(u, "SubState"),
                ],
                s(u, "Description"),
            ));
        }
    }
    if legend {
        if !units.is_empty() {
            out.push_str(concat!(
                "\n",
                "Legend: LOAD   → Reflects whether the unit definition was properly loaded.\n",
                "        ACTIVE → The high-level unit activation state, i.e. generalization of SUB.\n",
                "        SUB    → The low-level unit activation state, values depend on unit type.\n",
                "\n"
            ));
        }
        out.push_str(&format!("{} loaded units listed.", units.len()));
        if !all {
            out.push_str(" Pass --all to see loaded but inactive units, too.");
        }
        out.push('\n');
    }
    out
}

/// The error systemctl prints when a job ended with `result`; None when the
/// job did its work (`done`) or had nothing to do (`skipped`), as systemctl.
pub fn job_failure(unit: &str, result: &str) -> Option<String> {
    Some(match result {
        "done" | "skipped" => return None,
        "canceled" => format!("Job for {unit} canceled."),
        "timeout" => format!("Job for {unit} timed out."),
        "dependency" => format!(
            "A dependency job for {unit} failed. See \"kos system list --all\" for details."
        ),
        _ => format!(
            "Job for {unit} failed. See \"kos system status {unit}\" and \"kos system logs {unit}\" for details."
        ),
    })
}

/// One change of enable/disable, as systemctl reports it.
pub fn change_line(c: &Value) -> String {
    match s(c, "Type") {
        "symlink" => format!("Created symlink {} → {}.", s(c, "Path"), s(c, "Source")),
        "unlink" => format!("Removed \"{}\".", s(c, "Path")),
        other => format!("{other} {}", s(c, "Path")),
    }
}

/// Shell-style matching of unit names (`*`, `?`, `[...]`), as systemctl's
/// patterns.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, chars consumed incl. ']').
        let mut i = 0;
        let negate = matches!(p.first(), Some('!' | '^'));
        if negate {
            i += 1;
        }
        let mut hit = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == ']' && !first {
                return Some((hit != negate, i + 1));
            }
            first = false;
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                if p[i] <= c && c <= p[i + 2] {
                    hit = true;
                }
                i += 3;
            } else {
                if p[i] == c {
                    hit = true;
                }
                i += 1;
            }
        }
        None
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') if !n.is_empty() => match class(&p[1..], n[0]) {
                Some((true, used)) => go(&p[1 + used..], &n[1..]),
                Some((false, _)) => false,
                None => n[0] == '[' && go(&p[1..], &n[1..]),
            },
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unit(name: &str, load: &str, active: &str, sub: &str, desc: &str) -> Value {
        json!({"Name": name, "LoadState": load, "ActiveState": active, "SubState": sub, "Description": desc})
    }

    #[test]
    fn list_like_systemctl() {
        let units = [
            unit(
                "kos-dns.container",
                "loaded",
                "active",
                "running",
                "KOS DNS",
            ),
            unit("web.container", "loaded", "failed", "failed", "Web"),
            unit("kos-system.target", "loaded", "active", "active", ""),
        ];
        let t = list_table(&units, false, true);
        assert_eq!(
            t,
            concat!(
                "  UNIT              LOAD   ACTIVE SUB     DESCRIPTION\n",
                "  kos-dns.container loaded active running KOS DNS\n",
                "● web.container     loaded failed failed  Web\n",
                "  kos-system.target loaded active active\n",
                "\n",
                "Legend: LOAD   → Reflects whether the unit definition was properly loaded.\n",
                "        ACTIVE → The high-level unit activation state, i.e. generalization of SUB.\n",
                "        SUB    → The low-level unit activation state, values depend on unit type.\n",
                "\n",
                "3 loaded units listed. Pass --all to see loaded but inactive units, too.\n",
            )
        );
        assert_eq!(
            list_table(&units[..1], true, false),
            "  kos-dns.container loaded active running KOS DNS\n"
        );
        assert_eq!(
            list_table(&[], true, true),
            "0 loaded units listed.\n",
            "no header and no legend without units"
        );
        let missing = [unit(
            "x.container",
            "not-found",
            "inactive",
            "dead",
            "x.container",
        )];
        assert!(list_table(&missing, true, true)
            .contains("● x.container not-found inactive dead x.container\n"));
    }

    #[test]
    fn job_results() {
        assert_eq!(job_failure("a.container", "done"), None);
        assert_eq!(job_failure("a.container", "skipped"), None);
        assert_eq!(
            job_failure("a.container", "failed").unwrap(),
            "Job for a.container failed. See \"kos system status a.container\" and \"kos system logs a.container\" for details."
        );
        assert_eq!(
            job_failure("a.container", "canceled").unwrap(),
            "Job for a.container canceled."
        );
        assert!(job_failure("a.container", "dependency")
            .unwrap()
            .starts_with("A dependency job for a.container failed."));
        assert_eq!(
            job_failure("a.container", "timeout").unwrap(),
            "Job for a.container timed out."
        );
    }

    #[test]
    fn changes() {
        assert_eq!(
            change_line(&json!({"Type": "symlink", "Path": "/etc/kos/units/kos-system.target.wants/a.container", "Source": "/etc/kos/units/a.container"})),
            "Created symlink /etc/kos/units/kos-system.target.wants/a.container → /etc/kos/units/a.container."
        );
        assert_eq!(
            change_line(
                &json!({"Type": "unlink", "Path": "/etc/kos/units/x.wants/a.container", "Source": ""})
            ),
            "Removed \"/etc/kos/units/x.wants/a.container\"."
        );
    }

    #[test]
    fn patterns() {
        assert!(glob_match("kos-*", "kos-dns.container"));
        assert!(glob_match("*.target", "kos-system.target"));
        assert!(!glob_match("*.target", "kos-dns.container"));
        assert!(glob_match("kos-d?s.container", "kos-dns.container"));
        assert!(glob_match("[kx]os-dns.*", "kos-dns.container"));
        assert!(!glob_match("[!k]os-dns.*", "kos-dns.container"));
        assert!(glob_match("kos-dns.container", "kos-dns.container"));
        assert!(!glob_match("kos", "kos-dns.container"));
    }
}
