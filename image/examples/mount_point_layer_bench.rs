//! Benchmark helper for `bench/mount_point_layer.sh` (not part of the library API).
//!
//!   mount_point_layer_bench <work-dir> [runs]
//!
//! What a container start does to its rootfs, with and without the cached mount-point
//! layer, alternating so both see the same disk: prepare the overlay rootfs of a
//! busybox-like image (no /proc, /dev, /sys, /etc/hostname, /etc/hosts, /etc/resolv.conf;
//! volatile, as for `docker run --rm`), make every target the runtime would (mkdir /
//! create, as kosrun does for a missing one), mount a tmpfs on /proc; then, timed apart,
//! unmount and release. Prints median and mean of each, and the difference.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kos_image::digest::Digest;
use kos_image::manifest::{self, Platform};
use kos_image::{MountKind, MountPoint, RootfsOptions, RootfsStrategy, Store};

const IMAGE: &str = "bench/busybox-like:1";

fn layer_tar() -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, path, data)?;
        Ok(())
    };
    add("bin", tar::EntryType::Directory, 0o755, b"")?;
    add("bin/busybox", tar::EntryType::Regular, 0o755, &[0u8; 4096])?;
    add("etc", tar::EntryType::Directory, 0o755, b"")?;
    add(
        "etc/passwd",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:0::/:/bin/sh\n",
    )?;
    add("tmp", tar::EntryType::Directory, 0o1777, b"")?;
    Ok(b.into_inner()?)
}

fn build_image(store: &Store) -> Result<()> {
    let tar = layer_tar()?;
    let diff_id = Digest::of(&tar);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&tar)?;
    let gz = enc.finish()?;
    let ld = store.put_blob(&gz)?;
    let p = Platform::host();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": p.architecture, "os": p.os,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "config": {"Cmd": ["/bin/true"]},
    }))?;
    let cd = store.put_blob(&config)?;
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": manifest::OCI_CONFIG, "digest": cd.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld.to_string(), "size": gz.len()}],
    }))?;
    let md = Digest::of(&m);
    store.put_manifest(&md, manifest::OCI_MANIFEST, &m)?;
    store.tag_image(IMAGE, &md, &md)?;
    Ok(())
}

fn c(p: &Path) -> Result<CString> {
    Ok(CString::new(p.as_os_str().as_bytes())?)
}

/// One start and stop; returns how long each took.
fn start(
    store: &Store,
    work: &Path,
    n: usize,
    targets: &[MountPoint],
) -> Result<(Duration, Duration)> {
    let id = format!("bench-{n}");
    let dir = work.join(&id);
    let t0 = Instant::now();
    let rootfs = store.prepare_rootfs_with_mount_points(
        IMAGE,
        &id,
        &dir,
        RootfsStrategy::Overlay,
        RootfsOptions { volatile: true },
        targets,
    )?;
    for t in MountPoint::container_defaults() {
        let p = rootfs.path.join(t.path().strip_prefix("/")?);
        if std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        match t.kind() {
            MountKind::Dir => std::fs::create_dir(&p)?,
            MountKind::File => drop(std::fs::File::create_new(&p)?),
        }
    }
    let proc = c(&rootfs.path.join("proc"))?;
    let tmpfs = c(Path::new("tmpfs"))?;
    // SAFETY: valid C strings.
    if unsafe {
        libc::mount(
            tmpfs.as_ptr(),
            proc.as_ptr(),
            tmpfs.as_ptr(),
            0,
            std::ptr::null(),
        )
    } < 0
    {
        let e = std::io::Error::last_os_error();
        let _ = store.release_rootfs(&rootfs);
        bail!("mount on /proc: {e}");
    }
    let started = t0.elapsed();
    let t1 = Instant::now();
    // SAFETY: valid C string.
    unsafe { libc::umount2(proc.as_ptr(), libc::MNT_DETACH) };
    store.release_rootfs(&rootfs)?;
    let stopped = t1.elapsed();
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok((started, stopped))
}

/// Median and mean in ms.
fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    (ms(v[v.len() / 2]), mean)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(work) = args.next() else {
        bail!("usage: mount_point_layer_bench <work-dir> [runs]");
    };
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(50);
    if runs == 0 {
        bail!("runs must be at least 1");
    }
    let work = Path::new(&work);
    let store = Store::open(work.join("store"))?;
    build_image(&store)?;
    let targets = MountPoint::container_defaults();
    // Warm-up, which also builds the layer once (what the first start of an image pays).
    let (first, _) = start(&store, work, 0, &targets)?;
    println!(
        "first start with the layer (builds it): {:.2} ms",
        first.as_secs_f64() * 1e3
    );
    start(&store, work, 1, &[])?;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..runs {
        with.push(start(&store, work, 2 * i + 2, &targets)?);
        without.push(start(&store, work, 2 * i + 3, &[])?);
    }
    println!("{runs} containers each, alternating; median / mean in ms:");
    println!("  start = prepare the rootfs, make the missing targets, mount on /proc");
    println!("  stop  = unmount, release the rootfs (remove upper, work, lease)");
    for (what, pick) in [
        (
            "start",
            (|d: &(Duration, Duration)| d.0) as fn(&(Duration, Duration)) -> Duration,
        ),
        ("stop ", |d| d.1),
    ] {
        let (wm, wa) = stats(with.iter().map(pick).collect());
        let (om, oa) = stats(without.iter().map(pick).collect());
        println!(
            "  {what}: without the layer {om:.3} / {oa:.3}, with {wm:.3} / {wa:.3}, saved {:.3} / {:.3}",
            om - wm,
            oa - wa
        );
    }
    Ok(())
}
