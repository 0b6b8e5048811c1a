//! Containers run under Docker's default seccomp profile (an allow-list, widened by the
//! capabilities the container holds), as dockerd applies it; `seccomp=unconfined` and
//! `--privileged` run without a filter.

mod common;

use common::*;

fn run(k: &Kosd, args: &[&str]) -> (bool, String) {
    let mut all = vec!["run", "--rm", "--network", "none"];
    all.extend_from_slice(args);
    let o = k.docker(&all);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn default_profile_follows_the_capabilities() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image("seccomp:1");
    push_busybox(&img, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &img]);

    let (ok, out) = run(&k, &[&img, "grep", "^Seccomp:", "/proc/self/status"]);
    assert!(
        ok && out.contains("Seccomp:\t2"),
        "filter mode expected: {out}"
    );

    // A user namespace needs CAP_SYS_ADMIN under the default profile ...
    let (ok, out) = run(&k, &[&img, "unshare", "-U", "true"]);
    assert!(!ok, "unshare allowed by default: {out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    // ... and the profile opens it when the capability is added.
    let (ok, out) = run(
        &k,
        &["--cap-add", "SYS_ADMIN", &img, "unshare", "-U", "true"],
    );
    assert!(ok, "unshare with CAP_SYS_ADMIN: {out}");

    // A call outside the allow-list is refused: the clock cannot be set by root
    // (busybox date reports it and still exits 0).
    let (_, out) = run(&k, &[&img, "date", "-s", "2001-01-01"]);
    assert!(
        out.contains("can't set date: Operation not permitted"),
        "{out}"
    );

    for extra in [
        &["--security-opt", "seccomp=unconfined"][..],
        &["--privileged"][..],
    ] {
        let mut args = extra.to_vec();
        args.extend_from_slice(&[&img, "grep", "^Seccomp:", "/proc/self/status"]);
        let (ok, out) = run(&k, &args);
        assert!(ok && out.contains("Seccomp:\t0"), "{extra:?}: {out}");
    }

    // A privileged exec holds what the daemon can give (its bounding set), unconfined.
    let id = k
        .docker_ok(&["run", "-d", "--network", "none", &img, "sleep", "60"])
        .trim()
        .to_string();
    let o = k.docker(&[
        "exec",
        "--privileged",
        &id,
        "grep",
        "^Cap",
        "/proc/self/status",
    ]);
    k.docker(&["rm", "-f", &id]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let own = std::fs::read_to_string("/proc/self/status").expect("status");
    let bnd = own
        .lines()
        .find(|l| l.starts_with("CapBnd:"))
        .expect("CapBnd");
    assert!(
        out.contains(&bnd.replace("CapBnd:", "CapEff:")),
        "{out} vs {bnd}"
    );
}
