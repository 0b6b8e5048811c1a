//! The rootfs mounts containerd hands over in CreateTaskRequest (overlay, bind), mounted at
//! BUNDLE/rootfs as containerd's mount.All does, and unmounted on delete.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Splits fstab-style options into mount flags, propagation flags and the data string.
fn parse_options(opts: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut prop = MsFlags::empty();
    let mut data = Vec::new();
    for o in opts {
        let (clear, f) = match o.as_str() {
            "ro" | "rdonly" => (false, MsFlags::MS_RDONLY),
            "rw" => (true, MsFlags::MS_RDONLY),
            "bind" => (false, MsFlags::MS_BIND),
            "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
            "nosuid" => (false, MsFlags::MS_NOSUID),
            "suid" => (true, MsFlags::MS_NOSUID),
            "nodev" => (false, MsFlags::MS_NODEV),
            "dev" => (true, MsFlags::MS_NODEV),
            "noexec" => (false, MsFlags::MS_NOEXEC),
            "exec" => (true, MsFlags::MS_NOEXEC),
            "sync" => (false, MsFlags::MS_SYNCHRONOUS),
            "async" => (true, MsFlags::MS_SYNCHRONOUS),
            "noatime" => (false, MsFlags::MS_NOATIME),
            "atime" => (true, MsFlags::MS_NOATIME),
            "nodiratime" => (false, MsFlags::MS_NODIRATIME),
            "diratime" => (true, MsFlags::MS_NODIRATIME),
            "relatime" => (false, MsFlags::MS_RELATIME),
            "norelatime" => (true, MsFlags::MS_RELATIME),
            "strictatime" => (false, MsFlags::MS_STRICTATIME),
            "remount" => (false, MsFlags::MS_REMOUNT),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                prop |= match o.as_str() {
                    "private" => MsFlags::MS_PRIVATE,
                    "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                    "shared" => MsFlags::MS_SHARED,
                    "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
                };
                continue;
            }
            _ => {
                data.push(o.as_str());
                continue;
            }
        };
        if clear {
            flags &= !f;
        } else {
            flags |= f;
        }
    }
    (flags, prop, data.join(","))
}

/// Mounts every entry at `target` in order; on failure unmounts what it mounted.
pub fn mount_all(mounts: &[MountSpec], target: &Path) -> Result<(), String> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..i {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one(m: &MountSpec, target: &Path) -> Result<(), String> {
    let (flags, prop, data) = parse_options(&m.options);
    let data_opt = (!data.is_empty()).then_some(data.as_str());
    let err = |e: nix::Error| {
        format!(
            "mount {} ({}) on {}: {e}",
            m.source,
            m.kind,
            target.display()
        )
    };
    mount(
        Some(m.source.as_str()),
        target,
        Some(m.kind.as_str()),
        flags,
        data_opt,
    )
    .map_err(err)?;
    // A bind mount ignores MS_RDONLY until remounted.
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            flags | MsFlags::MS_REMOUNT,
            None::<&str>,
        )
        .map_err(err)?;
    }
    if !prop.is_empty() {
        mount(None::<&str>, target, None::<&str>, prop, None::<&str>).map_err(err)?;
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (nothing mounted is fine).
pub fn unmount_all(target: &Path) {
    for _ in 0..32 {
        if umount2(target, MntFlags::MNT_DETACH).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let o: Vec<String> = [
            "rbind",
            "ro",
            "nosuid",
            "lowerdir=/a:/b",
            "upperdir=/u",
            "rprivate",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (f, p, d) = parse_options(&o);
        assert!(f.contains(
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        ));
        assert_eq!(p, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(d, "lowerdir=/a:/b,upperdir=/u");
        let (f, _, _) = parse_options(&["ro".to_string(), "rw".to_string()]);
        assert!(!f.contains(MsFlags::MS_RDONLY));
    }
}
