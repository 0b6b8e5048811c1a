//! Helpers for KOS's build scripts.
//!
//! [`static_pie`] links one binary of a package as a static PIE. The runtime and the shim are
//! exec'd for every container (kosrun once or more: create, start, delete), and dynamically
//! linked about a third of their start-up was the dynamic loader's: mapping libc and
//! libgcc_s, binding their symbols, relocating. `kosrun run` of a `true` container is
//! ~1.7 ms faster static; a PIE keeps the binary's own image randomised.
//!
//! Cargo cannot make one binary of a workspace `crt-static` (RUSTFLAGS reach build scripts and
//! proc-macros too), and rustc names the system libraries on the link line as shared ones
//! (`-Bdynamic -lgcc_s ... -lc`). So the binary's link gets `-static-pie` and a search
//! directory, searched before the system's, where each of those names is a linker script
//! pointing at the library's static archive (the unwinder's is `gcc_eh`, what a `crt-static`
//! build links). The package's library, tests and examples stay dynamic.

use std::io;
use std::path::{Path, PathBuf};

/// The libraries rustc links an `x86_64-unknown-linux-gnu` binary against, and the static
/// archives that stand in for them.
const STATIC_FOR: &[(&str, &str)] = &[
    ("gcc_s", "-l:libgcc_eh.a"),
    ("util", "-l:libutil.a"),
    ("rt", "-l:librt.a"),
    ("pthread", "-l:libpthread.a"),
    ("m", "-l:libm.a"),
    ("dl", "-l:libdl.a"),
    ("c", "-l:libc.a -l:libgcc_eh.a -l:libgcc.a"),
];

/// The linker script that makes `-l{name}` resolve to `archives`.
fn script(archives: &str) -> String {
    format!("/* written by kos-buildsupport: linked statically */\nGROUP ( {archives} )\n")
}

/// Writes the linker scripts into `dir`.
pub fn write_scripts(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, archives) in STATIC_FOR {
        std::fs::write(dir.join(format!("lib{name}.so")), script(archives))?;
    }
    Ok(())
}

/// Links the package's binary `bin` as a static PIE with packed relative relocations
/// (DT_RELR: a few KB for the start-up code to walk instead of hundreds of KB of RELA
/// entries). On glibc Linux targets; a musl target's binary is a static PIE already and gets
/// the packed relocations only; elsewhere the binary is linked as usual. Call from the
/// package's build script.
pub fn static_pie(bin: &str) {
    println!("cargo:rerun-if-changed=build.rs");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if linux && env == "musl" {
        // Rust's musl targets link a static PIE already; musl's start-up code applies
        // packed relative relocations too (since musl 1.2.4).
        println!("cargo:rustc-link-arg-bin={bin}=-Wl,-z,pack-relative-relocs");
        return;
    }
    if !(linux && env == "gnu") {
        return;
    }
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        panic!("cargo sets OUT_DIR for build scripts");
    };
    let dir = out.join("static-libs");
    if let Err(e) = write_scripts(&dir) {
        panic!("writing linker scripts in {}: {e}", dir.display());
    }
    println!("cargo:rustc-link-arg-bin={bin}=-static-pie");
    println!("cargo:rustc-link-arg-bin={bin}=-L{}", dir.display());
    println!("cargo:rustc-link-arg-bin={bin}=-Wl,-z,pack-relative-relocs");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_rustc_links_has_a_script() {
        let d = std::env::temp_dir().join(format!("kos-buildsupport-{}", std::process::id()));
        write_scripts(&d).expect("write");
        for lib in ["gcc_s", "util", "rt", "pthread", "m", "dl", "c"] {
            let s = std::fs::read_to_string(d.join(format!("lib{lib}.so"))).expect("script");
            assert!(s.contains("GROUP ( -l:lib"), "{lib}: {s}");
        }
        let c = std::fs::read_to_string(d.join("libc.so")).expect("libc");
        assert!(c.contains("libc.a") && c.contains("libgcc_eh.a"), "{c}");
        std::fs::remove_dir_all(&d).expect("cleanup");
    }
}
