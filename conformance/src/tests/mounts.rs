//! Root filesystem and mounts (config.md "Root", "Mounts"; config-linux.md "Devices",
//! "Default Devices", "Masked Paths", "Readonly Paths", "Sysctl", "Rootfs Mount
//! Propagation"; runtime-linux.md "Dev symbolic links").

use std::fs;
use std::os::unix::fs::symlink;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use serde_json::json;

use super::{departs, t, TestCase};
use crate::harness::report::Departure;

const RUNC_ROOTFS_SLAVE: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "config-linux.md Rootfs Mount Propagation: \"slave: the rootfs mount receives propagation events \
             from the host\" (runc 1.1 applies slave to / only, then makes the mount holding the rootfs \
             private, so a rootfs on a shared mount receives nothing)",
}];

const RUNC_ROOTFS_SHARED: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "config-linux.md Rootfs Mount Propagation: \"shared: the rootfs mount belongs to a new peer \
             group\" (runc 1.1 leaves the container's / private)",
}];
use crate::harness::ctx::Ctx;
use crate::harness::host::{mounts_under, HostMount};
use crate::harness::parse::{get, mount_at, mountinfo, section, sections};

pub fn tests() -> Vec<TestCase> {
    vec![
        t("mounts::readonly_root", readonly_root),
        t("mounts::bind", bind),
        t("mounts::bind_is_not_recursive", bind_is_not_recursive),
        t("mounts::rbind_is_recursive", rbind_is_recursive),
        t("mounts::ro_bind", ro_bind),
        t("mounts::tmpfs_size_mode", tmpfs_size_mode),
        t("mounts::proc", |c| fs_at(c, "/proc", "proc")),
        t("mounts::sysfs", |c| fs_at(c, "/sys", "sysfs")),
        t("mounts::mqueue", |c| fs_at(c, "/dev/mqueue", "mqueue")),
        t("mounts::dev_shm", |c| fs_at(c, "/dev/shm", "tmpfs")),
        t("mounts::sysfs_ro_option", sysfs_ro_option),
        t("mounts::bind_file", bind_file),
        t(
            "mounts::bind_source_relative_to_bundle",
            bind_source_relative_to_bundle,
        ),
        t(
            "mounts::missing_destination_created",
            missing_destination_created,
        ),
        t("mounts::devpts", devpts),
        t("mounts::cgroup", cgroup_mount),
        t("mounts::mount_options_applied", mount_options_applied),
        t("mounts::propagation_rprivate", |c| {
            propagation(c, "rprivate")
        }),
        t("mounts::propagation_rshared", |c| propagation(c, "rshared")),
        t("mounts::propagation_rslave", |c| propagation(c, "rslave")),
        t("mounts::rootfs_propagation_private", |c| {
            rootfs_propagation(c, "private")
        }),
        departs(
            "mounts::rootfs_propagation_slave",
            |c| rootfs_propagation(c, "slave"),
            RUNC_ROOTFS_SLAVE,
        ),
        departs(
            "mounts::rootfs_propagation_shared",
            |c| rootfs_propagation(c, "shared"),
            RUNC_ROOTFS_SHARED,
        ),
        t(
            "mounts::symlink_dest_dir_stays_inside",
            symlink_dest_dir_stays_inside,
        ),
        t(
            "mounts::symlink_dest_file_stays_inside",
            symlink_dest_file_stays_inside,
        ),
        t("mounts::default_devices", default_devices),
        t("mounts::dev_symlinks", dev_symlinks),
        t("mounts::linux_devices", linux_devices),
        t(
            "mounts::device_path_dotdot_stays_inside",
            device_path_dotdot_stays_inside,
        ),
        t("mounts::masked_paths", masked_paths),
        t("mounts::readonly_paths", readonly_paths),
        t("mounts::sysctl_net_ip_forward", |c| {
            sysctl(c, "net.ipv4.ip_forward", "1")
        }),
        t("mounts::sysctl_kernel_shm_rmid_forced", |c| {
            sysctl(c, "kernel.shm_rmid_forced", "1")
        }),
        t(
            "mounts::sysctl_host_wide_untouched",
            sysctl_host_wide_untouched,
        ),
        t("mounts::no_pivot", no_pivot),
    ]
}

fn readonly_root(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["sh", "-c", "touch /kos-ro-test; echo rc=$?"])?;
    b.config["root"]["readonly"] = json!(true);
    let (out, _c) = ctx.run(&b)?;
    out.expect_success()?;
    ensure!(
        out.stdout.contains("rc=1"),
        "write to a readonly root succeeded: {:?}",
        out.stdout
    );
    ensure!(
        out.stderr.contains("Read-only file system"),
        "write did not fail with EROFS: {:?}",
        out.stderr
    );
    ensure!(
        !b.in_rootfs("/kos-ro-test").exists(),
        "file was created in the readonly root"
    );
    Ok(())
}

fn bind(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    fs::write(dir.join("data"), "kos-bind-content\n")?;
    let mut b = ctx.bundle(&["sh", "-c", "cat /mnt/b/data; echo new > /mnt/b/written"])?;
    b.bind(&dir, "/mnt/b", &[]);
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.contains("kos-bind-content"),
        "bind-mounted file not readable: {out:?}"
    );
    ensure!(
        fs::read_to_string(dir.join("written")).is_ok_and(|s| s == "new\n"),
        "write through bind mount not seen on host"
    );
    Ok(())
}

fn bind_file(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    fs::write(dir.join("one"), "kos-single-file\n")?;
    let mut b = ctx.bundle(&["sh", "-c", "cat /etc/kos-bound; stat -c %F /etc/kos-bound"])?;
    b.bind(&dir.join("one"), "/etc/kos-bound", &[]);
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.contains("kos-single-file") && out.contains("regular file"),
        "file bind mount: {out:?}"
    );
    Ok(())
}

/// config.md Mounts: "Path values for bind mounts are either absolute or relative to the
/// bundle."
fn bind_source_relative_to_bundle(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["cat", "/mnt/rel/data"])?;
    fs::create_dir(b.dir.join("kosdata"))?;
    fs::write(b.dir.join("kosdata/data"), "kos-relative-source\n")?;
    b.add_mount(json!({"destination": "/mnt/rel", "type": "bind", "source": "kosdata", "options": ["bind"]}));
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.contains("kos-relative-source"),
        "relative bind source not resolved in the bundle: {out:?}"
    );
    Ok(())
}

fn missing_destination_created(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "echo x > /kos/deep/dir/f && stat -c %F /kos/deep/dir",
    ])?;
    b.add_mount(json!({"destination": "/kos/deep/dir", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}));
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.trim() == "directory",
        "missing mount destination not created as a directory: {out:?}"
    );
    ensure!(
        !b.in_rootfs("/kos/deep/dir/f").exists(),
        "the write went to the rootfs, not the tmpfs"
    );
    Ok(())
}

/// A host dir with a tmpfs mounted on its `sub`, holding a marker file.
fn host_tree_with_submount(ctx: &Ctx) -> Result<(std::path::PathBuf, HostMount)> {
    let dir = ctx.mkdir("host")?;
    let m = HostMount::tmpfs(&dir.join("sub"))?;
    fs::write(dir.join("sub/marker"), "kos-submount\n")?;
    Ok((dir, m))
}

fn bind_is_not_recursive(ctx: &Ctx) -> Result<()> {
    let (dir, _m) = host_tree_with_submount(ctx)?;
    let mut b = ctx.bundle(&["sh", "-c", "cat /mnt/b/sub/marker; echo done"])?;
    b.bind(&dir, "/mnt/b", &[]);
    let out = ctx.run_ok(&b)?;
    ensure!(
        !out.contains("kos-submount"),
        "a plain bind carried the submount along: {out:?}"
    );
    Ok(())
}

fn rbind_is_recursive(ctx: &Ctx) -> Result<()> {
    let (dir, _m) = host_tree_with_submount(ctx)?;
    let mut b = ctx.bundle(&["cat", "/mnt/b/sub/marker"])?;
    b.add_mount(json!({"destination": "/mnt/b", "type": "bind",
        "source": dir.to_string_lossy(), "options": ["rbind"]}));
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.contains("kos-submount"),
        "rbind did not carry the submount: {out:?}"
    );
    Ok(())
}

fn ro_bind(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    fs::write(dir.join("data"), "orig\n")?;
    let mut b = ctx.bundle(&["sh", "-c", "echo changed > /mnt/ro/data; echo rc=$?"])?;
    b.bind(&dir, "/mnt/ro", &["ro"]);
    let (out, _c) = ctx.run(&b)?;
    out.expect_success()?;
    ensure!(
        out.stderr.contains("Read-only file system"),
        "write to ro bind did not fail with EROFS: {}",
        out.describe()
    );
    ensure!(
        fs::read_to_string(dir.join("data"))? == "orig\n",
        "host file changed through a ro bind"
    );
    Ok(())
}

fn tmpfs_size_mode(ctx: &Ctx) -> Result<()> {
    let script = [
        section("stat", "stat -c %a /kt"),
        section("mi", "cat /proc/self/mountinfo"),
    ]
    .concat();
    let mut b = ctx.bundle(&["sh", "-c", &script])?;
    b.add_mount(
        json!({"destination": "/kt", "type": "tmpfs", "source": "tmpfs",
        "options": ["size=1m", "mode=1770", "nodev"]}),
    );
    let s = sections(&ctx.run_ok(&b)?);
    ensure!(
        get(&s, "stat")?.trim() == "1770",
        "tmpfs mode is {:?}, want 1770",
        get(&s, "stat")?
    );
    let mi = mountinfo(get(&s, "mi")?);
    let m = mount_at(&mi, "/kt").ok_or_else(|| anyhow!("no mount at /kt"))?;
    ensure!(m.fstype == "tmpfs", "/kt is {}", m.fstype);
    ensure!(
        m.has_super_opt("size=1024k"),
        "tmpfs size option not applied: {:?}",
        m.super_opts
    );
    ensure!(m.has_opt("nodev"), "nodev not applied: {:?}", m.mount_opts);
    Ok(())
}

fn fs_at(ctx: &Ctx, point: &str, fstype: &str) -> Result<()> {
    let b = ctx.bundle(&["cat", "/proc/self/mountinfo"])?;
    let mi = mountinfo(&ctx.run_ok(&b)?);
    let m = mount_at(&mi, point).ok_or_else(|| anyhow!("nothing mounted at {point}"))?;
    ensure!(m.fstype == fstype, "{point} is {}, want {fstype}", m.fstype);
    Ok(())
}

fn sysfs_ro_option(ctx: &Ctx) -> Result<()> {
    let script = [
        section("mi", "cat /proc/self/mountinfo"),
        section("w", "touch /sys/kos; echo rc=$?"),
    ]
    .concat();
    let b = ctx.bundle(&["sh", "-c", &script])?;
    let s = sections(&ctx.run_ok(&b)?);
    let mi = mountinfo(get(&s, "mi")?);
    let m = mount_at(&mi, "/sys").ok_or_else(|| anyhow!("nothing mounted at /sys"))?;
    ensure!(
        m.has_opt("ro") && m.has_opt("nosuid") && m.has_opt("noexec"),
        "/sys options {:?}",
        m.mount_opts
    );
    ensure!(
        get(&s, "w")?.contains("rc=1"),
        "/sys is writable: {:?}",
        get(&s, "w")?
    );
    Ok(())
}

fn devpts(ctx: &Ctx) -> Result<()> {
    let script = [
        section("mi", "cat /proc/self/mountinfo"),
        section("ptmx", "ls /dev/pts/"),
    ]
    .concat();
    let b = ctx.bundle(&["sh", "-c", &script])?;
    let s = sections(&ctx.run_ok(&b)?);
    let mi = mountinfo(get(&s, "mi")?);
    let m = mount_at(&mi, "/dev/pts").ok_or_else(|| anyhow!("nothing mounted at /dev/pts"))?;
    ensure!(m.fstype == "devpts", "/dev/pts is {}", m.fstype);
    ensure!(
        m.has_super_opt("ptmxmode=666") || m.has_super_opt("ptmxmode=0666"),
        "ptmxmode not applied: {:?}",
        m.super_opts
    );
    ensure!(
        get(&s, "ptmx")?.contains("ptmx"),
        "a new devpts instance has no ptmx"
    );
    Ok(())
}

fn cgroup_mount(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["cat", "/proc/self/mountinfo"])?;
    b.add_mount(
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    );
    let mi = mountinfo(&ctx.run_ok(&b)?);
    let cg: Vec<_> = mi
        .iter()
        .filter(|m| {
            m.mount_point.starts_with("/sys/fs/cgroup")
                && (m.fstype == "cgroup" || m.fstype == "cgroup2")
        })
        .collect();
    ensure!(!cg.is_empty(), "no cgroup filesystem under /sys/fs/cgroup");
    ensure!(
        cg.iter().all(|m| m.has_opt("ro")),
        "cgroup mounts are not read-only: {cg:?}"
    );
    Ok(())
}

fn mount_options_applied(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["cat", "/proc/self/mountinfo"])?;
    b.bind(&dir, "/mnt/opts", &["nosuid", "nodev", "noexec", "ro"]);
    let mi = mountinfo(&ctx.run_ok(&b)?);
    let m = mount_at(&mi, "/mnt/opts").ok_or_else(|| anyhow!("nothing at /mnt/opts"))?;
    for o in ["nosuid", "nodev", "noexec", "ro"] {
        ensure!(
            m.has_opt(o),
            "bind option {o} not applied: {:?}",
            m.mount_opts
        );
    }
    Ok(())
}

/// A bind of a shared host mount with a propagation option shows the matching optional
/// fields in the container's mountinfo.
fn propagation(ctx: &Ctx, prop: &str) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let m = HostMount::tmpfs(&dir.join("shared"))?;
    m.make_shared()?;
    let mut b = ctx.bundle(&["cat", "/proc/self/mountinfo"])?;
    b.bind(&dir.join("shared"), "/mnt/p", &[prop]);
    let mi = mountinfo(&ctx.run_ok(&b)?);
    let mp = mount_at(&mi, "/mnt/p").ok_or_else(|| anyhow!("nothing at /mnt/p"))?;
    let ok = match prop {
        "rprivate" => !mp.is_shared() && !mp.is_slave(),
        "rshared" => mp.is_shared(),
        "rslave" => mp.is_slave() && !mp.is_shared(),
        _ => false,
    };
    ensure!(ok, "{prop} bind has propagation fields {:?}", mp.optional);
    Ok(())
}

/// The rootfs is made a shared mount on the host; after the container started, the host
/// mounts a tmpfs inside the rootfs. A `slave` root must receive it, a `private` one must
/// not, and a `shared` root is a new peer group that the host must not see mounts from.
fn rootfs_propagation(ctx: &Ctx, prop: &str) -> Result<()> {
    let script = [
        "echo ready; while [ ! -e /tmp/kos-go ]; do sleep 0.02; done; ",
        &section("late", "cat /mnt/late/marker"),
        &section("mi", "cat /proc/self/mountinfo"),
    ]
    .concat();
    let mut b = ctx.bundle(&["sh", "-c", &script])?;
    b.config["linux"]["rootfsPropagation"] = json!(prop);
    let rootfs = b.rootfs();
    let shared = HostMount::bind_self(&rootfs)?;
    shared.make_shared()?;
    let c = ctx.create(&b)?;
    c.start_ok()?;
    c.wait_output("ready", Duration::from_secs(10))?;
    let late = HostMount::tmpfs(&rootfs.join("mnt/late"))?;
    fs::write(rootfs.join("mnt/late/marker"), "kos-late\n")?;
    let host_mounts = mounts_under(&rootfs);
    fs::write(rootfs.join("tmp/kos-go"), "")?;
    c.wait_status("stopped", Duration::from_secs(10))?;
    drop(late);
    let s = sections(&c.output());
    let got_late = get(&s, "late")?.contains("kos-late");
    let mi = mountinfo(get(&s, "mi")?);
    let root = mount_at(&mi, "/").ok_or_else(|| anyhow!("no / in mountinfo"))?;
    match prop {
        "slave" => {
            ensure!(got_late, "a slave rootfs did not receive the host's mount");
            ensure!(
                root.is_slave(),
                "/ is not a slave mount: {:?}",
                root.optional
            );
        }
        "private" => {
            ensure!(!got_late, "a private rootfs received the host's mount");
            ensure!(
                !root.is_shared() && !root.is_slave(),
                "/ has propagation fields {:?}",
                root.optional
            );
        }
        _ => {
            ensure!(root.is_shared(), "/ is not shared: {:?}", root.optional);
            let leaked: Vec<_> = host_mounts
                .iter()
                .filter(|m| **m != rootfs && **m != rootfs.join("mnt/late"))
                .collect();
            ensure!(
                leaked.is_empty(),
                "container mounts propagated to the host: {leaked:?}"
            );
        }
    }
    Ok(())
}

/// A mount destination through a symlink pointing outside the rootfs must be resolved inside
/// the rootfs: creating the mount point must not create anything on the host.
fn symlink_dest_dir_stays_inside(ctx: &Ctx) -> Result<()> {
    let outside = ctx.mkdir("outside")?;
    let mut b = ctx.bundle(&["true"])?;
    symlink(&outside, b.in_rootfs("/evil"))?;
    b.add_mount(json!({"destination": "/evil/sub", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}));
    let (_out, _c) = ctx.run(&b)?;
    let entries: Vec<_> = fs::read_dir(&outside)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(
        entries.is_empty(),
        "the runtime followed /evil out of the rootfs and created {entries:?} on the host"
    );
    Ok(())
}

fn symlink_dest_file_stays_inside(ctx: &Ctx) -> Result<()> {
    let outside = ctx.mkdir("outside")?;
    let victim = outside.join("victim");
    fs::write(&victim, "host-original\n")?;
    let src = ctx.mkdir("src")?;
    fs::write(src.join("payload"), "kos-payload\n")?;
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "cat /evil/victim; echo overwritten > /evil/victim",
    ])?;
    symlink(&outside, b.in_rootfs("/evil"))?;
    b.bind(&src.join("payload"), "/evil/victim", &[]);
    b.bind(&src.join("payload"), "/evil/newfile", &[]);
    let (_out, _c) = ctx.run(&b)?;
    ensure!(
        fs::read_to_string(&victim)? == "host-original\n",
        "host file outside the rootfs was changed"
    );
    ensure!(
        !outside.join("newfile").exists(),
        "the runtime created a mount point file outside the rootfs"
    );
    Ok(())
}

fn default_devices(ctx: &Ctx) -> Result<()> {
    let script =
        "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T %a' /dev/$d; done; \
                  echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | od -An -tx1; \
                  head -c 8 /dev/urandom | wc -c; echo x > /dev/full; echo full-rc=$?";
    let b = ctx.bundle(&["sh", "-c", script])?;
    let (out, _c) = ctx.run(&b)?;
    out.expect_success()?;
    let o = &out.stdout;
    for (dev, mm) in [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ] {
        let line = o
            .lines()
            .find(|l| l.starts_with(&format!("/dev/{dev} ")))
            .ok_or_else(|| anyhow!("/dev/{dev} missing: {o:?} {:?}", out.stderr))?;
        ensure!(
            line.contains("character special"),
            "/dev/{dev} is not a char device: {line}"
        );
        ensure!(
            line.contains(&format!(" {mm} ")),
            "/dev/{dev} is not {mm}: {line}"
        );
        ensure!(line.ends_with(" 666"), "/dev/{dev} mode is not 666: {line}");
    }
    ensure!(o.contains("null-ok"), "cannot write /dev/null");
    ensure!(
        o.contains("00 00 00 00"),
        "/dev/zero does not read zeros: {o:?}"
    );
    ensure!(
        o.lines().any(|l| l.trim() == "8"),
        "/dev/urandom not readable: {o:?}"
    );
    ensure!(
        o.contains("full-rc=1") && out.stderr.contains("No space left"),
        "/dev/full does not fail with ENOSPC"
    );
    Ok(())
}

fn dev_symlinks(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&[
        "sh",
        "-c",
        "for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done; \
         [ -e /dev/ptmx ] && echo ptmx-exists",
    ])?;
    let out = ctx.run_ok(&b)?;
    for (l, want) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ensure!(
            out.lines().any(|x| x == format!("{l}={want}")),
            "/dev/{l} is not a symlink to {want}: {out:?}"
        );
    }
    // /dev/ptmx may be a bind mount or a symlink to pts/ptmx (config-linux.md Default Devices).
    let ptmx = out
        .lines()
        .find_map(|x| x.strip_prefix("ptmx="))
        .unwrap_or("");
    ensure!(
        ptmx.is_empty() || ptmx == "pts/ptmx" || ptmx == "/dev/pts/ptmx",
        "/dev/ptmx links to {ptmx:?}"
    );
    ensure!(
        out.contains("ptmx-exists"),
        "/dev/ptmx is missing or dangling: {out:?}"
    );
    Ok(())
}

fn linux_devices(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["sh", "-c", "stat -c '%n %F %t:%T %a %u %g' /dev/kosnull /dev/kosfifo; echo hi > /dev/kosnull && echo write-ok"])?;
    // The owner (uid 1000) may write; root without CAP_DAC_OVERRIDE could not.
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["linux"]["devices"] = json!([
        {"path": "/dev/kosnull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 1000, "gid": 2000},
        {"path": "/dev/kosfifo", "type": "p", "fileMode": 0o600, "uid": 0, "gid": 0}
    ]);
    b.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
    ]);
    let out = ctx.run_ok(&b)?;
    let line = out
        .lines()
        .find(|l| l.starts_with("/dev/kosnull "))
        .ok_or_else(|| anyhow!("/dev/kosnull not created: {out:?}"))?;
    ensure!(
        line == "/dev/kosnull character special file 1:3 640 1000 2000",
        "device attributes wrong: {line}"
    );
    let fifo = out
        .lines()
        .find(|l| l.starts_with("/dev/kosfifo "))
        .ok_or_else(|| anyhow!("fifo not created: {out:?}"))?;
    ensure!(
        fifo.contains("fifo") && fifo.contains(" 600 "),
        "fifo attributes wrong: {fifo}"
    );
    ensure!(out.contains("write-ok"), "allowed device not writable");
    Ok(())
}

/// A device path climbing out with `..` must be resolved inside the rootfs: no node may
/// appear on the host.
fn device_path_dotdot_stays_inside(ctx: &Ctx) -> Result<()> {
    let outside = ctx.mkdir("outside")?;
    let climb = format!(
        "/dev/{}{}/kosevil",
        "../".repeat(12),
        outside.display().to_string().trim_start_matches('/')
    );
    let mut b = ctx.bundle(&["true"])?;
    b.config["linux"]["devices"] =
        json!([{"path": climb, "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}]);
    let (_out, _c) = ctx.run(&b)?;
    let entries: Vec<_> = fs::read_dir(&outside)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(
        entries.is_empty(),
        "the device path escaped the rootfs and created {entries:?} on the host"
    );
    Ok(())
}

fn masked_paths(ctx: &Ctx) -> Result<()> {
    let script = [
        section("file", "cat /etc/kos-secret; echo end"),
        section("dir", "ls -A /kos-secret-dir; echo end"),
    ]
    .concat();
    // A default-masked /proc file this kernel has (which ones exist depends on its config).
    let proc_file = [
        "/proc/keys",
        "/proc/timer_list",
        "/proc/kcore",
        "/proc/sched_debug",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists());
    let script = match proc_file {
        Some(p) => format!("{script}{}", section("proc", &format!("wc -c < {p}"))),
        None => script,
    };
    let mut b = ctx.bundle(&["sh", "-c", &script])?;
    fs::write(b.in_rootfs("/etc/kos-secret"), "secret-file\n")?;
    fs::create_dir(b.in_rootfs("/kos-secret-dir"))?;
    fs::write(b.in_rootfs("/kos-secret-dir/inner"), "secret\n")?;
    if let Some(a) = b.config["linux"]["maskedPaths"].as_array_mut() {
        a.push(json!("/etc/kos-secret"));
        a.push(json!("/kos-secret-dir"));
        a.push(json!("/kos-does-not-exist"));
    }
    let s = sections(&ctx.run_ok(&b)?);
    ensure!(
        get(&s, "file")?.trim() == "end",
        "masked file is readable: {:?}",
        get(&s, "file")?
    );
    ensure!(
        get(&s, "dir")?.trim() == "end",
        "masked dir is not empty: {:?}",
        get(&s, "dir")?
    );
    if let Some(p) = proc_file {
        ensure!(
            get(&s, "proc")?.trim() == "0",
            "masked {p} is not empty: {:?}",
            get(&s, "proc")?
        );
    }
    Ok(())
}

fn readonly_paths(ctx: &Ctx) -> Result<()> {
    let script = [
        section("dir", "touch /kos-ro-dir/x; echo rc=$?"),
        section("other", "touch /tmp/x; echo rc=$?"),
        section("sys", "echo 1 > /proc/sys/kernel/domainname; echo rc=$?"),
    ]
    .concat();
    let mut b = ctx.bundle(&["sh", "-c", &script])?;
    fs::create_dir(b.in_rootfs("/kos-ro-dir"))?;
    if let Some(a) = b.config["linux"]["readonlyPaths"].as_array_mut() {
        a.push(json!("/kos-ro-dir"));
    }
    let s = sections(&ctx.run_ok(&b)?);
    let dir = get(&s, "dir")?;
    ensure!(
        dir.contains("Read-only") && dir.contains("rc=1"),
        "readonlyPaths dir is writable: {dir:?}"
    );
    ensure!(
        get(&s, "other")?.contains("rc=0"),
        "other paths became read-only: {:?}",
        get(&s, "other")?
    );
    ensure!(
        get(&s, "sys")?.contains("rc=1"),
        "/proc/sys (readonlyPaths) is writable: {:?}",
        get(&s, "sys")?
    );
    Ok(())
}

fn sysctl(ctx: &Ctx, key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let mut b = ctx.bundle(&["cat", &path])?;
    b.config["linux"]["sysctl"] = json!({key: value});
    let host_before = fs::read_to_string(&path).unwrap_or_default();
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.trim() == value,
        "{key} inside is {:?}, want {value}",
        out.trim()
    );
    ensure!(
        fs::read_to_string(&path).unwrap_or_default() == host_before,
        "{key} changed on the host"
    );
    Ok(())
}

/// vm.overcommit_ratio lives in no namespace: a runtime must refuse it or at least never
/// change the host's value through a container's sysctl.
fn sysctl_host_wide_untouched(ctx: &Ctx) -> Result<()> {
    let path = "/proc/sys/vm/overcommit_ratio";
    let before = fs::read_to_string(path)?;
    let want: u64 = before.trim().parse::<u64>()? + 1;
    let mut b = ctx.bundle(&["true"])?;
    b.config["linux"]["sysctl"] = json!({"vm.overcommit_ratio": want.to_string()});
    let (_out, _c) = ctx.run(&b)?;
    let after = fs::read_to_string(path)?;
    if after != before {
        // Put the host back before reporting.
        fs::write(path, &before)?;
    }
    ensure!(
        after == before,
        "a container sysctl changed the host's vm.overcommit_ratio"
    );
    Ok(())
}

fn no_pivot(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["sh", "-c", "cat /etc/passwd; ls /"])?;
    let (out, _c) = ctx.run_with(&b, &["--no-pivot"], Default::default())?;
    out.expect_success()?;
    ensure!(
        out.stdout.contains("kosuser"),
        "--no-pivot container does not see its rootfs: {:?}",
        out.stdout
    );
    ensure!(
        !out.stdout.lines().any(|l| l == "work" || l == "boot"),
        "host root visible: {:?}",
        out.stdout
    );
    Ok(())
}
