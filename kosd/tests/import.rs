//! `docker import`: a root filesystem archive (plain or gzip, from a file or stdin) becomes
//! a one-layer image with the config its `--change` instructions set.

mod common;

use std::process::Command;

use common::*;

/// A busybox root filesystem with /etc/hello, as a tar file.
fn rootfs_tar(dir: &Scratch) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox");
    for a in ["sh", "cat", "echo", "pwd", "id"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("applet");
    }
    std::fs::write(root.join("etc/hello"), "hello from import\n").expect("file");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    tar
}

#[test]
fn import_with_changes_message_and_tag() {
    let k = Kosd::start(&[]);
    let dir = Scratch::new("import");
    let tar = rootfs_tar(&dir);
    let tar_s = tar.to_string_lossy().to_string();
    let out = k.docker_ok(&[
        "import",
        "--change",
        r#"CMD ["cat", "/etc/hello"]"#,
        "--change",
        "ENV GREETING=hi SECOND=two",
        "--change",
        "WORKDIR /etc",
        "--change",
        "LABEL origin=import",
        "-m",
        "made by the import test",
        &tar_s,
        "imported:1",
    ]);
    assert!(out.trim().starts_with("sha256:"), "{out}");
    let id = out.trim();
    // The CMD from the change runs, inside the imported root.
    let o = k.docker_ok(&["run", "--rm", "--network", "none", "imported:1"]);
    assert_eq!(o, "hello from import\n");
    let o = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "imported:1",
        "sh",
        "-c",
        "echo $GREETING-$SECOND; pwd",
    ]);
    assert_eq!(o, "hi-two\n/etc\n");
    let fmt = "{{.Id}}|{{.Comment}}|{{json .Config.Cmd}}|{{.Config.Labels.origin}}|{{len .RootFS.Layers}}";
    let got = k.docker_ok(&["image", "inspect", "-f", fmt, "imported:1"]);
    assert_eq!(
        got.trim(),
        format!("{id}|made by the import test|[\"cat\",\"/etc/hello\"]|import|1")
    );
    let hist = k.docker_ok(&["history", "--format", "{{.Comment}}", "imported:1"]);
    assert!(hist.contains("made by the import test"), "{hist}");

    // A gzip archive on stdin, no message.
    let gz = Command::new("gzip")
        .args(["-c", &tar_s])
        .output()
        .expect("gzip");
    assert!(gz.status.success());
    let o = k.docker_stdin(&["import", "-", "imported:gz"], &gz.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "imported:gz",
        "cat",
        "/etc/hello",
    ]);
    assert_eq!(o, "hello from import\n");
    let c = k.docker_ok(&["image", "inspect", "-f", "{{.Comment}}", "imported:gz"]);
    assert_eq!(c.trim(), "");

    // Refused: an instruction import does not take, something that is not a tar, a URL.
    let before = k.docker_ok(&["images", "-q"]);
    let o = k.docker(&["import", "--change", "RUN true", &tar_s, "imported:bad"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("run is not a valid change command"), "{err}");
    let o = k.docker_stdin(&["import", "-", "imported:junk"], &[b'x'; 4096]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a tar"), "{err}");
    let o = k.docker(&["import", "http://127.0.0.1:1/rootfs.tar", "imported:url"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not supported"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(k.docker_ok(&["images", "-q"]), before, "nothing half made");
}
