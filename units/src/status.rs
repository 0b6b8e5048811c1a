//! `systemctl status` and `systemctl list-units` as text.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::state::{ActiveState, ExitStatus, JobId, JobKind, UnitResult};

/// What `status` shows about one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStatus {
    pub name: String,
    pub description: String,
    /// `loaded`, `not-found`, `bad-setting`, `masked`.
    pub load_state: &'static str,
    pub load_error: Option<String>,
    pub fragment: Option<PathBuf>,
    pub dropins: Vec<PathBuf>,
    /// `enabled`, `disabled`, `static`, `masked`.
    pub file_state: &'static str,
    pub preset: &'static str,
    pub active_state: ActiveState,
    pub sub_state: &'static str,
    pub result: UnitResult,
    pub since: Option<SystemTime>,
    pub main_pid: Option<u32>,
    pub last_main: Option<(u32, ExitStatus)>,
    pub status_text: Option<String>,
    pub cgroup: Option<String>,
    pub job: Option<(JobId, JobKind)>,
    pub n_restarts: u32,
}

/// The status dot: `●` active or changing, `×` failed, `○` inactive.
fn dot(s: ActiveState) -> &'static str {
    match s {
        ActiveState::Failed => "×",
        ActiveState::Inactive => "○",
        _ => "●",
    }
}

/// `Mon 2026-11-30 08:51:07 UTC`.
pub fn format_timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    format!(
        "{wd} {y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `3s ago`, `1min 5s ago`, `2h 3min ago`, `4 days ago`.
pub fn format_relative(d: Duration) -> String {
    let s = d.as_secs();
    let text = if s == 0 {
        format!("{}ms", d.as_millis())
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}min {}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h {}min", s / 3600, s % 3600 / 60)
    } else {
        format!(
            "{} day{}",
            s / 86_400,
            if s / 86_400 == 1 { "" } else { "s" }
        )
    };
    format!("{text} ago")
}

/// `Active: ...` without the label.
fn active_line(st: &UnitStatus, now: SystemTime) -> String {
    let mut s = format!("{} ({})", st.active_state, st.sub_state);
    if st.result != UnitResult::Success
        && matches!(
            st.active_state,
            ActiveState::Failed | ActiveState::Activating | ActiveState::Inactive
        )
    {
        s.push_str(&format!(" (Result: {})", st.result));
    }
    if let Some(t) = st.since {
        s.push_str(&format!(
            " since {}; {}",
            format_timestamp(t),
            format_relative(now.duration_since(t).unwrap_or_default())
        ));
    }
    s
}

/// The `systemctl status NAME` text; `log` are the unit's last log lines, oldest first.
pub fn render_status(st: &UnitStatus, now: SystemTime, log: &[String]) -> String {
    let mut out = String::new();
    let title = if st.description.is_empty() {
        String::new()
    } else {
        format!(" - {}", st.description)
    };
    out.push_str(&format!("{} {}{title}\n", dot(st.active_state), st.name));
    let loaded = match (&st.fragment, st.load_state) {
        (Some(f), "loaded") => format!(
            "loaded ({}; {}; preset: {})",
            f.display(),
            st.file_state,
            st.preset
        ),
        (Some(f), "masked") => format!("masked ({}; masked)", f.display()),
        (_, "bad-setting") => format!(
            "bad-setting (Reason: {})",
            st.load_error
                .as_deref()
                .unwrap_or("unit file has a bad setting")
        ),
        (_, "not-found") => format!("not-found (Reason: Unit {} not found.)", st.name),
        (_, other) => other.to_string(),
    };
    out.push_str(&format!("     Loaded: {loaded}\n"));
    if !st.dropins.is_empty() {
        let mut by_dir: Vec<(PathBuf, Vec<String>)> = Vec::new();
        for d in &st.dropins {
            let dir = d.parent().map(|p| p.to_path_buf()).unwrap_or_default();
            let file = d
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            match by_dir.iter_mut().find(|(p, _)| *p == dir) {
                Some((_, fs)) => fs.push(file),
                None => by_dir.push((dir, vec![file])),
            }
        }
        for (i, (dir, files)) in by_dir.iter().enumerate() {
            let label = if i == 0 {
                "    Drop-In: "
            } else {
                "             "
            };
            out.push_str(&format!(
                "{label}{}\n             └─{}\n",
                dir.display(),
                files.join(", ")
            ));
        }
    }
    out.push_str(&format!("     Active: {}\n", active_line(st, now)));
    if let Some((id, kind)) = st.job {
        out.push_str(&format!("        Job: {id} ({})\n", kind.as_str()));
    }
    match (st.main_pid, st.last_main) {
        (Some(pid), _) => out.push_str(&format!("   Main PID: {pid}\n")),
        (None, Some((pid, ex))) => {
            out.push_str(&format!("   Main PID: {pid} ({})\n", ex.describe()))
        }
        _ => {}
    }
    if let Some(s) = &st.status_text {
        out.push_str(&format!("     Status: \"{s}\"\n"));
    }
    if st.n_restarts > 0 {
        out.push_str(&format!("   Restarts: {}\n", st.n_restarts));
    }
    if let Some(cg) = &st.cgroup {
        out.push_str(&format!("     CGroup: {cg}\n"));
    }
    if !log.is_empty() {
        out.push('\n');
        for l in log {
            out.push_str(l.trim_end_matches('\n'));
            out.push('\n');
        }
    }
    out
}

/// The `systemctl list-units` table.
pub fn render_list(units: &[UnitStatus]) -> String {
    let w = |f: &dyn Fn(&UnitStatus) -> usize, min: usize| {
        units.iter().map(f).max().unwrap_or(0).max(min)
    };
    let wn = w(&|u| u.name.len(), 4);
    let wl = w(&|u| u.load_state.len(), 4);
    let wa = w(&|u| u.active_state.as_str().len(), 6);
    let ws = w(&|u| u.sub_state.len(), 3);
    let mut out = format!(
        "  {:wn$} {:wl$} {:wa$} {:ws$} DESCRIPTION\n",
        "UNIT", "LOAD", "ACTIVE", "SUB"
    );
    for u in units {
        let mark = if u.active_state == ActiveState::Failed || u.load_state != "loaded" {
            "●"
        } else {
            " "
        };
        out.push_str(
            format!(
                "{mark} {:wn$} {:wl$} {:wa$} {:ws$} {}",
                u.name,
                u.load_state,
                u.active_state.as_str(),
                u.sub_state,
                u.description
            )
            .trim_end(),
        );
        out.push('\n');
    }
    out.push_str(&format!("\n{} loaded units listed.\n", units.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> UnitStatus {
        UnitStatus {
            name: "kos-dns.container".into(),
            description: "KOS DNS".into(),
            load_state: "loaded",
            load_error: None,
            fragment: Some("/usr/lib/kos/units/kos-dns.container".into()),
            dropins: vec![
                "/etc/kos/units/kos-dns.container.d/10-a.conf".into(),
                "/etc/kos/units/kos-dns.container.d/20-b.conf".into(),
            ],
            file_state: "enabled",
            preset: "enabled",
            active_state: ActiveState::Active,
            sub_state: "running",
            result: UnitResult::Success,
            since: Some(UNIX_EPOCH + Duration::from_secs(1_796_028_667)),
            main_pid: Some(4242),
            last_main: None,
            status_text: Some("serving 3 networks".into()),
            cgroup: None,
            job: None,
            n_restarts: 0,
        }
    }

    fn now_of(s: &UnitStatus) -> SystemTime {
        s.since.unwrap()
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(UNIX_EPOCH), "Thu 1970-01-01 00:00:00 UTC");
        assert_eq!(
            format_timestamp(UNIX_EPOCH + Duration::from_secs(1_796_028_667)),
            "Mon 2026-11-30 08:51:07 UTC"
        );
        assert_eq!(
            format_timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "Tue 2000-02-29 00:00:00 UTC"
        );
        assert_eq!(format_relative(Duration::from_millis(3_200)), "3s ago");
        assert_eq!(format_relative(Duration::from_secs(65)), "1min 5s ago");
        assert_eq!(format_relative(Duration::from_secs(7_380)), "2h 3min ago");
        assert_eq!(format_relative(Duration::from_millis(250)), "250ms ago");
    }

    #[test]
    fn status_reads_like_systemctl() {
        let s = st();
        let now = s.since.unwrap() + Duration::from_secs(3);
        let text = render_status(&s, now, &["line one".into(), "line two\n".into()]);
        assert_eq!(
            text,
            "● kos-dns.container - KOS DNS
     Loaded: loaded (/usr/lib/kos/units/kos-dns.container; enabled; preset: enabled)
    Drop-In: /etc/kos/units/kos-dns.container.d
             └─10-a.conf, 20-b.conf
     Active: active (running) since Mon 2026-11-30 08:51:07 UTC; 3s ago
   Main PID: 4242
     Status: \"serving 3 networks\"

line one
line two
"
        );
    }

    #[test]
    fn failed_and_list() {
        let mut s = st();
        s.active_state = ActiveState::Failed;
        s.sub_state = "failed";
        s.result = UnitResult::ExitCode;
        s.main_pid = None;
        s.last_main = Some((4242, ExitStatus::Exited(1)));
        s.status_text = None;
        s.dropins.clear();
        let text = render_status(&s, s.since.unwrap(), &[]);
        assert!(text.starts_with("× kos-dns.container - KOS DNS\n"));
        assert!(text.contains("     Active: failed (failed) (Result: exit-code) since Mon 2026-11-30 08:51:07 UTC; 0ms ago\n"));
        assert!(text.contains("   Main PID: 4242 (code=exited, status=1/FAILURE)\n"));
        let mut gone = st();
        gone.load_state = "not-found";
        gone.fragment = None;
        assert!(render_status(&gone, now_of(&gone), &[])
            .contains("     Loaded: not-found (Reason: Unit kos-dns.container not found.)\n"));
        let list = render_list(&[st(), s]);
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(
            lines[0],
            "  UNIT              LOAD   ACTIVE SUB     DESCRIPTION"
        );
        assert_eq!(
            lines[1],
            "  kos-dns.container loaded active running KOS DNS"
        );
        assert_eq!(
            lines[2],
            "● kos-dns.container loaded failed failed  KOS DNS"
        );
        assert_eq!(lines[4], "2 loaded units listed.");
    }
}
