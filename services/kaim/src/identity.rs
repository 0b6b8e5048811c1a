//! Who is on the other end of a socket: SO_PEERCRED gives the pid and uid; the pid's
//! /proc/PID/cgroup tells which container it runs in.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use serde::Serialize;

/// Largest /proc/PID/cgroup read (a few lines per hierarchy in practice).
const MAX_CGROUP_FILE: u64 = 64 * 1024;

/// The client as the policy and the audit log see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    /// "container" for a grant socket, "user" for the per-user socket.
    pub kind: &'static str,
    /// The grant (container sockets) or "uid:N" (user socket).
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// False when the peer is not the container the socket was granted to.
    pub verified: bool,
}

/// One line of /proc/PID/cgroup: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    pub controllers: String,
    pub path: String,
}

pub fn parse_cgroup_file(text: &str) -> Vec<CgroupLine> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let controllers = it.next()?.to_string();
            let path = it.next()?.to_string();
            Some(CgroupLine { controllers, path })
        })
        .collect()
}

pub fn read_cgroups(pid: i32) -> std::io::Result<Vec<CgroupLine>> {
    let mut text = String::new();
    std::fs::File::open(format!("/proc/{pid}/cgroup"))?
        .take(MAX_CGROUP_FILE)
        .read_to_string(&mut text)?;
    Ok(parse_cgroup_file(&text))
}

/// SO_PEERPIDFD (Linux 6.5) where the generic socket option numbers apply.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "x86"
))]
const SO_PEERPIDFD: libc::c_int = 77;

/// What the kernel says about the peer's process beyond its pid.
#[derive(Debug)]
pub enum PeerProcess {
    /// A pidfd of the process that connected.
    Pidfd(OwnedFd),
    /// The process that connected is gone: its pid may already name another process.
    Gone,
    /// The kernel (or this architecture) cannot say.
    Unknown,
}

/// The connecting process as a pidfd, taken by the kernel at connect time.
pub fn peer_process(sock: RawFd) -> PeerProcess {
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "x86"
    ))]
    {
        let mut fd: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writing one c_int into fd.
        let r = unsafe {
            libc::getsockopt(
                sock,
                libc::SOL_SOCKET,
                SO_PEERPIDFD,
                (&mut fd as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r == 0 && fd >= 0 {
            // SAFETY: the kernel gave us this new descriptor.
            return PeerProcess::Pidfd(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return PeerProcess::Gone;
        }
    }
    let _ = sock;
    PeerProcess::Unknown
}

/// Whether the process behind `pidfd` has not been reaped: then its pid has not been reused,
/// and what was read under /proc/PID was about it.
pub fn pidfd_alive(pidfd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 only checks; no info struct is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
}

/// How a grant recognises its container among a peer's cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMatch {
    pub container_id: String,
    /// The container's cgroup path (as in /proc/PID/cgroup); when absent, a path component
    /// equal to the id, or a systemd scope `*-ID.scope`, is looked for.
    pub cgroup: Option<String>,
}

impl ContainerMatch {
    pub fn matches(&self, lines: &[CgroupLine]) -> bool {
        if self.container_id.is_empty() {
            return false;
        }
        lines.iter().any(|l| match &self.cgroup {
            Some(cg) => {
                let cg = cg.trim_end_matches('/');
                !cg.is_empty()
                    && (l.path == cg
                        || l.path
                            .strip_prefix(cg)
                            .is_some_and(|rest| rest.starts_with('/')))
            }
            None => {
                let scope = format!("-{}.scope", self.container_id);
                l.path
                    .split('/')
                    .any(|c| c == self.container_id || c.ends_with(&scope))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "9:name=systemd:/\n8:pids:/kos/abc123\n5:devices:/kos/abc123/sub\n0::/\n";

    fn m(id: &str, cg: Option<&str>) -> ContainerMatch {
        ContainerMatch {
            container_id: id.into(),
            cgroup: cg.map(str::to_string),
        }
    }

    #[test]
    fn parses_lines() {
        let l = parse_cgroup_file(HYBRID);
        assert_eq!(l.len(), 4);
        assert_eq!(l[1].controllers, "pids");
        assert_eq!(l[1].path, "/kos/abc123");
        assert_eq!(l[3].controllers, "");
    }

    #[test]
    fn matches_by_path_and_below() {
        let l = parse_cgroup_file(HYBRID);
        assert!(m("abc123", Some("/kos/abc123")).matches(&l));
        assert!(m("abc123", Some("/kos/abc123/")).matches(&l));
        assert!(!m("abc123", Some("/kos/abc12")).matches(&l));
        assert!(!m("abc123", Some("/")).matches(&l));
    }

    #[test]
    fn peer_pidfd_of_a_live_and_a_gone_peer() {
        use std::os::unix::net::{UnixListener, UnixStream};
        let dir = std::env::temp_dir().join(format!("kaim-pidfd-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).expect("bind");
        let _c = UnixStream::connect(&path).expect("connect");
        let (s, _) = l.accept().expect("accept");
        match peer_process(s.as_raw_fd()) {
            PeerProcess::Pidfd(fd) => assert!(pidfd_alive(&fd)),
            PeerProcess::Unknown => {}
            PeerProcess::Gone => panic!("this process is gone?"),
        }
        // A peer that exits and is reaped.
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "exec 3<>/dev/null; python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"{}\")'",
                path.display()
            ))
            .spawn()
            .expect("child");
        let (s2, _) = l.accept().expect("accept child");
        let pidfd = peer_process(s2.as_raw_fd());
        child.wait().expect("reap");
        match pidfd {
            PeerProcess::Pidfd(fd) => assert!(!pidfd_alive(&fd), "reaped peer reported alive"),
            PeerProcess::Gone | PeerProcess::Unknown => {}
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn matches_by_id_component() {
        let l = parse_cgroup_file(HYBRID);
        assert!(m("abc123", None).matches(&l));
        assert!(!m("abc", None).matches(&l));
        assert!(!m("", None).matches(&l));
        let scope = parse_cgroup_file("0::/system.slice/kos-ffee.scope\n");
        assert!(m("ffee", None).matches(&scope));
    }
}
