//! Image endpoints through the docker CLI and SDK against a loopback registry.

mod common;

use common::*;

#[test]
fn pull_list_inspect_tag_history_rmi() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image("busybox:1.0");
    push_busybox(
        &img,
        &ImageSpec {
            labels: vec![("org.kos.test".into(), "yes".into())],
            ..Default::default()
        },
    );
    let out = k.docker_ok(&["pull", &img]);
    assert!(
        out.contains("Pulling from") && out.contains("Digest: sha256:"),
        "{out}"
    );
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {img}")),
        "{out}"
    );
    let again = k.docker_ok(&["pull", &img]);
    assert!(again.contains("Image is up to date"), "{again}");

    let ls = k.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(ls.contains(&img), "{ls}");
    let id = k
        .docker_ok(&["image", "inspect", "-f", "{{.Id}}", &img])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let insp = k.docker_ok(&["image", "inspect", &img]);
    let v: serde_json::Value = serde_json::from_str(&insp).expect("json");
    assert_eq!(v[0]["Config"]["Labels"]["org.kos.test"], "yes");
    assert_eq!(v[0]["Os"], "linux");
    assert_eq!(v[0]["RootFS"]["Type"], "layers");
    // overlay2's layer directories, as Docker reports them: the top layer as UpperDir, the
    // others top-most first as LowerDir, one directory per layer, each unpacked.
    let gd = &v[0]["GraphDriver"];
    assert_eq!(gd["Name"], "overlay2");
    let mut dirs = vec![gd["Data"]["UpperDir"]
        .as_str()
        .expect("UpperDir")
        .to_string()];
    if let Some(lower) = gd["Data"]["LowerDir"].as_str() {
        dirs.extend(lower.split(':').map(str::to_string));
    }
    let layers = v[0]["RootFS"]["Layers"].as_array().expect("layers");
    assert_eq!(dirs.len(), layers.len(), "{gd}");
    assert!(
        dirs.iter().all(|d| std::path::Path::new(d).is_dir()),
        "{gd}"
    );
    assert!(v[0]["RepoDigests"][0]
        .as_str()
        .expect("digest")
        .contains("@sha256:"));

    // By id prefix too.
    let short = &id[7..19];
    k.docker_ok(&["image", "inspect", short]);

    k.docker_ok(&["tag", &img, "mine:v2"]);
    let ls = k.docker_ok(&[
        "images",
        "--filter",
        "reference=mine",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    assert_eq!(ls.trim(), "mine:v2");
    let ls = k.docker_ok(&["images", "--filter", "label=org.kos.test=yes", "-q"]);
    assert_eq!(
        ls.lines().collect::<std::collections::BTreeSet<_>>().len(),
        1,
        "{ls}"
    );
    let ls = k.docker_ok(&["images", "--filter", "label=org.kos.test=no", "-q"]);
    assert!(ls.trim().is_empty(), "{ls}");

    let hist = k.docker_ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &img]);
    assert!(hist.contains("kosd test: busybox"), "{hist}");

    // Removing by id with two names needs force; untagging one name does not.
    let o = k.docker(&["rmi", short]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("referenced in multiple repositories"));
    let out = k.docker_ok(&["rmi", "mine:v2"]);
    assert!(
        out.contains("Untagged: mine:v2") && !out.contains("Deleted"),
        "{out}"
    );
    let out = k.docker_ok(&["rmi", &img]);
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert!(k.docker_ok(&["images", "-q"]).trim().is_empty());
    // The store's content went with it.
    let blobs = k.data_root().join("image");
    let o = k.docker(&["image", "inspect", &img]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such image"));
    assert!(blobs.exists());
}

#[test]
fn bad_references_and_missing_images() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let o = k.docker(&["pull", &reg.image("nothing-here:1")]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("nothing-here"), "{e}");
    let (code, body) = k.http(
        "POST",
        "/v1.47/images/create?fromImage=Bad%20Name&tag=x",
        b"",
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = k.http("GET", "/v1.47/images/nope:1/json", b"");
    assert_eq!(code, 404);
    assert!(body.contains("No such image: nope:1"), "{body}");
    let (code, _) = k.http("DELETE", "/v1.47/images/nope:1", b"");
    assert_eq!(code, 404);
    let (code, body) = k.http("POST", "/v1.47/images/nope:1/tag?repo=x&tag=y", b"");
    assert_eq!(code, 404, "{body}");
    let (code, body) = k.http(
        "GET",
        "/v1.47/images/json?filters=%7B%22what%22%3A%5B%22x%22%5D%7D",
        b"",
    );
    assert_eq!(code, 400, "{body}");
    // Garbage to load is refused with nothing stored.
    let o = k.docker_stdin(&["load"], b"this is not a tar archive at all");
    assert!(!o.status.success());
    assert!(k.docker_ok(&["images", "-q"]).trim().is_empty());
    // The daemon's scratch area is empty again.
    let tmp = k.data_root().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn save_load_push_and_prune() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image("bb:save");
    push_busybox(&img, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &img]);
    let tar = k.dir.join("saved.tar");
    k.docker_ok(&["save", "-o", tar.to_str().expect("utf8"), &img]);
    assert!(std::fs::metadata(&tar).expect("saved").len() > 100_000);
    k.docker_ok(&["rmi", &img]);
    let out = k.docker_ok(&["load", "-i", tar.to_str().expect("utf8")]);
    assert!(out.contains(&format!("Loaded image: {img}")), "{out}");

    // Push under a new name, then pull it back in a fresh daemon.
    let pushed = reg.image("pushed/bb:7");
    k.docker_ok(&["tag", &img, &pushed]);
    let out = k.docker_ok(&["push", &pushed]);
    assert!(out.contains("digest: sha256:"), "{out}");
    let k2 = Kosd::start(&[]);
    k2.docker_ok(&["pull", "-q", &pushed]);
    let id1 = k.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &pushed]);
    let id2 = k2.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &pushed]);
    assert_eq!(id1, id2);

    // prune -a removes images no container uses.
    let out = k.docker_ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted"), "{out}");
    assert!(k.docker_ok(&["images", "-q"]).trim().is_empty());
}

#[test]
fn python_sdk_images() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image("sdk/bb:3");
    push_busybox(&img, &ImageSpec::default());
    let py = k.python(&format!(
        r#"
import docker
c = docker.from_env()
i = c.images.pull("{img}")
assert i.id.startswith("sha256:"), i.id
assert "{img}" in i.tags, i.tags
assert i.tag("sdk-local", "x")
assert len(c.images.list(name="sdk-local")) == 1
h = i.history()
assert h[0]["Id"] == i.id, h
c.images.remove("sdk-local:x")
try:
    c.images.get("missing:1")
    raise SystemExit("expected NotFound")
except docker.errors.ImageNotFound:
    pass
data = b"".join(i.save())
assert len(data) > 100000
c.images.remove(i.id, force=True)
assert c.images.list() == []
loaded = c.images.load(data)
assert loaded[0].id == i.id
print("ok")
"#
    ));
    assert!(
        py.status.success(),
        "{}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
}

#[test]
fn search_and_distribution_against_the_registry() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let a = reg.image("team/alpha:1");
    let b = reg.image("team/beta:1");
    push_busybox(&a, &ImageSpec::default());
    push_busybox(&b, &ImageSpec::default());
    let host = a.split('/').next().expect("host").to_string();
    // The distribution registry has no /v1/search: its catalog, filtered by the term.
    let names = k.docker_ok(&["search", "--format", "{{.Name}}", &format!("{host}/team")]);
    let mut got: Vec<&str> = names.lines().collect();
    got.sort();
    assert_eq!(
        got,
        [format!("{host}/team/alpha"), format!("{host}/team/beta")]
    );
    let one = k.docker_ok(&["search", "--format", "{{.Name}}", &format!("{host}/beta")]);
    assert_eq!(one.trim(), format!("{host}/team/beta"));
    let limited = k.docker_ok(&[
        "search",
        "--limit",
        "1",
        "--format",
        "{{.Name}}",
        &format!("{host}/team"),
    ]);
    assert_eq!(limited.lines().count(), 1, "{limited}");
    let none = k.docker_ok(&["search", "--format", "{{.Name}}", &format!("{host}/zzz")]);
    assert!(none.trim().is_empty(), "{none}");
    let (st, body) = k.http(
        "GET",
        &format!(
            "/images/search?term={host}/team&filters=%7B%22stars%22%3A%7B%22x%22%3Atrue%7D%7D"
        ),
        b"",
    );
    assert_eq!(st, 400, "{body}");
    let (st, body) = k.http("GET", "/images/search?term=x&limit=1000", b"");
    assert_eq!(st, 400, "{body}");
    // GET /distribution/{name}/json: the manifest's descriptor and platform, unpulled.
    let (st, body) = k.http("GET", &format!("/v1.47/distribution/{a}/json"), b"");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(
        v["Descriptor"]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{v}"
    );
    assert!(
        v["Descriptor"]["size"].as_u64().is_some_and(|n| n > 0),
        "{v}"
    );
    assert_eq!(v["Platforms"][0]["os"], "linux", "{v}");
    assert!(
        k.docker_ok(&["images", "-q"]).trim().is_empty(),
        "nothing pulled"
    );
    let (st, _) = k.http(
        "GET",
        &format!("/v1.47/distribution/{host}/team/missing:1/json"),
        b"",
    );
    assert!(st == 404 || st == 500, "{st}");
    let py = k.python(&format!(
        r#"
import docker
c = docker.from_env()
d = c.api.inspect_distribution("{b}")
assert d["Descriptor"]["mediaType"].endswith("manifest.v1+json"), d
r = c.images.search("{host}/alpha")
assert [x["name"] for x in r] == ["{host}/team/alpha"], r
print("ok")
"#
    ));
    assert!(
        py.status.success(),
        "{}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
}

#[test]
fn pull_push_and_search_on_a_tls_registry_on_loopback() {
    // A loopback registry is insecure by default: tried over HTTPS first (its self-signed
    // certificate not verified), over HTTP only when it does not speak TLS, as dockerd.
    let dir = Scratch::new("tls-reg");
    let reg = Registry::start_with(&kos_testsupport::self_signed_tls(&dir.join("")));
    let img = reg.image("tls/busybox:1");
    push_busybox(&img, &ImageSpec::default());
    let k = Kosd::start(&[]);
    k.docker_ok(&["pull", "-q", &img]);
    assert_eq!(
        k.docker_ok(&["run", "--rm", "--network", "none", &img, "echo", "over tls"]),
        "over tls\n"
    );
    let copy = reg.image("tls/copy:2");
    k.docker_ok(&["tag", &img, &copy]);
    k.docker_ok(&["push", &copy]);
    let found = k.docker_ok(&[
        "search",
        "--format",
        "{{.Name}}",
        &format!("{}/copy", reg.addr),
    ]);
    assert_eq!(found.trim(), format!("{}/tls/copy", reg.addr));
    // The registry really answers TLS only: plain HTTP gets its "HTTPS server" refusal.
    let mut s = std::net::TcpStream::connect(&reg.addr).expect("connect");
    use std::io::{Read, Write};
    s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
}
