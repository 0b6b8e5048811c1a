//! Network endpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Response, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::params::{JsonBody, Params};
use crate::containers::runtime;
use crate::engine::Engine;
use crate::error::{ApiError, Result};
use crate::filters::Filters;
use crate::network::{self, canonical};
use crate::network_ids;

type E = State<Arc<Engine>>;

fn builtin(name: &str, driver: &str, containers: Value) -> Value {
    json!({"Name": name, "Id": name, "Created": crate::timefmt::ZERO_TIME, "Scope": "local", "Driver": driver,
        "EnableIPv6": false, "IPAM": {"Driver": "default", "Options": null, "Config": []}, "Internal": false,
        "Attachable": false, "Ingress": false, "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
        "Containers": containers, "Options": {}, "Labels": {}})
}

/// The live containers among `cs` with an endpoint on `net`.
fn members(cs: &[crate::containers::Container], net: &str) -> Value {
    let mut m = serde_json::Map::new();
    for c in cs {
        if let Some(ep) = c.networks.get(net) {
            if c.state.status.is_live() {
                // An endpoint without an address (on `none` or `host`) shows none, as dockerd.
                let v4 = match ep["IPAddress"].as_str().unwrap_or("") {
                    "" => String::new(),
                    ip => format!("{ip}/{}", ep["IPPrefixLen"]),
                };
                m.insert(c.id.clone(), json!({"Name": c.name, "EndpointID": ep["EndpointID"], "MacAddress": ep["MacAddress"],
                    "IPv4Address": v4, "IPv6Address": ""}));
            }
        }
    }
    Value::Object(m)
}

fn all_json(e: &Engine) -> Result<Vec<Value>> {
    e.nets.ensure_default()?;
    let cs = crate::containers::all(e);
    let mut out: Vec<Value> = e
        .nets
        .list()?
        .iter()
        .map(|n| network::network_json(n, members(&cs, &n.name)))
        .collect();
    for (name, driver) in network::BUILTIN {
        out.push(builtin(name, driver, members(&cs, name)));
    }
    for n in &mut out {
        let name = n["Name"].as_str().unwrap_or("").to_string();
        let m = network_ids::meta(e, &name)?;
        n["Id"] = json!(m.id);
        n["Created"] = json!(crate::timefmt::rfc3339_go(m.created));
    }
    Ok(out)
}

fn find(e: &Engine, key: &str) -> Result<Value> {
    let name = resolve_name(e, key)?;
    all_json(e)?
        .into_iter()
        .find(|n| n["Name"] == name.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("network {key} not found")))
}

/// The name of the network `key` (a name, an ID or an ID prefix) refers to, from the
/// networks' names and IDs alone (no endpoint views).
pub fn resolve_name(e: &Engine, key: &str) -> Result<String> {
    e.nets.ensure_default()?;
    let names = e.nets.list()?.into_iter().map(|n| n.name);
    let pairs = names
        .chain(network::BUILTIN.map(|(n, _)| n.to_string()))
        .map(|n| Ok((n.clone(), network_ids::meta(e, &n)?.id)))
        .collect::<Result<Vec<(String, String)>>>()?;
    Ok(network_ids::resolve(canonical(key), &pairs)?.to_string())
}

pub async fn list(State(e): E, p: Params) -> Result<Json<Value>> {
    let f = Filters::parse(
        p.str("filters"),
        &["name", "id", "driver", "label", "type", "scope", "dangling"],
    )?;
    let eng = e.clone();
    let all = tokio::task::spawn_blocking(move || all_json(&eng)).await??;
    let out: Vec<Value> = all
        .into_iter()
        .filter(|n| {
            let name = n["Name"].as_str().unwrap_or("");
            let labels: BTreeMap<String, String> =
                serde_json::from_value(n["Labels"].clone()).unwrap_or_default();
            let builtin = ["bridge", "host", "none"].contains(&name);
            let id = n["Id"].as_str().unwrap_or("");
            f.any_or_unset("name", |x| name.contains(x))
                && f.any_or_unset("id", |x| id.starts_with(x))
                && f.any_or_unset("driver", |d| n["Driver"] == d)
                && f.any_or_unset("type", |t| (t == "builtin") == builtin)
                && f.labels_match("label", |k| labels.get(k).map(String::as_str))
        })
        .collect();
    Ok(Json(json!(out)))
}

pub async fn inspect(State(e): E, Path(id): Path<String>) -> Result<Json<Value>> {
    let eng = e.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || find(&eng, &id)).await??,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateBody {
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    internal: bool,
    #[serde(default, rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(default, rename = "IPAM")]
    ipam: Option<Value>,
    #[serde(default)]
    options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

pub async fn create(State(e): E, JsonBody(b): JsonBody<CreateBody>) -> Result<Response<Body>> {
    let b = b.ok_or_else(|| ApiError::bad("network config is required"))?;
    if ["bridge", "host", "none", "default"].contains(&b.name.as_str()) {
        return Err(ApiError::Conflict(format!(
            "network with name {} already exists",
            b.name
        )));
    }
    if !b.driver.is_empty() && b.driver != "bridge" {
        return Err(ApiError::bad(format!(
            "plugin \"{}\" not found: only the bridge driver is supported for user networks",
            b.driver
        )));
    }
    let mut spec = kos_network::NetworkSpec::bridge(&b.name);
    spec.internal = b.internal;
    spec.ipv6 = b.enable_ipv6.unwrap_or(false);
    spec.labels = b.labels.unwrap_or_default();
    let opts = b.options.unwrap_or_default();
    if let Some(br) = opts.get("com.docker.network.bridge.name") {
        spec.bridge_name = Some(br.clone());
    }
    if let Some(m) = opts.get("com.docker.network.driver.mtu") {
        spec.mtu = Some(
            m.parse()
                .map_err(|_| ApiError::bad(format!("invalid mtu {m:?}")))?,
        );
    }
    for c in b
        .ipam
        .as_ref()
        .and_then(|i| i["Config"].as_array().cloned())
        .unwrap_or_default()
    {
        let Some(subnet) = c["Subnet"].as_str() else {
            continue;
        };
        let mut s = kos_network::SubnetSpec {
            subnet: subnet.to_string(),
            gateway: None,
            ip_range: None,
        };
        if let Some(x) = c["Gateway"].as_str() {
            s.gateway = Some(x.to_string());
        }
        if let Some(x) = c["IPRange"].as_str() {
            s.ip_range = Some(x.to_string());
        }
        spec.subnets.push(s);
    }
    let eng = e.clone();
    let (n, meta) = tokio::task::spawn_blocking(move || -> Result<_> {
        let n = eng.nets.create(&spec)?;
        // Replaces the record a network of the same name may have left.
        let meta = network_ids::record_new(&eng, &n.name)?;
        Ok((n, meta))
    })
    .await??;
    e.event(
        "network",
        "create",
        &meta.id,
        &[("name", &n.name), ("type", "bridge")],
    );
    let mut r =
        axum::response::IntoResponse::into_response(Json(json!({"Id": meta.id, "Warning": ""})));
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

pub async fn remove(State(e): E, Path(key): Path<String>) -> Result<Response<Body>> {
    let eng = e.clone();
    let found = tokio::task::spawn_blocking(move || find(&eng, &key)).await??;
    let id = found["Name"].as_str().unwrap_or("").to_string();
    let net_id = found["Id"].as_str().unwrap_or("").to_string();
    if ["bridge", "host", "none", "default"].contains(&id.as_str()) {
        return Err(ApiError::Conflict(format!(
            "{id} is a pre-defined network and cannot be removed"
        )));
    }
    let users: Vec<String> = crate::containers::all(&e)
        .into_iter()
        .filter(|c| c.networks.contains_key(&id) && c.state.status.is_live())
        .map(|c| c.id)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "error while removing network: network {id} has active endpoints"
        )));
    }
    let eng = e.clone();
    let id2 = id.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        eng.nets.remove(&id2)?;
        network_ids::forget(&eng, &id2)?;
        Ok(())
    })
    .await??;
    e.event(
        "network",
        "destroy",
        &net_id,
        &[("name", &id), ("type", "bridge")],
    );
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

pub async fn prune(State(e): E, p: Params) -> Result<Json<Value>> {
    let f = Filters::parse(p.str("filters"), &["until", "label", "label!"])?;
    let until = f
        .get("until")
        .first()
        .map(|u| crate::timefmt::parse_timestamp(u))
        .transpose()?;
    let mut deleted = Vec::new();
    let nets = e.nets.list()?;
    let mut metas = HashMap::new();
    for n in &nets {
        metas.insert(n.name.clone(), network_ids::meta(&e, &n.name)?);
    }
    for n in nets {
        if n.name == network::DEFAULT
            || crate::containers::all(&e)
                .iter()
                .any(|c| c.networks.contains_key(&n.name))
        {
            continue;
        }
        if until.is_some_and(|u| metas.get(&n.name).is_some_and(|m| m.created > u)) {
            continue;
        }
        if !f.labels_match("label", |k| n.labels.get(k).map(String::as_str)) {
            continue;
        }
        if f.has("label!")
            && !f.get("label!").iter().all(|l| match l.split_once('=') {
                Some((k, v)) => n.labels.get(k).map(String::as_str) != Some(v),
                None => !n.labels.contains_key(l.as_str()),
            })
        {
            continue;
        }
        if e.nets.remove(&n.name).is_ok() {
            let _ = network_ids::forget(&e, &n.name);
            let net_id = metas.get(&n.name).map(|m| m.id.as_str()).unwrap_or("");
            e.event(
                "network",
                "destroy",
                net_id,
                &[("name", &n.name), ("type", "bridge")],
            );
            deleted.push(n.name);
        }
    }
    Ok(Json(json!({"NetworksDeleted": deleted})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectBody {
    container: String,
    #[serde(default)]
    endpoint_config: Option<Value>,
    #[serde(default)]
    force: bool,
}

pub async fn connect(
    State(e): E,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ConnectBody>,
) -> Result<Response<Body>> {
    let b = b.ok_or_else(|| ApiError::bad("container is required"))?;
    let _ = b.force;
    let eng = e.clone();
    let net = tokio::task::spawn_blocking(move || resolve_name(&eng, &id)).await??;
    let c = runtime::find(&e, &b.container)?;
    let aliases: Vec<String> = b
        .endpoint_config
        .as_ref()
        .and_then(|ec| serde_json::from_value(ec["Aliases"].clone()).ok())
        .unwrap_or_default();
    if matches!(
        crate::containers::netmode::NetMode::parse(&c.host_config),
        crate::containers::netmode::NetMode::None
            | crate::containers::netmode::NetMode::Host
            | crate::containers::netmode::NetMode::Container(_)
    ) {
        return Err(ApiError::bad(format!(
            "container {} shares its network namespace (mode {}): it cannot join {net}",
            c.id,
            c.host_config.network_mode.clone().unwrap_or_default()
        )));
    }
    e.nets.get(&net)?;
    if !c.state.status.is_live() {
        // Joined at the next start.
        let lock = e.rt.lock(&c.id);
        let _g = lock.lock().await;
        let mut c = runtime::load(&e, &c.id)?;
        if c.networks.contains_key(&net) {
            return Err(ApiError::Conflict(format!(
                "endpoint with name {} already exists in network {net}",
                c.name
            )));
        }
        c.networks
            .insert(net.clone(), network::skeleton(json!(aliases)));
        runtime::save(&e, &c)?;
        runtime::network_event(&e, "connect", &net, &c.id);
        return Ok(axum::response::IntoResponse::into_response(StatusCode::OK));
    }
    let mut req = kos_network::AttachRequest::new(&c.id, &net);
    req.name = Some(c.name.clone());
    req.aliases = aliases.clone();
    req.netns = Some(e.config.exec_root.join("netns").join(&c.id));
    req.ifname = Some(format!("eth{}", c.networks.len()));
    let nets = e.nets.clone();
    let att = tokio::task::spawn_blocking(move || nets.attach(&req)).await??;
    let lock = e.rt.lock(&c.id);
    let _g = lock.lock().await;
    let mut c = runtime::load(&e, &c.id)?;
    c.networks
        .insert(net.clone(), network::endpoint(&att, &aliases));
    runtime::save(&e, &c)?;
    runtime::network_event(&e, "connect", &net, &c.id);
    Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
}

pub async fn disconnect(
    State(e): E,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ConnectBody>,
) -> Result<Response<Body>> {
    let b = b.ok_or_else(|| ApiError::bad("container is required"))?;
    let eng = e.clone();
    let net = tokio::task::spawn_blocking(move || resolve_name(&eng, &id)).await??;
    let c = runtime::find(&e, &b.container)?;
    if !c.networks.contains_key(&net) {
        return Err(ApiError::NotFound(format!(
            "container {} is not connected to network {net}",
            c.id
        )));
    }
    if c.state.status.is_live() {
        let nets = e.nets.clone();
        let (cid, n2) = (c.id.clone(), net.clone());
        tokio::task::spawn_blocking(move || nets.detach(&cid, &n2)).await??;
    }
    let lock = e.rt.lock(&c.id);
    let _g = lock.lock().await;
    let mut c = runtime::load(&e, &c.id)?;
    c.networks.remove(&net);
    runtime::save(&e, &c)?;
    runtime::network_event(&e, "disconnect", &net, &c.id);
    Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
}
