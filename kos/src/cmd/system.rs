//! `info`, `version`, `events`, `system df|prune`, `login`, `logout`,
//! `completion` and `man`.

use std::io::{self, Read, Write};

use anyhow::{Context, Result};
use clap::CommandFactory;
use serde_json::{json, Value};

use super::filters_json;
use super::objects::confirm;
use crate::cli::{Cli, EventsCmd, InfoCmd, LoginCmd, LogoutCmd, SystemCmd, VersionCmd};
use crate::client::{query, Client};
use crate::format::units::human_size4;
use crate::format::{json_ordered, Ctx, Format, KeyOrder, Template};
use crate::status;

const CLIENT_ORDER: KeyOrder = KeyOrder {
    keys: &[
        "Debug",
        "Version",
        "ApiVersion",
        "DefaultAPIVersion",
        "GitCommit",
        "GoVersion",
        "Os",
        "Arch",
        "BuildTime",
        "Context",
        "Plugins",
        "Warnings",
    ],
    nested: &[],
};

const COMPONENT_ORDER: KeyOrder = KeyOrder {
    keys: &["Name", "Version", "Details"],
    nested: &[],
};

const SERVER_ORDER: KeyOrder = KeyOrder {
    keys: &[
        "Platform",
        "Components",
        "Version",
        "ApiVersion",
        "MinAPIVersion",
        "GitCommit",
        "GoVersion",
        "Os",
        "Arch",
        "KernelVersion",
        "Experimental",
        "BuildTime",
    ],
    nested: &[("Components", &COMPONENT_ORDER)],
};

/// docker's `version --format json`: its structs' field order.
const VERSION_ORDER: KeyOrder = KeyOrder {
    keys: &["Client", "Server"],
    nested: &[("Client", &CLIENT_ORDER), ("Server", &SERVER_ORDER)],
};

/// docker's `info --format json`: `system.Info`'s field order, then the client's.
const INFO_ORDER: KeyOrder = KeyOrder {
    keys: &[
        "ID",
        "Containers",
        "ContainersRunning",
        "ContainersPaused",
        "ContainersStopped",
        "Images",
        "Driver",
        "DriverStatus",
        "SystemStatus",
        "Plugins",
        "MemoryLimit",
        "SwapLimit",
        "KernelMemory",
        "KernelMemoryTCP",
        "CpuCfsPeriod",
        "CpuCfsQuota",
        "CPUShares",
        "CPUSet",
        "PidsLimit",
        "IPv4Forwarding",
        "BridgeNfIptables",
        "BridgeNfIp6tables",
        "Debug",
        "NFd",
        "OomKillDisable",
        "NGoroutines",
        "SystemTime",
        "LoggingDriver",
        "CgroupDriver",
        "CgroupVersion",
        "NEventsListener",
        "KernelVersion",
        "OperatingSystem",
        "OSVersion",
        "OSType",
        "Architecture",
        "IndexServerAddress",
        "RegistryConfig",
        "NCPU",
        "MemTotal",
        "GenericResources",
        "DockerRootDir",
        "HttpProxy",
        "HttpsProxy",
        "NoProxy",
        "Name",
        "Labels",
        "ExperimentalBuild",
        "ServerVersion",
        "Runtimes",
        "DefaultRuntime",
        "Swarm",
        "LiveRestoreEnabled",
        "Isolation",
        "InitBinary",
        "ContainerdCommit",
        "RuncCommit",
        "InitCommit",
        "SecurityOptions",
        "ProductLicense",
        "DefaultAddressPools",
        "FirewallBackend",
        "CDISpecDirs",
        "Containerd",
        "Warnings",
    ],
    nested: &[("ClientInfo", &CLIENT_ORDER)],
};

/// `--format` for one object: `json` in the key order docker prints, else a template.
fn object_out(fmt: &str, v: &Value, order: &KeyOrder<'_>) -> Result<i32> {
    if fmt.trim() == "json" {
        let mut s = json_ordered(v, order);
        // ClientInfo comes after the daemon's fields in docker's info.
        if let (Some(ci), Value::Object(m)) = (v.get("ClientInfo"), v) {
            let mut without = m.clone();
            without.remove("ClientInfo");
            let head = json_ordered(&Value::Object(without), order);
            let tail = json_ordered(ci, &CLIENT_ORDER);
            s = format!(
                "{},\"ClientInfo\":{tail}}}",
                head.strip_suffix('}').unwrap_or(&head)
            );
            if head == "{}" {
                s = format!("{{\"ClientInfo\":{tail}}}");
            }
        }
        println!("{s}");
        return Ok(0);
    }
    template_out(fmt, v)
}

fn template_out(fmt: &str, v: &Value) -> Result<i32> {
    let f = if fmt.trim() == "json" {
        "{{json .}}"
    } else {
        fmt
    };
    let t =
        Template::parse(&f.replace("\\t", "\t").replace("\\n", "\n")).map_err(|e| status(1, e))?;
    println!("{}", t.render(v, false).map_err(|e| status(1, e))?);
    Ok(0)
}

fn client_info(c: &Client) -> Value {
    json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": c.version().unwrap_or("1.47"),
        "DefaultAPIVersion": "1.47",
        "Os": "linux",
        "Arch": crate::cmd::system::go_arch(),
        "Context": "default",
        "Host": c.host.display(),
    })
}

pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn info(c: &Client, i: InfoCmd) -> Result<i32> {
    let mut v: Value = c.get_json("/info")?;
    if let Some(f) = &i.format {
        v["ClientInfo"] = client_info(c);
        if f.trim() == "json" {
            // Fields docker's struct always prints, zero when the daemon leaves them out.
            let zero = [
                ("GenericResources", Value::Null),
                ("HttpProxy", json!("")),
                ("HttpsProxy", json!("")),
                ("NoProxy", json!("")),
                ("CDISpecDirs", Value::Null),
            ];
            if let Value::Object(m) = &mut v {
                for (k, z) in zero {
                    m.entry(k).or_insert(z);
                }
            }
        }
        return object_out(f, &v, &INFO_ORDER);
    }
    let s = |k: &str| match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        o => o.to_string(),
    };
    let mut o = String::new();
    o.push_str(&format!(
        "Client:\n Version:    {}\n Context:    default\n Debug Mode: false\n\nServer:\n",
        env!("CARGO_PKG_VERSION")
    ));
    o.push_str(&format!(
        " Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}\n",
        s("Containers"),
        s("ContainersRunning"),
        s("ContainersPaused"),
        s("ContainersStopped")
    ));
    o.push_str(&format!(
        " Images: {}\n Server Version: {}\n Storage Driver: {}\n",
        s("Images"),
        s("ServerVersion"),
        s("Driver")
    ));
    for pair in v["DriverStatus"].as_array().into_iter().flatten() {
        if let Some([a, b]) = pair.as_array().map(Vec::as_slice) {
            o.push_str(&format!(
                "  {}: {}\n",
                a.as_str().unwrap_or(""),
                b.as_str().unwrap_or("")
            ));
        }
    }
    o.push_str(&format!(
        " Logging Driver: {}\n Cgroup Driver: {}\n Cgroup Version: {}\n",
        s("LoggingDriver"),
        s("CgroupDriver"),
        s("CgroupVersion")
    ));
    o.push_str(" Plugins:\n");
    for (k, label) in [("Volume", "Volume"), ("Network", "Network"), ("Log", "Log")] {
        let items: Vec<&str> = v["Plugins"][k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        o.push_str(&format!("  {label}: {}\n", items.join(" ")));
    }
    let runtimes: Vec<String> = v["Runtimes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    o.push_str(&format!(
        " Swarm: inactive\n Runtimes: {}\n Default Runtime: {}\n",
        runtimes.join(" "),
        s("DefaultRuntime")
    ));
    let sec: Vec<&str> = v["SecurityOptions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    o.push_str(" Security Options:\n");
    for x in sec {
        for (n, part) in x.split(',').enumerate() {
            let (k, val) = part.split_once('=').unwrap_or(("", part));
            if n == 0 {
                o.push_str(&format!("  {val}\n"));
            } else {
                o.push_str(&format!("   {}: {val}\n", title(k)));
            }
        }
    }
    o.push_str(&format!(" Kernel Version: {}\n Operating System: {}\n OSType: {}\n Architecture: {}\n CPUs: {}\n Total Memory: {}\n Name: {}\n ID: {}\n Docker Root Dir: {}\n Debug Mode: {}\n Experimental: false\n Insecure Registries:\n",
        s("KernelVersion"), s("OperatingSystem"), s("OSType"), s("Architecture"), s("NCPU"),
        crate::format::units::bytes_size(v["MemTotal"].as_f64().unwrap_or(0.0)), s("Name"), s("ID"), s("DockerRootDir"), s("Debug")));
    for r in v["RegistryConfig"]["IndexConfigs"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        if r["Secure"] == false {
            o.push_str(&format!("  {}\n", r["Name"].as_str().unwrap_or("")));
        }
    }
    for r in v["RegistryConfig"]["InsecureRegistryCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        o.push_str(&format!("  {}\n", r.as_str().unwrap_or("")));
    }
    o.push_str(&format!(
        " Live Restore Enabled: {}\n",
        s("LiveRestoreEnabled")
    ));
    print!("{o}");
    for w in v["Warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        eprintln!("{w}");
    }
    Ok(0)
}

fn title(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(h) => h.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

pub fn version(c: &Client, v: VersionCmd) -> Result<i32> {
    let client = client_info(c);
    let server: std::result::Result<Value, _> = c.get_json("/version");
    if let Some(f) = &v.format {
        let all = json!({"Client": client, "Server": server.as_ref().ok()});
        object_out(f, &all, &VERSION_ORDER)?;
        return server.map(|_| 0).map_err(Into::into);
    }
    println!("Client:");
    println!(
        " Version:           {}",
        client["Version"].as_str().unwrap_or("")
    );
    println!(
        " API version:       {}",
        client["ApiVersion"].as_str().unwrap_or("")
    );
    println!(" OS/Arch:           linux/{}", go_arch());
    println!(" Context:           default");
    let server = server?;
    println!();
    println!(
        "Server: {}",
        server["Platform"]["Name"].as_str().unwrap_or("")
    );
    for comp in server["Components"].as_array().into_iter().flatten() {
        println!(" {}:", comp["Name"].as_str().unwrap_or(""));
        println!(
            "  Version:          {}",
            comp["Version"].as_str().unwrap_or("")
        );
        if comp["Name"] == "Engine" {
            let d = &comp["Details"];
            println!(
                "  API version:      {} (minimum version {})",
                d["ApiVersion"].as_str().unwrap_or(""),
                d["MinAPIVersion"].as_str().unwrap_or("")
            );
            println!(
                "  OS/Arch:          {}/{}",
                d["Os"].as_str().unwrap_or(""),
                d["Arch"].as_str().unwrap_or("")
            );
            println!(
                "  Kernel version:   {}",
                d["KernelVersion"].as_str().unwrap_or("")
            );
            println!(
                "  Experimental:     {}",
                d["Experimental"].as_str().unwrap_or("false")
            );
        } else if let Some(d) = comp["Details"].as_object() {
            for (k, val) in d {
                println!("  {k}: {}", val.as_str().unwrap_or(""));
            }
        }
    }
    Ok(0)
}

/// docker's `RFC3339NanoFixed` in local time.
fn event_time(nanos: i64) -> String {
    use chrono::TimeZone;
    let secs = nanos.div_euclid(1_000_000_000);
    let ns = nanos.rem_euclid(1_000_000_000) as u32;
    match chrono::Local.timestamp_opt(secs, ns).single() {
        Some(t) => {
            let off = t.format("%:z").to_string();
            let off = if off == "+00:00" {
                "Z".to_string()
            } else {
                off
            };
            format!("{}{off}", t.format("%Y-%m-%dT%H:%M:%S%.9f"))
        }
        None => String::new(),
    }
}

const ACTOR_ORDER: KeyOrder = KeyOrder {
    keys: &["ID", "Attributes"],
    nested: &[],
};

/// docker's `events.Message` field order.
const EVENT_ORDER: KeyOrder = KeyOrder {
    keys: &[
        "status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano",
    ],
    nested: &[("Actor", &ACTOR_ORDER)],
};

pub fn events(c: &Client, e: EventsCmd) -> Result<i32> {
    let ts = |v: &Option<String>| v.as_deref().map(super::logs::timestamp).unwrap_or_default();
    let q = query(&[
        ("since", ts(&e.since)),
        ("until", ts(&e.until)),
        ("filters", filters_json(&e.filter)?),
    ]);
    let r = c.get(&format!("/events{q}"))?;
    let json_out = e.format.as_deref().map(str::trim) == Some("json");
    let tmpl = match e.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(f) => Some(
            Template::parse(&f.replace("\\t", "\t").replace("\\n", "\n"))
                .map_err(|x| status(1, x))?,
        ),
    };
    let mut out = io::stdout().lock();
    crate::client::json_lines(r, |ev| {
        let line = match &tmpl {
            _ if json_out => json_ordered(&ev, &EVENT_ORDER),
            Some(t) => t.render(&ev, false).map_err(|x| status(1, x))?,
            None => {
                let mut attrs: Vec<String> = ev["Actor"]["Attributes"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect()
                    })
                    .unwrap_or_default();
                attrs.sort();
                let mut l = format!(
                    "{} {} {} {}",
                    event_time(ev["timeNano"].as_i64().unwrap_or(0)),
                    ev["Type"].as_str().unwrap_or(""),
                    ev["Action"].as_str().unwrap_or(""),
                    ev["Actor"]["ID"].as_str().unwrap_or("")
                );
                if !attrs.is_empty() {
                    l.push_str(&format!(" ({})", attrs.join(", ")));
                }
                l
            }
        };
        writeln!(out, "{line}")?;
        out.flush()?;
        Ok(())
    })?;
    Ok(0)
}

const DF_HEADERS: &[(&str, &str)] = &[
    ("Type", "TYPE"),
    ("TotalCount", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
];

fn reclaim(r: f64, total: f64) -> String {
    if total > 0.0 {
        format!("{} ({}%)", human_size4(r), (r * 100.0 / total) as i64)
    } else {
        human_size4(r)
    }
}

pub fn df_rows(v: &Value) -> Vec<Value> {
    let arr = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let images = arr("Images");
    let layers = v["LayersSize"].as_f64().unwrap_or(0.0);
    // As docker: an image in use counts its unique size; unknown sizes (-1) count nothing.
    let used: f64 = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) != 0)
        .map(|i| {
            let size = i["Size"].as_f64().unwrap_or(-1.0);
            let shared = i["SharedSize"].as_f64().unwrap_or(-1.0);
            if size < 0.0 || shared < 0.0 {
                0.0
            } else {
                size - shared
            }
        })
        .sum();
    let img_active = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .count();
    let cs = arr("Containers");
    let c_size: f64 = cs.iter().map(|c| c["SizeRw"].as_f64().unwrap_or(0.0)).sum();
    let c_active = cs.iter().filter(|c| c["State"] == "running").count();
    let c_rec: f64 = cs
        .iter()
        .filter(|c| c["State"] != "running")
        .map(|c| c["SizeRw"].as_f64().unwrap_or(0.0))
        .sum();
    let vs = arr("Volumes");
    let v_size: f64 = vs
        .iter()
        .map(|x| x["UsageData"]["Size"].as_f64().unwrap_or(0.0).max(0.0))
        .sum();
    let v_active = vs
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0)
        .count();
    let v_rec: f64 = vs
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) == 0)
        .map(|x| x["UsageData"]["Size"].as_f64().unwrap_or(0.0).max(0.0))
        .sum();
    let bc = arr("BuildCache");
    let b_size: f64 = bc.iter().map(|x| x["Size"].as_f64().unwrap_or(0.0)).sum();
    let b_active = bc.iter().filter(|x| x["InUse"] == true).count();
    let b_rec: f64 = bc
        .iter()
        .filter(|x| x["InUse"] != true && x["Shared"] != true)
        .map(|x| x["Size"].as_f64().unwrap_or(0.0))
        .sum();
    vec![
        json!({"Type": "Images", "TotalCount": images.len().to_string(), "Active": img_active.to_string(), "Size": human_size4(layers), "Reclaimable": reclaim(layers - used, layers)}),
        json!({"Type": "Containers", "TotalCount": cs.len().to_string(), "Active": c_active.to_string(), "Size": human_size4(c_size), "Reclaimable": reclaim(c_rec, c_size)}),
        json!({"Type": "Local Volumes", "TotalCount": vs.len().to_string(), "Active": v_active.to_string(), "Size": human_size4(v_size), "Reclaimable": reclaim(v_rec, v_size)}),
        json!({"Type": "Build Cache", "TotalCount": bc.len().to_string(), "Active": b_active.to_string(), "Size": human_size4(b_size), "Reclaimable": human_size4(b_rec)}),
    ]
}

pub fn system(c: &Client, s: SystemCmd) -> Result<i32> {
    use super::units;
    match s {
        SystemCmd::List(l) => units::list(c, l),
        SystemCmd::Status(st) => units::status_cmd(c, st),
        SystemCmd::Start(n) => units::job(c, &n.units, "start"),
        SystemCmd::Stop(n) => units::job(c, &n.units, "stop"),
        SystemCmd::Restart(n) => units::job(c, &n.units, "restart"),
        SystemCmd::Enable(e) => units::enable(c, e, true),
        SystemCmd::Disable(e) => units::enable(c, e, false),
        SystemCmd::Logs(l) => units::logs(c, l),
        SystemCmd::Cat(n) => units::cat(c, n),
        SystemCmd::Reload => units::reload(c),
        SystemCmd::Info(i) => info(c, i),
        SystemCmd::Events(e) => events(c, e),
        SystemCmd::Df { format, verbose } => {
            let v: Value = c.get_json("/system/df")?;
            if verbose {
                print!("{}", super::df::verbose(&v).map_err(|e| status(1, e))?);
                return Ok(0);
            }
            let f = Format::new(
                format.as_deref(),
                "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
            )
            .map_err(|e| status(1, e))?
            // docker's rows are one context per type; the first is the images'.
            .in_context(Ctx("*formatter.diskUsageImagesContext"));
            print!(
                "{}",
                f.render(&df_rows(&v), DF_HEADERS)
                    .map_err(|e| status(1, e))?
            );
            Ok(0)
        }
        SystemCmd::Prune {
            all,
            filter,
            force,
            volumes,
        } => {
            let mut warn = String::from("WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n");
            if volumes {
                warn.push_str("  - all anonymous volumes not used by at least one container\n");
            }
            warn.push_str(if all {
                "  - all images without at least one container associated to them\n"
            } else {
                "  - all dangling images\n"
            });
            warn.push_str("  - unused build cache\n");
            if !confirm(force, &warn) {
                return Ok(0);
            }
            let fq = filters_json(&filter)?;
            let mut total = 0.0;
            let r: Value = c.post_json(
                &format!("/containers/prune{}", query(&[("filters", fq.clone())])),
                None,
            )?;
            total += r["SpaceReclaimed"].as_f64().unwrap_or(0.0);
            let list = |k: &str, r: &Value| -> Vec<String> {
                r[k].as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let cs = list("ContainersDeleted", &r);
            if !cs.is_empty() {
                println!("Deleted Containers:\n{}\n", cs.join("\n"));
            }
            // kosd serves no user networks or build cache yet: a missing endpoint means nothing to prune.
            match c.post_json::<Value>(
                &format!("/networks/prune{}", query(&[("filters", fq.clone())])),
                None,
            ) {
                Ok(r) => {
                    let ns = list("NetworksDeleted", &r);
                    if !ns.is_empty() {
                        println!("Deleted Networks:\n{}\n", ns.join("\n"));
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            if volumes {
                let r: Value = c.post_json(
                    &format!("/volumes/prune{}", query(&[("filters", fq.clone())])),
                    None,
                )?;
                total += r["SpaceReclaimed"].as_f64().unwrap_or(0.0);
                let vs = list("VolumesDeleted", &r);
                if !vs.is_empty() {
                    println!("Deleted Volumes:\n{}\n", vs.join("\n"));
                }
            }
            let mut f = filter.clone();
            f.push(format!("dangling={}", !all));
            let r: Value = c.post_json(
                &format!("/images/prune{}", query(&[("filters", filters_json(&f)?)])),
                None,
            )?;
            total += r["SpaceReclaimed"].as_f64().unwrap_or(0.0);
            let imgs = r["ImagesDeleted"].as_array().cloned().unwrap_or_default();
            if !imgs.is_empty() {
                println!("Deleted Images:");
                for i in imgs {
                    if let Some(u) = i["Untagged"].as_str() {
                        println!("untagged: {u}");
                    }
                    if let Some(d) = i["Deleted"].as_str() {
                        println!("deleted: {d}");
                    }
                }
                println!();
            }
            match c.post_json::<Value>("/build/prune", None) {
                Ok(r) => total += r["SpaceReclaimed"].as_f64().unwrap_or(0.0),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            println!("Total reclaimed space: {}", human_size4(total));
            Ok(0)
        }
    }
}

pub fn login(c: &Client, l: LoginCmd) -> Result<i32> {
    let server = l
        .server
        .clone()
        .unwrap_or_else(|| "https://index.docker.io/v1/".into());
    let mut password = l.password.clone().unwrap_or_default();
    if l.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        if l.password_stdin {
            return Err(status(
                1,
                "--password and --password-stdin are mutually exclusive",
            ));
        }
    }
    if l.password_stdin {
        if l.username.is_none() {
            return Err(status(1, "Must provide --username with --password-stdin"));
        }
        io::stdin()
            .lock()
            .take(64 * 1024)
            .read_to_string(&mut password)?;
        password = password.trim_end_matches(['\n', '\r']).to_string();
    }
    let username = match l.username.clone() {
        Some(u) => u,
        None => {
            if !crate::tty::is_tty(0) {
                return Err(status(
                    1,
                    "Error: Cannot perform an interactive login from a non TTY device",
                ));
            }
            print!("Username: ");
            io::stdout().flush()?;
            let mut u = String::new();
            io::stdin().read_line(&mut u)?;
            u.trim().to_string()
        }
    };
    if password.is_empty() {
        if !crate::tty::is_tty(0) {
            return Err(status(
                1,
                "Error: Cannot perform an interactive login from a non TTY device",
            ));
        }
        print!("Password: ");
        io::stdout().flush()?;
        let raw = crate::tty::RawMode::enter(0).context("reading the password")?;
        let mut p = Vec::new();
        let mut b = [0u8; 1];
        while io::stdin().read(&mut b)? == 1 && b[0] != b'\r' && b[0] != b'\n' {
            p.push(b[0]);
        }
        drop(raw);
        println!();
        password = String::from_utf8_lossy(&p).into_owned();
    }
    if username.is_empty() || password.is_empty() {
        return Err(status(1, "Error: Username and password are required"));
    }
    // kos keeps no credentials itself: kosd checks them with the registry and
    // holds logins (encrypted) for later pulls and pushes.
    let body = json!({"username": username, "password": password, "serveraddress": server});
    let r: Value = c.post_json("/auth", Some(&body))?;
    println!(
        "{}",
        r["Status"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("Login Succeeded")
    );
    Ok(0)
}

pub fn logout(_c: &Client, l: LogoutCmd) -> Result<i32> {
    let server = l
        .server
        .unwrap_or_else(|| "https://index.docker.io/v1/".into());
    // Nothing is stored on this side; the Engine API has no call to forget a login.
    println!("Not logged in to {server}");
    Ok(0)
}

pub fn completion(shell: &str) -> Result<i32> {
    use clap_complete::{generate, Shell};
    let sh = match shell {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => return Err(status(1, format!("unsupported shell {other:?}"))),
    };
    generate(sh, &mut Cli::command(), "kos", &mut io::stdout());
    Ok(0)
}

pub fn man(dir: &str) -> Result<i32> {
    let out = std::path::Path::new(dir);
    std::fs::create_dir_all(out).with_context(|| format!("creating {dir}"))?;
    let cmd = Cli::command();
    fn write_page(cmd: &clap::Command, name: &str, out: &std::path::Path) -> Result<()> {
        let cmd = cmd
            .clone()
            .display_name(name.to_string())
            .bin_name(name.to_string());
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
        std::fs::write(out.join(format!("{name}.1")), buf)
            .with_context(|| format!("writing {name}.1"))?;
        for sub in cmd.get_subcommands() {
            write_page(sub, &format!("{name}-{}", sub.get_name()), out)?;
        }
        Ok(())
    }
    write_page(&cmd, "kos", out)?;
    Ok(0)
}
