//! Applying resolved CDI edits to an OCI runtime spec held as JSON (the form an engine that
//! builds config.json itself, like kosd, has in hand). Only the parts CDI edits touch are
//! changed; everything else in the document is left exactly as it was.

use serde_json::{json, Map, Value};

use super::oci::resolve_nodes;
use super::spec::ContainerEdits;
use crate::error::{Error, Result};

/// The object at `key` in `v`, made (or replacing a non-object) when missing.
fn object<'a>(v: &'a mut Value, key: &str) -> Result<&'a mut Map<String, Value>> {
    let Value::Object(m) = v else {
        return Err(Error::OciEdit(format!("{key:?}'s parent is not an object")));
    };
    let slot = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        return Err(Error::OciEdit(format!("{key:?} is not an object")));
    }
    slot.as_object_mut()
        .ok_or_else(|| Error::OciEdit(format!("{key:?} is not an object")))
}

/// The array at `key` in `m`, made when missing.
fn array<'a>(m: &'a mut Map<String, Value>, key: &str) -> Result<&'a mut Vec<Value>> {
    let slot = m.entry(key.to_string()).or_insert_with(|| json!([]));
    if slot.is_null() {
        *slot = json!([]);
    }
    slot.as_array_mut()
        .ok_or_else(|| Error::OciEdit(format!("{key:?} is not an array")))
}

fn env_key(e: &str) -> &str {
    e.split('=').next().unwrap_or("")
}

/// Applies `edits` to the runtime spec `spec`: environment (a variable set again replaces
/// the old value), additional gids, device nodes (replacing a node at the same path) with
/// their cgroup allow rules appended, mounts (replacing one at the same target) and hooks.
pub fn apply(spec: &mut Value, edits: &ContainerEdits) -> Result<()> {
    // Everything that can fail on the host (a node that is not there) fails before any edit.
    let nodes = resolve_nodes(edits)?;
    if !spec.is_object() {
        return Err(Error::OciEdit(
            "the runtime spec is not a JSON object".into(),
        ));
    }
    if !edits.env.is_empty() {
        let env = array(object(spec, "process")?, "env")?;
        for e in &edits.env {
            env.retain(|x| x.as_str().map(env_key) != Some(env_key(e)));
            env.push(json!(e));
        }
    }
    if !edits.additional_gids.is_empty() {
        let process = object(spec, "process")?;
        let user = process
            .entry("user")
            .or_insert_with(|| json!({"uid": 0, "gid": 0}));
        let user = user
            .as_object_mut()
            .ok_or_else(|| Error::OciEdit("process.user is not an object".into()))?;
        let gids = array(user, "additionalGids")?;
        for g in &edits.additional_gids {
            if !gids.iter().any(|x| x.as_u64() == Some(u64::from(*g))) {
                gids.push(json!(g));
            }
        }
    }
    if !nodes.is_empty() {
        let linux = object(spec, "linux")?;
        let devices = array(linux, "devices")?;
        for n in &nodes {
            devices.retain(|x| x["path"].as_str() != Some(n.path.as_str()));
            let mut d = json!({
                "path": n.path, "type": n.type_letter(), "major": n.major, "minor": n.minor,
            });
            if let Some(m) = n.file_mode {
                d["fileMode"] = json!(m);
            }
            if let Some(u) = n.uid {
                d["uid"] = json!(u);
            }
            if let Some(g) = n.gid {
                d["gid"] = json!(g);
            }
            devices.push(d);
        }
        let linux = object(spec, "linux")?;
        let resources = linux
            .entry("resources")
            .or_insert_with(|| Value::Object(Map::new()));
        let resources = resources
            .as_object_mut()
            .ok_or_else(|| Error::OciEdit("linux.resources is not an object".into()))?;
        let rules = array(resources, "devices")?;
        for n in nodes.iter().filter(|n| n.has_cgroup_rule()) {
            rules.push(json!({
                "allow": true, "type": n.type_letter(), "major": n.major, "minor": n.minor,
                "access": n.access,
            }));
        }
    }
    if !edits.mounts.is_empty() {
        let Value::Object(root) = spec else {
            return Err(Error::OciEdit(
                "the runtime spec is not a JSON object".into(),
            ));
        };
        let mounts = array(root, "mounts")?;
        for m in &edits.mounts {
            let typ = m.typ.clone().unwrap_or_else(|| "bind".into());
            let mut options = m.options.clone();
            if typ == "bind" && !options.iter().any(|o| o == "bind" || o == "rbind") {
                options.push("bind".into());
            }
            let target = m.container_path.trim_end_matches('/');
            mounts.retain(|x| {
                x["destination"].as_str().map(|d| d.trim_end_matches('/')) != Some(target)
            });
            mounts.push(json!({
                "destination": m.container_path, "type": typ, "source": m.host_path,
                "options": options,
            }));
        }
    }
    if !edits.hooks.is_empty() {
        let hooks = object(spec, "hooks")?;
        for h in &edits.hooks {
            if !matches!(
                h.hook_name.as_str(),
                "prestart"
                    | "createRuntime"
                    | "createContainer"
                    | "startContainer"
                    | "poststart"
                    | "poststop"
            ) {
                return Err(Error::OciEdit(format!(
                    "unknown hook name {:?}",
                    h.hook_name
                )));
            }
            let mut hook = json!({"path": h.path});
            if !h.args.is_empty() {
                hook["args"] = json!(h.args);
            }
            if !h.env.is_empty() {
                hook["env"] = json!(h.env);
            }
            if let Some(t) = h.timeout {
                hook["timeout"] = json!(t);
            }
            array(hooks, &h.hook_name)?.push(hook);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdi::spec::{DeviceNode, Hook, Mount};

    fn node(path: &str) -> DeviceNode {
        DeviceNode {
            path: path.into(),
            host_path: None,
            typ: Some("c".into()),
            major: Some(1),
            minor: Some(3),
            file_mode: Some(0o666),
            permissions: Some("rw".into()),
            uid: None,
            gid: None,
        }
    }

    #[test]
    fn edits_only_what_cdi_touches() {
        let mut spec = json!({
            "ociVersion": "1.0.2",
            "process": {"env": ["PATH=/bin", "A=1"], "user": {"uid": 0, "gid": 0}, "cwd": "/"},
            "mounts": [{"destination": "/opt/", "type": "tmpfs", "source": "tmpfs"}],
            "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]},
                      "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}},
            "annotations": {"k": "v"},
        });
        let before = spec.clone();
        let edits = ContainerEdits {
            env: vec!["A=2".into(), "B=3".into()],
            device_nodes: vec![node("/dev/xnull")],
            hooks: vec![Hook {
                hook_name: "createContainer".into(),
                path: "/bin/true".into(),
                args: vec!["true".into()],
                env: vec![],
                timeout: Some(5),
            }],
            mounts: vec![Mount {
                host_path: "/usr/lib/x".into(),
                container_path: "/opt".into(),
                options: vec!["ro".into()],
                typ: None,
            }],
            additional_gids: vec![44],
        };
        apply(&mut spec, &edits).expect("apply");
        assert_eq!(spec["process"]["env"], json!(["PATH=/bin", "A=2", "B=3"]));
        assert_eq!(spec["process"]["user"]["additionalGids"], json!([44]));
        assert_eq!(
            spec["linux"]["devices"],
            json!([{"path": "/dev/xnull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}])
        );
        assert_eq!(
            spec["linux"]["resources"]["devices"][1],
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"})
        );
        assert_eq!(
            spec["mounts"],
            json!([{"destination": "/opt", "type": "bind", "source": "/usr/lib/x", "options": ["ro", "bind"]}])
        );
        assert_eq!(
            spec["hooks"]["createContainer"],
            json!([{"path": "/bin/true", "args": ["true"], "timeout": 5}])
        );
        assert_eq!(spec["linux"]["seccomp"], before["linux"]["seccomp"]);
        assert_eq!(spec["annotations"], before["annotations"]);
        assert_eq!(spec["process"]["cwd"], before["process"]["cwd"]);
    }

    #[test]
    fn a_missing_host_node_changes_nothing() {
        let mut spec = json!({"process": {"env": []}});
        let before = spec.clone();
        let edits = ContainerEdits {
            env: vec!["A=1".into()],
            device_nodes: vec![DeviceNode {
                typ: None,
                major: None,
                minor: None,
                ..node("/dev/kadcm-test-no-such-node")
            }],
            ..Default::default()
        };
        let e = apply(&mut spec, &edits).expect_err("missing node");
        assert!(
            e.to_string().contains("/dev/kadcm-test-no-such-node"),
            "{e}"
        );
        assert_eq!(spec, before);
    }
}
