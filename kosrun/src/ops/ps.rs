//! `ps`: the processes of a container, as pids from its cgroup or as the host's ps(1)
//! table cut down to them.

use std::path::Path;
use std::process::Command;

use crate::container::Container;
use crate::error::{Error, Result, Stage};

/// Host pids of every process in the container's cgroup (and its child cgroups), in the
/// kernel's order, without duplicates.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let saved = Container::load(root, id)?.saved;
    let cg = kos_cgroups::Manager::new(Some(&saved.cgroup_path), id)?;
    let mut out: Vec<i32> = Vec::new();
    for p in cg.pids()? {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Runs the host's `ps` with `args` ("-ef" when none) and keeps its header and the rows
/// whose PID column is one of `pids`.
pub fn table(pids: &[i32], args: &[String]) -> Result<String> {
    let default = ["-ef".to_string()];
    let args = if args.is_empty() { &default[..] } else { args };
    let out = Command::new("ps")
        .args(args)
        .output()
        .map_err(|e| Error::failed_by(Stage::Ps, format!("running ps: {e}"), e))?;
    if !out.status.success() {
        return Err(Error::failed(
            Stage::Ps,
            format!(
                "ps {}: {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    filter(&String::from_utf8_lossy(&out.stdout), pids)
}

/// The header and the rows of `ps` output whose PID column is one of `pids`.
pub fn filter(output: &str, pids: &[i32]) -> Result<String> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| {
            Error::failed(
                Stage::Ps,
                format!(
                "no PID column in the ps output header {header:?}: ask ps for one (e.g. -o pid,cmd)"
            ),
            )
        })?;
    let mut out = String::from(header);
    out.push('\n');
    for l in lines {
        let pid = l
            .split_whitespace()
            .nth(col)
            .and_then(|f| f.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(l);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::filter;

    #[test]
    fn keeps_header_and_container_rows() {
        let ps = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                  root           1       0  0 10:00 ?        00:00:01 /sbin/init\n\
                  root         420       1  0 10:01 ?        00:00:00 sleep 1000\n\
                  root         421     420  0 10:01 ?        00:00:00 sh -c 420 421\n";
        let out = filter(ps, &[420, 421]).unwrap();
        let l: Vec<&str> = out.lines().collect();
        assert_eq!(l.len(), 3);
        assert!(l[0].starts_with("UID"));
        assert!(l[1].contains("sleep 1000"));
        assert!(l[2].contains("sh -c"));
        // PID in another column position.
        let out = filter("COMMAND PID\nsleep 7\nsh 8\n", &[8]).unwrap();
        assert_eq!(out, "COMMAND PID\nsh 8\n");
        assert!(filter("USER COMMAND\nroot x\n", &[1]).is_err());
    }
}
