//! A failed `docker exec` start: the CLI prints the runtime's error and exits 127 when the
//! command is not found, 126 when it cannot be executed, as with dockerd.

mod common;

use common::*;

#[test]
fn exec_of_missing_or_unexecutable_command() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image("execerr:1");
    push_busybox(&img, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &img]);
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "xe",
        &img,
        "sleep",
        "300",
    ]);
    for tty in [false, true] {
        let mut args = vec!["exec"];
        if tty {
            args.push("-t");
        }
        args.extend(["xe", "nosuch"]);
        let o = k.docker(&args);
        let err =
            String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(127), "tty={tty}: {err}");
        assert!(!err.contains("Unrecognized input header"), "{err}");
        assert!(
            err.contains("OCI runtime exec failed") && err.contains("nosuch"),
            "tty={tty}: {err}"
        );
    }
    // A file that exists but is not executable.
    k.docker_ok(&["exec", "xe", "sh", "-c", "echo x > /tmp/plain"]);
    let o = k.docker(&["exec", "xe", "/tmp/plain"]);
    // As with dockerd, the message comes as the exec's output.
    let err = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(126), "{err}");
    assert!(err.contains("OCI runtime exec failed"), "{err}");
    // The container is unharmed and exec still works.
    assert_eq!(k.docker_ok(&["exec", "xe", "echo", "ok"]), "ok\n");
    k.docker_ok(&["rm", "-f", "xe"]);
}
