//! Image config -> what the runtime spec needs: process args, env, cwd and
//! user (names resolved against the image's own /etc/passwd and /etc/group,
//! read inside the rootfs), plus ports, volumes, labels and stop signal.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::ImageConfig;
use crate::unpack::safe_path::Root;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// /etc/passwd and /etc/group bigger than this are not an account database.
const MAX_ACCOUNT_FILE: u64 = 4 << 20;

/// A port the image declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub struct ExposedPort {
    pub port: u16,
    pub protocol: String,
}

/// Settings for a container of this image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub exposed_ports: Vec<ExposedPort>,
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Signal number to stop the container with (SIGTERM when the image names none).
    pub stop_signal: i32,
}

/// What a user asked for on top of the image (`docker run` style).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces the image's entrypoint, and drops its cmd unless `cmd` is given too.
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=value` entries that replace image entries with the same key.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
}

impl RuntimeConfig {
    /// The OCI runtime spec `process` object for these settings.
    pub fn process_json(&self) -> serde_json::Value {
        serde_json::json!({
            "args": self.args,
            "env": self.env,
            "cwd": self.cwd,
            "user": {"uid": self.uid, "gid": self.gid, "additionalGids": self.additional_gids},
        })
    }
}

/// Builds the runtime settings of `config` for a container whose root
/// filesystem is at `rootfs`.
pub fn runtime_config(
    config: &ImageConfig,
    rootfs: &Path,
    ov: &Overrides,
) -> Result<RuntimeConfig> {
    let rc = config.config.clone().unwrap_or_default();
    let (entrypoint, cmd) = match (&ov.entrypoint, &ov.cmd) {
        (Some(e), c) => (e.clone(), c.clone().unwrap_or_default()),
        (None, Some(c)) => (rc.entrypoint.clone().unwrap_or_default(), c.clone()),
        (None, None) => (
            rc.entrypoint.clone().unwrap_or_default(),
            rc.cmd.clone().unwrap_or_default(),
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::InvalidJson {
            what: "image config".into(),
            reason: "no entrypoint or cmd, and none given".into(),
        });
    }

    let user_spec = ov.user.clone().or(rc.user.clone()).unwrap_or_default();
    let accounts = Accounts::read(rootfs)?;
    let user = accounts.resolve(&user_spec)?;

    let mut env = merge_env(rc.env.clone().unwrap_or_default(), &ov.env);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }

    let cwd = ov
        .working_dir
        .clone()
        .or(rc.working_dir.clone())
        .unwrap_or_default();
    let cwd = if cwd.is_empty() {
        "/".to_string()
    } else if cwd.starts_with('/') {
        cwd
    } else {
        format!("/{cwd}")
    };

    let mut exposed_ports = Vec::new();
    for key in rc.exposed_ports.clone().unwrap_or_default().keys() {
        exposed_ports.push(parse_port(key)?);
    }
    exposed_ports.sort();
    let volumes = rc.volumes.clone().unwrap_or_default().into_keys().collect();
    let stop_signal = match &rc.stop_signal {
        None => libc::SIGTERM,
        Some(s) => parse_signal(s)?,
    };
    Ok(RuntimeConfig {
        args,
        env,
        cwd,
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.additional_gids,
        exposed_ports,
        volumes,
        labels: rc.labels.clone().unwrap_or_default(),
        stop_signal,
    })
}

fn merge_env(mut base: Vec<String>, over: &[String]) -> Vec<String> {
    for o in over {
        let key = o.split('=').next().unwrap_or(o);
        base.retain(|b| b.split('=').next() != Some(key));
        base.push(o.clone());
    }
    base
}

fn parse_port(key: &str) -> Result<ExposedPort> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let bad = || Error::InvalidJson {
        what: "image config".into(),
        reason: format!("exposed port {key:?} is not port[/tcp|udp|sctp]"),
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    Ok(ExposedPort {
        port,
        protocol: proto.to_string(),
    })
}

/// Parses `SIGTERM`, `TERM`, `sigkill` or `15`.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "PWR" => libc::SIGPWR,
        "WINCH" => libc::SIGWINCH,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "ALRM" => libc::SIGALRM,
        _ => {
            if let Some(rt) = name
                .strip_prefix("RTMIN+")
                .and_then(|n| n.parse::<i32>().ok())
            {
                libc::SIGRTMIN() + rt
            } else {
                return Err(Error::InvalidJson {
                    what: "image config".into(),
                    reason: format!("unknown stop signal {s:?}"),
                });
            }
        }
    };
    Ok(n)
}

struct User {
    uid: u32,
    gid: u32,
    additional_gids: Vec<u32>,
    home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

struct Accounts {
    users: Vec<PasswdEntry>,
    groups: Vec<GroupEntry>,
}

impl Accounts {
    /// Reads the account files inside `rootfs`; missing files are empty.
    fn read(rootfs: &Path) -> Result<Self> {
        let root = Root::open(rootfs).map_err(|e| Error::path("opening rootfs", rootfs, e))?;
        let passwd = read_in_root(&root, "etc/passwd")?;
        let group = read_in_root(&root, "etc/group")?;
        let users = passwd
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                if f.len() < 7 {
                    return None;
                }
                Some(PasswdEntry {
                    name: f[0].to_string(),
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                    home: f[5].to_string(),
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                if f.len() < 4 {
                    return None;
                }
                Some(GroupEntry {
                    name: f[0].to_string(),
                    gid: f[2].parse().ok()?,
                    members: f[3]
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            })
            .collect();
        Ok(Accounts { users, groups })
    }

    fn resolve(&self, spec: &str) -> Result<User> {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let u = if u.is_empty() { "0" } else { u };
        let entry = match u.parse::<u32>() {
            Ok(uid) => self.users.iter().find(|p| p.uid == uid),
            Err(_) => Some(
                self.users
                    .iter()
                    .find(|p| p.name == u)
                    .ok_or_else(|| Error::UnknownUser(u.to_string()))?,
            ),
        };
        let uid = match entry {
            Some(e) => e.uid,
            None => u.parse().map_err(|_| Error::UnknownUser(u.to_string()))?,
        };
        let mut gid = entry.map(|e| e.gid).unwrap_or(0);
        let mut additional = Vec::new();
        match g {
            Some(g) if !g.is_empty() => {
                gid = match g.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => {
                        self.groups
                            .iter()
                            .find(|e| e.name == g)
                            .ok_or_else(|| Error::UnknownGroup(g.to_string()))?
                            .gid
                    }
                };
            }
            _ => {
                // Supplementary groups come with a user name, as login would give them.
                if let Some(e) = entry {
                    for grp in &self.groups {
                        if grp.members.contains(&e.name)
                            && grp.gid != gid
                            && !additional.contains(&grp.gid)
                        {
                            additional.push(grp.gid);
                        }
                    }
                }
            }
        }
        Ok(User {
            uid,
            gid,
            additional_gids: additional,
            home: entry
                .map(|e| e.home.clone())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "/".into()),
        })
    }
}

fn read_in_root(root: &Root, rel: &str) -> Result<String> {
    let fd = match root.open_in(Path::new(rel), libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(String::new()),
        Err(e) => return Err(Error::path("opening", root.path().join(rel), e)),
    };
    let mut s = String::new();
    std::fs::File::from(fd)
        .take(MAX_ACCOUNT_FILE)
        .read_to_string(&mut s)
        .map_err(|e| Error::path("reading", root.path().join(rel), e))?;
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::RunConfig;

    /// Removes the test rootfs even when an assertion fails.
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    impl std::ops::Deref for Gone {
        type Target = std::path::Path;
        fn deref(&self) -> &std::path::Path {
            &self.0
        }
    }

    fn rootfs(tag: &str) -> Gone {
        let d = std::env::temp_dir().join(format!("kos-image-cfg-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(
            d.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.join("etc/group"),
            "root:x:0:\napp:x:1001:\nwheel:x:10:app,root\naudio:x:29:app\n",
        )
        .unwrap();
        Gone(d)
    }

    fn cfg(rc: RunConfig) -> ImageConfig {
        ImageConfig {
            config: Some(rc),
            ..Default::default()
        }
    }

    #[test]
    fn resolves_users_and_merges_everything() {
        let root = rootfs("full");
        let mut ports = BTreeMap::new();
        ports.insert("80/tcp".to_string(), serde_json::json!({}));
        ports.insert("53/udp".to_string(), serde_json::json!({}));
        let mut vols = BTreeMap::new();
        vols.insert("/data".to_string(), serde_json::json!({}));
        let c = cfg(RunConfig {
            user: Some("app".into()),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec!["echo hi".into()]),
            env: Some(vec!["A=1".into(), "B=2".into()]),
            working_dir: Some("srv".into()),
            exposed_ports: Some(ports),
            volumes: Some(vols),
            stop_signal: Some("SIGQUIT".into()),
            labels: Some([("k".to_string(), "v".to_string())].into()),
        });
        let rt = runtime_config(
            &c,
            &root,
            &Overrides {
                env: vec!["B=3".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(rt.args, vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!((rt.uid, rt.gid), (1000, 1001));
        assert_eq!(rt.additional_gids, vec![10, 29]);
        assert!(rt.env.contains(&"B=3".to_string()) && !rt.env.contains(&"B=2".to_string()));
        assert!(rt.env.iter().any(|e| e.starts_with("PATH=")));
        assert!(rt.env.contains(&"HOME=/home/app".to_string()));
        assert_eq!(rt.cwd, "/srv");
        assert_eq!(
            rt.exposed_ports[0],
            ExposedPort {
                port: 53,
                protocol: "udp".into()
            }
        );
        assert_eq!(rt.volumes, vec!["/data"]);
        assert_eq!(rt.stop_signal, libc::SIGQUIT);
        assert_eq!(rt.labels["k"], "v");
        assert_eq!(rt.process_json()["user"]["uid"], 1000);

        // Overriding the entrypoint drops the image's cmd.
        let ov = Overrides {
            entrypoint: Some(vec!["/bin/true".into()]),
            user: Some("1000:wheel".into()),
            ..Default::default()
        };
        let rt = runtime_config(&c, &root, &ov).unwrap();
        assert_eq!(rt.args, vec!["/bin/true"]);
        assert_eq!((rt.uid, rt.gid), (1000, 10));
        let ov = Overrides {
            user: Some("4242".into()),
            ..Default::default()
        };
        let rt = runtime_config(&c, &root, &ov).unwrap();
        assert_eq!(
            (rt.uid, rt.gid, rt.env.contains(&"HOME=/".to_string())),
            (4242, 0, true)
        );
        let ov = Overrides {
            user: Some("nobody".into()),
            ..Default::default()
        };
        assert!(matches!(
            runtime_config(&c, &root, &ov),
            Err(Error::UnknownUser(_))
        ));
        let ov = Overrides {
            user: Some("app:nogroup".into()),
            ..Default::default()
        };
        assert!(matches!(
            runtime_config(&c, &root, &ov),
            Err(Error::UnknownGroup(_))
        ));
    }

    #[test]
    fn passwd_is_read_inside_the_rootfs() {
        let root = rootfs("escape");
        // An image whose /etc is a symlink to the host's /etc must not see the host's users.
        std::fs::remove_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        let c = cfg(RunConfig {
            cmd: Some(vec!["x".into()]),
            user: Some("root".into()),
            ..Default::default()
        });
        let r = runtime_config(&c, &root, &Overrides::default());
        // Resolved inside the rootfs the link points at itself: an error, never the host's root.
        assert!(matches!(r, Err(Error::PathIo { .. })), "{r:?}");
        std::fs::remove_file(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../../../../kos-nowhere/etc", root.join("etc")).unwrap();
        let r = runtime_config(&c, &root, &Overrides::default());
        assert!(matches!(r, Err(Error::UnknownUser(_))), "{r:?}");
        assert!(
            parse_signal("15").unwrap() == libc::SIGTERM
                && parse_signal("kill").unwrap() == libc::SIGKILL
        );
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_port("80/xyz").is_err() && parse_port("http").is_err());
    }
}
