//! The test root filesystem: a static busybox with one symlink per applet, plus the few
//! files and mount points an OCI container expects.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use kos_testsupport::executable::copy_executable;

const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
kosuser:x:1000:1000:kos test user:/tmp:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

pub const GROUP: &str =
    "root:x:0:\nkosgroup:x:1000:\nkosextra:x:2000:\nkosthird:x:3000:\nnogroup:x:65534:\n";

/// A busybox binary checked once per run and the list of its applets.
pub struct BaseRootfs {
    busybox: PathBuf,
    applets: Vec<String>,
}

impl BaseRootfs {
    /// Copies a static busybox into `dir` (so every bundle can hard-link it) and lists its
    /// applets.
    pub fn prepare(dir: &Path) -> Result<Self> {
        let Some(host) = BUSYBOX_CANDIDATES
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
        else {
            bail!("no busybox found at /bin/busybox: install it with `apt-get install busybox-static`");
        };
        if is_dynamic_elf(host)? {
            bail!(
                "{} is dynamically linked and cannot run inside a bare rootfs: \
                 install the static one with `apt-get install busybox-static`",
                host.display()
            );
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let busybox = dir.join("busybox");
        fs::copy(host, &busybox).with_context(|| format!("copying {}", host.display()))?;
        fs::set_permissions(&busybox, fs::Permissions::from_mode(0o755))?;
        let out = Command::new(&busybox)
            .arg("--list")
            .output()
            .context("running busybox --list")?;
        if !out.status.success() {
            bail!(
                "`busybox --list` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
            .map(str::to_string)
            .collect();
        for needed in [
            "sh", "cat", "echo", "sleep", "touch", "readlink", "stat", "ls", "id",
        ] {
            if !applets.iter().any(|a| a == needed) {
                bail!("busybox at {} lacks the `{needed}` applet", host.display());
            }
        }
        Ok(Self { busybox, applets })
    }

    /// Lays out a fresh rootfs at `dest` (which must not exist yet).
    pub fn populate(&self, dest: &Path) -> Result<()> {
        for d in [
            "bin", "etc", "proc", "sys", "dev", "root", "tmp", "mnt", "var",
        ] {
            let p = dest.join(d);
            fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
        }
        fs::set_permissions(dest, fs::Permissions::from_mode(0o755))?;
        fs::set_permissions(dest.join("tmp"), fs::Permissions::from_mode(0o1777))?;
        let bb = dest.join("bin/busybox");
        if fs::hard_link(&self.busybox, &bb).is_err() {
            copy_executable(&self.busybox, &bb)
                .with_context(|| format!("copying busybox to {}", bb.display()))?;
        }
        for a in &self.applets {
            symlink("busybox", dest.join("bin").join(a))
                .with_context(|| format!("linking applet {a}"))?;
        }
        symlink("bin", dest.join("sbin"))?;
        fs::write(dest.join("etc/passwd"), PASSWD)?;
        fs::write(dest.join("etc/group"), GROUP)?;
        fs::write(dest.join("etc/hostname"), "kosconf\n")?;
        Ok(())
    }
}

/// True when the ELF file has a PT_INTERP header, i.e. needs a dynamic loader.
fn is_dynamic_elf(path: &Path) -> Result<bool> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hdr = [0u8; 64];
    f.read_exact(&mut hdr).context("reading ELF header")?;
    if &hdr[..4] != b"\x7fELF" || hdr[4] != 2 {
        // Not a 64-bit ELF: let busybox --list decide whether it runs at all.
        return Ok(false);
    }
    let phoff = u64::from_le_bytes(hdr[0x20..0x28].try_into()?) as usize;
    let phentsize = u16::from_le_bytes(hdr[0x36..0x38].try_into()?) as usize;
    let phnum = u16::from_le_bytes(hdr[0x38..0x3a].try_into()?) as usize;
    let mut all = Vec::new();
    fs::File::open(path)?.read_to_end(&mut all)?;
    for i in 0..phnum {
        let off = phoff + i * phentsize;
        if off + 4 > all.len() {
            break;
        }
        let ptype = u32::from_le_bytes(all[off..off + 4].try_into()?);
        if ptype == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}
