//! Builds the statically linked kos-init that kosd embeds and bind-mounts into
//! `--init` containers (images may have no C library). Cargo cannot link one
//! binary of a package statically, so the file is compiled here on its own with
//! `crt-static`; it depends on std only.
//!
//! kosd is linked as a static PIE too (see `main`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    // kosd itself is a static PIE: its idle resident memory is mostly mapped code, and the
    // shared C library, libm and the loader were 2.3 MB of it, where the parts kosd links
    // statically are a few hundred KB (kos-buildsupport has the how).
    kos_buildsupport::static_pie("kosd");
    let src = "src/bin/kos-init.rs";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let st = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--crate-name",
            "kos_init",
        ])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "target-feature=+crt-static", "--target", &target])
        .arg("-o")
        .arg(out.join("kos-init"))
        .arg(src)
        .status()
        .expect("running rustc for kos-init");
    assert!(st.success(), "compiling the static kos-init failed");
}
