//! Parsing what a container prints about itself.

use std::collections::HashMap;

use anyhow::{anyhow, Result};

/// Splits output printed as `@@name` header lines followed by content into a map.
/// Containers print several facts in one run this way.
pub fn sections(out: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut cur: Option<String> = None;
    let mut buf = String::new();
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            if let Some(c) = cur.take() {
                map.insert(c, std::mem::take(&mut buf));
            }
            cur = Some(name.trim().to_string());
            buf.clear();
        } else if cur.is_some() {
            buf.push_str(line);
            buf.push('\n');
        }
    }
    if let Some(c) = cur {
        map.insert(c, buf);
    }
    map
}

/// A shell fragment that prints `@@name` and then runs `cmd` with stderr folded in.
pub fn section(name: &str, cmd: &str) -> String {
    format!("echo @@{name}; {{ {cmd}; }} 2>&1; ")
}

pub fn get<'a>(s: &'a HashMap<String, String>, name: &str) -> Result<&'a str> {
    s.get(name).map(String::as_str).ok_or_else(|| {
        anyhow!(
            "container output has no section {name:?} (sections: {:?})",
            s.keys()
        )
    })
}

/// The value of `Key:` in a /proc/PID/status style text, whitespace-normalised.
pub fn status_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

/// One line of /proc/PID/mountinfo.
#[derive(Debug, Clone)]
pub struct MountLine {
    pub mount_point: String,
    pub mount_opts: Vec<String>,
    pub optional: Vec<String>,
    pub fstype: String,
    pub super_opts: Vec<String>,
}

impl MountLine {
    pub fn has_opt(&self, o: &str) -> bool {
        self.mount_opts.iter().any(|x| x == o)
    }

    pub fn has_super_opt(&self, o: &str) -> bool {
        self.super_opts.iter().any(|x| x == o)
    }

    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }

    pub fn is_slave(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("master:"))
    }
}

pub fn mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            if f.len() < 6 {
                return None;
            }
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountLine {
                mount_point: f[4].to_string(),
                mount_opts: f[5].split(',').map(str::to_string).collect(),
                optional: f[6..].iter().map(|s| s.to_string()).collect(),
                fstype: r.first()?.to_string(),
                super_opts: r
                    .get(2)
                    .map(|s| s.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The topmost mount at `point` (the last listed one wins, as in the kernel's view).
pub fn mount_at<'a>(mounts: &'a [MountLine], point: &str) -> Option<&'a MountLine> {
    mounts.iter().rev().find(|m| m.mount_point == point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_split_on_headers() {
        let s = sections("junk\n@@a\n1\n2\n@@b\n@@c\nx\n");
        assert_eq!(s["a"], "1\n2\n");
        assert_eq!(s["b"], "");
        assert_eq!(s["c"], "x\n");
        assert!(!s.contains_key("junk"));
    }

    #[test]
    fn status_field_normalises_whitespace() {
        let t = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nNoNewPrivs:\t1\n";
        assert_eq!(
            status_field(t, "Uid").as_deref(),
            Some("1000 1000 1000 1000")
        );
        assert_eq!(status_field(t, "NoNewPrivs").as_deref(), Some("1"));
        assert_eq!(status_field(t, "Gid"), None);
    }

    #[test]
    fn mountinfo_parses_optional_fields() {
        let t = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n\
                 40 1 0:5 / /dev rw - tmpfs tmpfs rw,size=65536k,mode=755\n";
        let m = mountinfo(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, "/mnt2");
        assert!(m[0].is_shared() && m[0].is_slave());
        assert!(m[0].has_opt("noatime"));
        assert_eq!(m[1].fstype, "tmpfs");
        assert!(m[1].has_super_opt("mode=755"));
        assert!(!m[1].is_shared());
        assert_eq!(
            mount_at(&m, "/dev").map(|x| x.fstype.as_str()),
            Some("tmpfs")
        );
    }
}
