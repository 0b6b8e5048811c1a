//! A unit's `ContainerSpec` as the body of `POST /containers/create`: the spec already uses
//! Docker's field names, so this adds what only units need (the notify directory bound in,
//! the labels that name the unit) and moves the extra networks into `NetworkingConfig`.

use kos_units::ContainerSpec;
use serde_json::{json, Map, Value};

/// Label naming the unit a container belongs to (`docker ps --filter label=kos.unit`).
pub const UNIT_LABEL: &str = "kos.unit";
/// Label carrying a digest of the create body: a container whose body is unchanged is
/// started again instead of being made anew.
pub const SPEC_LABEL: &str = "kos.unit.spec";
/// Label of the one-off container an `ExecStartPre=` runs in (the unit is not started yet).
pub const PRE_LABEL: &str = "kos.unit.pre";

/// The create body, labelled for `unit`, with its digest already in [`SPEC_LABEL`].
pub fn create_body(unit: &str, spec: &ContainerSpec) -> Value {
    let mut v = serde_json::to_value(spec).unwrap_or(Value::Null);
    let Value::Object(m) = &mut v else {
        return Value::Null;
    };
    m.remove("Name");
    m.remove("Kos");
    let mut hc = m.remove("HostConfig").unwrap_or_else(|| json!({}));
    if let (Some(host), Some(inside)) = (&spec.kos.notify_dir, &spec.kos.notify_dir_in_container) {
        let bind = format!("{}:{}", host.display(), inside.display());
        match hc.get_mut("Binds").and_then(Value::as_array_mut) {
            Some(b) => b.push(json!(bind)),
            None => hc["Binds"] = json!([bind]),
        }
    }
    if !spec.kos.networks.is_empty() {
        let eps: Map<String, Value> = spec
            .kos
            .networks
            .iter()
            .map(|n| (n.clone(), json!({})))
            .collect();
        m.insert("NetworkingConfig".into(), json!({ "EndpointsConfig": eps }));
    }
    m.insert("HostConfig".into(), hc);
    let labels = m
        .entry("Labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .map(|l| {
            l.insert(UNIT_LABEL.into(), json!(unit));
            l.remove(SPEC_LABEL);
        });
    if labels.is_none() {
        m.insert("Labels".into(), json!({ UNIT_LABEL: unit }));
    }
    let digest = digest(&v);
    v["Labels"][SPEC_LABEL] = json!(digest);
    v
}

/// The body of the one-off container for an `ExecStartPre=` command: the unit's container
/// with `argv` as its whole command line, labelled as the unit's pre-command.
pub fn pre_body(unit: &str, body: &Value, argv: &[String]) -> Value {
    let mut v = body.clone();
    v["Entrypoint"] = json!(argv.first().map(|a| vec![a.clone()]).unwrap_or_default());
    v["Cmd"] = json!(argv.iter().skip(1).collect::<Vec<_>>());
    v["Healthcheck"] = Value::Null;
    if let Some(l) = v["Labels"].as_object_mut() {
        l.remove(UNIT_LABEL);
        l.remove(SPEC_LABEL);
        l.insert(PRE_LABEL.into(), json!(unit));
    }
    v
}

/// FNV-1a over the canonical JSON (serde_json's maps are sorted), as 16 hex digits.
fn digest(v: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn spec() -> ContainerSpec {
        let mut s = ContainerSpec {
            name: "kos-a".into(),
            image: "kos.local/a:latest".into(),
            cmd: vec!["run".into()],
            env: vec!["NOTIFY_SOCKET=/run/kos-notify/notify.sock".into()],
            ..Default::default()
        };
        s.host_config.binds = vec!["/srv:/srv:ro".into()];
        s.host_config.network_mode = Some("none".into());
        s.host_config.pid_mode = Some("host".into());
        s.kos.unit = "a.container".into();
        s.kos.notify_dir = Some(PathBuf::from("/run/kos/units/notify/a.container"));
        s.kos.notify_dir_in_container = Some(PathBuf::from("/run/kos-notify"));
        s
    }

    #[test]
    fn body_is_docker_create_json_with_notify_bind_and_labels() {
        let b = create_body("a.container", &spec());
        assert_eq!(b["Image"], "kos.local/a:latest");
        assert_eq!(b["Cmd"][0], "run");
        assert!(b.get("Kos").is_none() && b.get("Name").is_none());
        assert_eq!(
            b["HostConfig"]["Binds"],
            json!([
                "/srv:/srv:ro",
                "/run/kos/units/notify/a.container:/run/kos-notify"
            ])
        );
        assert_eq!(b["HostConfig"]["PidMode"], "host");
        assert_eq!(b["HostConfig"]["NetworkMode"], "none");
        assert_eq!(b["Labels"][UNIT_LABEL], "a.container");
        assert_eq!(b["Labels"][SPEC_LABEL].as_str().unwrap().len(), 16);
        // The body is what the API's create accepts.
        let parsed: crate::containers::runtime::CreateBody = serde_json::from_value(b).unwrap();
        assert_eq!(
            parsed.config.labels.unwrap()[UNIT_LABEL],
            "a.container".to_string()
        );
    }

    #[test]
    fn digest_follows_the_spec() {
        let a = create_body("a.container", &spec());
        assert_eq!(a, create_body("a.container", &spec()));
        let mut s = spec();
        s.env.push("X=1".into());
        let b = create_body("a.container", &s);
        assert_ne!(a["Labels"][SPEC_LABEL], b["Labels"][SPEC_LABEL]);
    }

    #[test]
    fn extra_networks_and_pre_commands() {
        let mut s = spec();
        s.host_config.network_mode = Some("front".into());
        s.kos.networks = vec!["back".into()];
        let b = create_body("a.container", &s);
        assert!(b["NetworkingConfig"]["EndpointsConfig"]["back"].is_object());
        let p = pre_body(
            "a.container",
            &b,
            &["/bin/mkdir".into(), "-p".into(), "/x".into()],
        );
        assert_eq!(p["Entrypoint"], json!(["/bin/mkdir"]));
        assert_eq!(p["Cmd"], json!(["-p", "/x"]));
        assert_eq!(p["Labels"][PRE_LABEL], "a.container");
        assert!(p["Labels"].get(UNIT_LABEL).is_none());
    }

    #[test]
    fn shipped_units_load_and_map_onto_create() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let tmp = tempfile::tempdir().unwrap();
        let paths = kos_units::UnitPaths {
            dirs: vec![root.join("units/shipped"), root.join("services/units")],
            enable_dir: tmp.path().to_path_buf(),
        };
        let set = kos_units::loader::load(&paths).unwrap();
        for name in ["kaim.container", "kadcm.container", "kos-dns.container"] {
            let Some(kos_units::loader::Loaded::Ok(def)) = set.units.get(name) else {
                panic!("{name} does not load: {:?}", set.units.get(name));
            };
            assert!(def.warnings.is_empty(), "{name}: {:?}", def.warnings);
            let body = create_body(name, &def.container);
            assert_eq!(body["HostConfig"]["PidMode"], "host", "{name}");
            let parsed: crate::containers::runtime::CreateBody =
                serde_json::from_value(body).unwrap();
            assert!(parsed.config.image.unwrap().starts_with("kos.local/"));
        }
    }
}
