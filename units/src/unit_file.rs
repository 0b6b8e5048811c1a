//! A unit's typed definition, built from its file and drop-ins (already lexed and in
//! override order). Keys follow systemd (`[Unit]`, `[Service]`, `[Install]`) and Podman's
//! Quadlet (`[Container]`). Rules as systemd's: a later assignment of a single-valued key
//! wins; list keys accumulate, and an empty assignment resets the list; an empty assignment
//! of a single-valued key restores its default. Unknown sections and keys are warnings.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ini::{split_words, Assignment};
use crate::spec::{ContainerSpec, DeviceMapping, ExecCommand, HealthConfig, Mount, PortBinding};
use crate::timespan::{self, Span};

/// What a unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// `NAME.container`: a service whose main process is a container.
    Container,
    /// `NAME.target`: a synchronization point with no process.
    Target,
}

impl UnitKind {
    /// The kind a file name's suffix says, if it is a valid unit name.
    pub fn of_name(name: &str) -> Option<UnitKind> {
        if name.is_empty()
            || name.len() > 255
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '@' | '-'))
        {
            return None;
        }
        let (stem, suffix) = name.rsplit_once('.')?;
        if stem.is_empty() {
            return None;
        }
        match suffix {
            "container" => Some(UnitKind::Container),
            "target" => Some(UnitKind::Target),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    Simple,
    Notify,
    Oneshot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    OnSuccess,
    OnFailure,
    OnAbnormal,
    OnWatchdog,
    OnAbort,
    Always,
}

/// Which senders a unit's notify socket accepts (`NotifyAccess=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyAccess {
    None,
    Main,
    /// Any process of the unit (the default for notify and watchdog units, as Quadlet sets
    /// it: a container's init may be a small init that forks the daemon).
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub service_type: ServiceType,
    pub restart: RestartPolicy,
    pub restart_sec: Duration,
    pub restart_steps: u32,
    pub restart_max_delay: Span,
    pub start_limit_interval: Duration,
    pub start_limit_burst: u32,
    pub timeout_start: Span,
    pub timeout_stop: Span,
    pub timeout_abort: Option<Span>,
    pub watchdog: Option<Duration>,
    pub remain_after_exit: bool,
    pub notify_access: Option<NotifyAccess>,
    pub exec_start_pre: Vec<ExecCommand>,
    pub exec_start_post: Vec<ExecCommand>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            service_type: ServiceType::Simple,
            restart: RestartPolicy::No,
            restart_sec: Duration::from_millis(100),
            restart_steps: 0,
            restart_max_delay: None,
            start_limit_interval: Duration::from_secs(10),
            start_limit_burst: 5,
            timeout_start: Some(Duration::from_secs(90)),
            timeout_stop: Some(Duration::from_secs(90)),
            timeout_abort: None,
            watchdog: None,
            remain_after_exit: false,
            notify_access: None,
            exec_start_pre: Vec::new(),
            exec_start_post: Vec::new(),
        }
    }
}

impl ServiceConfig {
    /// `NotifyAccess=` as set, else `all` for notify and watchdog units and `none` otherwise.
    pub fn effective_notify_access(&self) -> NotifyAccess {
        self.notify_access.unwrap_or(
            if self.service_type == ServiceType::Notify || self.watchdog.is_some() {
                NotifyAccess::All
            } else {
                NotifyAccess::None
            },
        )
    }

    /// The time between the watchdog's SIGABRT and SIGKILL (`TimeoutAbortSec=`, defaulting to
    /// `TimeoutStopSec=`).
    pub fn abort_timeout(&self) -> Span {
        self.timeout_abort.unwrap_or(self.timeout_stop)
    }

    /// The delay before restart number `n` (1-based), as systemd 254+: from `RestartSec=`
    /// growing exponentially to `RestartMaxDelaySec=` over `RestartSteps=` steps.
    pub fn restart_delay(&self, n: u32) -> Duration {
        let base = self.restart_sec;
        let Some(max) = self.restart_max_delay else {
            return base;
        };
        if self.restart_steps == 0 || base.is_zero() || base >= max || n <= 1 {
            return base;
        }
        if n > self.restart_steps {
            return max;
        }
        let ratio = max.as_secs_f64() / base.as_secs_f64();
        let f = ratio.powf(f64::from(n - 1) / f64::from(self.restart_steps));
        Duration::from_secs_f64(base.as_secs_f64() * f).min(max)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallConfig {
    pub wanted_by: Vec<String>,
    pub required_by: Vec<String>,
}

/// Dependencies as written in `[Unit]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitDeps {
    pub requires: Vec<String>,
    pub wants: Vec<String>,
    pub binds_to: Vec<String>,
    pub after: Vec<String>,
    pub before: Vec<String>,
    pub conflicts: Vec<String>,
    pub on_failure: Vec<String>,
}

/// A loaded unit.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitDef {
    pub name: String,
    pub kind: UnitKind,
    pub description: String,
    pub deps: UnitDeps,
    pub default_dependencies: bool,
    pub service: ServiceConfig,
    pub install: InstallConfig,
    /// Empty for targets.
    pub container: ContainerSpec,
    /// The main file, then the drop-ins in the order they were applied.
    pub fragment: PathBuf,
    pub dropins: Vec<PathBuf>,
    /// Unknown sections and keys, each naming file, line and key.
    pub warnings: Vec<String>,
}

impl UnitDef {
    /// Builds the definition of `name` from its assignments (main file first, then
    /// drop-ins in order).
    pub fn build(
        name: &str,
        fragment: PathBuf,
        dropins: Vec<PathBuf>,
        assignments: &[Assignment],
    ) -> Result<UnitDef> {
        let kind = UnitKind::of_name(name).ok_or_else(|| Error::BadName(name.to_string()))?;
        let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name);
        let mut def = UnitDef {
            name: name.to_string(),
            kind,
            description: String::new(),
            deps: UnitDeps::default(),
            default_dependencies: true,
            service: ServiceConfig::default(),
            install: InstallConfig::default(),
            container: ContainerSpec {
                name: format!("kos-{stem}"),
                ..Default::default()
            },
            fragment,
            dropins,
            warnings: Vec::new(),
        };
        for a in assignments {
            def.apply(a).map_err(|msg| Error::Parse {
                file: a.file.clone(),
                line: a.line,
                key: Some(a.key.clone()),
                msg,
            })?;
        }
        if kind == UnitKind::Container {
            if def.container.image.is_empty() {
                return Err(Error::Parse {
                    file: def.fragment.clone(),
                    line: 0,
                    key: Some("Image".into()),
                    msg: "[Container] needs Image=".into(),
                });
            }
            def.container.kos.unit = name.to_string();
        }
        // systemd: oneshot services have no start timeout unless one is set.
        let timeout_set = assignments.iter().any(|a| {
            a.section == "Service"
                && matches!(a.key.as_str(), "TimeoutStartSec" | "TimeoutSec")
                && !a.value.is_empty()
        });
        if def.service.service_type == ServiceType::Oneshot && !timeout_set {
            def.service.timeout_start = None;
        }
        if def.service.service_type == ServiceType::Oneshot
            && def.service.restart != RestartPolicy::No
            && def.service.restart != RestartPolicy::OnFailure
            && def.service.restart != RestartPolicy::OnAbnormal
            && def.service.restart != RestartPolicy::OnAbort
            && def.service.restart != RestartPolicy::OnWatchdog
        {
            return Err(Error::Parse {
                file: def.fragment.clone(),
                line: 0,
                key: Some("Restart".into()),
                msg: "Type=oneshot allows only Restart=no or on-failure/on-abnormal/on-abort/on-watchdog".into(),
            });
        }
        Ok(def)
    }

    fn warn(&mut self, a: &Assignment, what: &str) {
        let w = format!(
            "{}:{}: {}: {what}, ignoring",
            a.file.display(),
            a.line,
            a.key
        );
        tracing::warn!("{w}");
        self.warnings.push(w);
    }

    fn apply(&mut self, a: &Assignment) -> std::result::Result<(), String> {
        let v = a.value.as_str();
        match (a.section.as_str(), self.kind) {
            ("Unit", _) => self.apply_unit(a, v),
            ("Install", _) => {
                match a.key.as_str() {
                    "WantedBy" => list_names(&mut self.install.wanted_by, v)?,
                    "RequiredBy" => list_names(&mut self.install.required_by, v)?,
                    _ => self.warn(a, "unknown key in [Install]"),
                }
                Ok(())
            }
            ("Service", UnitKind::Container) => self.apply_service(a, v),
            ("Container", UnitKind::Container) => self.apply_container(a, v),
            ("Service" | "Container", UnitKind::Target) => {
                self.warn(a, "section not allowed in a target");
                Ok(())
            }
            _ => {
                let what = format!("unknown section [{}]", a.section);
                self.warn(a, &what);
                Ok(())
            }
        }
    }

    fn apply_unit(&mut self, a: &Assignment, v: &str) -> std::result::Result<(), String> {
        let d = &mut self.deps;
        match a.key.as_str() {
            "Description" => self.description = v.to_string(),
            "Requires" => list_names(&mut d.requires, v)?,
            "Wants" => list_names(&mut d.wants, v)?,
            "BindsTo" => list_names(&mut d.binds_to, v)?,
            "After" => list_names(&mut d.after, v)?,
            "Before" => list_names(&mut d.before, v)?,
            "Conflicts" => list_names(&mut d.conflicts, v)?,
            "OnFailure" => list_names(&mut d.on_failure, v)?,
            "DefaultDependencies" => {
                self.default_dependencies = if v.is_empty() { true } else { boolean(v)? }
            }
            "StartLimitIntervalSec" => {
                self.service.start_limit_interval = if v.is_empty() {
                    ServiceConfig::default().start_limit_interval
                } else {
                    span(v)?.unwrap_or(Duration::ZERO)
                }
            }
            "StartLimitBurst" => {
                self.service.start_limit_burst = if v.is_empty() {
                    ServiceConfig::default().start_limit_burst
                } else {
                    v.parse().map_err(|_| format!("invalid number {v:?}"))?
                }
            }
            _ => self.warn(a, "unknown key in [Unit]"),
        }
        Ok(())
    }

    fn apply_service(&mut self, a: &Assignment, v: &str) -> std::result::Result<(), String> {
        let def = ServiceConfig::default();
        let s = &mut self.service;
        match a.key.as_str() {
            "Type" => {
                s.service_type = match v {
                    "" | "simple" => ServiceType::Simple,
                    "notify" => ServiceType::Notify,
                    "oneshot" => ServiceType::Oneshot,
                    _ => return Err(format!("unsupported Type {v:?} (simple, notify, oneshot)")),
                }
            }
            "Restart" => {
                s.restart = match v {
                    "" | "no" => RestartPolicy::No,
                    "on-success" => RestartPolicy::OnSuccess,
                    "on-failure" => RestartPolicy::OnFailure,
                    "on-abnormal" => RestartPolicy::OnAbnormal,
                    "on-watchdog" => RestartPolicy::OnWatchdog,
                    "on-abort" => RestartPolicy::OnAbort,
                    "always" => RestartPolicy::Always,
                    _ => return Err(format!("invalid Restart {v:?}")),
                }
            }
            "RestartSec" => {
                s.restart_sec =
                    or_default(
                        v,
                        def.restart_sec,
                        |v| Ok(span(v)?.unwrap_or(Duration::MAX)),
                    )?
            }
            "RestartSteps" => {
                s.restart_steps = or_default(v, 0, |v| {
                    v.parse().map_err(|_| format!("invalid number {v:?}"))
                })?
            }
            "RestartMaxDelaySec" => s.restart_max_delay = or_default(v, None, span)?,
            "StartLimitIntervalSec" | "StartLimitBurst" => return self.apply_unit(a, v),
            "TimeoutStartSec" => s.timeout_start = or_default(v, def.timeout_start, zero_infinite)?,
            "TimeoutStopSec" => s.timeout_stop = or_default(v, def.timeout_stop, zero_infinite)?,
            "TimeoutAbortSec" => {
                s.timeout_abort = if v.is_empty() {
                    None
                } else {
                    Some(zero_infinite(v)?)
                }
            }
            "TimeoutSec" => {
                let t = or_default(v, def.timeout_start, zero_infinite)?;
                s.timeout_start = t;
                s.timeout_stop = t;
            }
            "WatchdogSec" => {
                s.watchdog = or_default(v, None, |v| Ok(span(v)?.filter(|d| !d.is_zero())))?
            }
            "RemainAfterExit" => s.remain_after_exit = or_default(v, false, boolean)?,
            "NotifyAccess" => {
                s.notify_access = match v {
                    "" => None,
                    "none" => Some(NotifyAccess::None),
                    "main" => Some(NotifyAccess::Main),
                    "all" => Some(NotifyAccess::All),
                    _ => return Err(format!("invalid NotifyAccess {v:?} (none, main, all)")),
                }
            }
            "ExecStartPre" => exec_list(&mut s.exec_start_pre, v)?,
            "ExecStartPost" => exec_list(&mut s.exec_start_post, v)?,
            _ => self.warn(a, "unknown key in [Service]"),
        }
        Ok(())
    }

    fn apply_container(&mut self, a: &Assignment, v: &str) -> std::result::Result<(), String> {
        let c = &mut self.container;
        let h = &mut c.host_config;
        match a.key.as_str() {
            "Image" => c.image = v.to_string(),
            "ContainerName" => {
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
                {
                    return Err(format!("invalid container name {v:?}"));
                }
                c.name = v.to_string()
            }
            "Exec" => c.cmd = split_words(v)?,
            "Entrypoint" => {
                c.entrypoint = if v.is_empty() {
                    None
                } else {
                    Some(split_words(v)?)
                }
            }
            "WorkingDir" => c.working_dir = (!v.is_empty()).then(|| v.to_string()),
            "User" => c.user = (!v.is_empty()).then(|| v.to_string()),
            "Environment" => {
                if v.is_empty() {
                    c.env.clear();
                }
                for w in split_words(v)? {
                    let (k, _) = w
                        .split_once('=')
                        .ok_or_else(|| format!("{w:?} is not KEY=VALUE"))?;
                    if k.is_empty() {
                        return Err(format!("{w:?} has an empty name"));
                    }
                    c.env
                        .retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k));
                    c.env.push(w);
                }
            }
            "Label" => {
                if v.is_empty() {
                    c.labels.clear();
                }
                for w in split_words(v)? {
                    let (k, val) = w
                        .split_once('=')
                        .ok_or_else(|| format!("{w:?} is not KEY=VALUE"))?;
                    c.labels.insert(k.to_string(), val.to_string());
                }
            }
            "Volume" => {
                if v.is_empty() {
                    h.binds.clear();
                } else {
                    h.binds.push(volume(v)?);
                }
            }
            "Mount" => {
                if v.is_empty() {
                    h.mounts.clear();
                } else {
                    h.mounts.push(mount(v)?);
                }
            }
            "PublishPort" => {
                if v.is_empty() {
                    h.port_bindings.clear();
                    c.exposed_ports.clear();
                } else {
                    let (key, b) = publish_port(v)?;
                    c.exposed_ports.insert(key.clone(), Default::default());
                    h.port_bindings.entry(key).or_default().push(b);
                }
            }
            "Network" => {
                if v.is_empty() {
                    h.network_mode = None;
                    c.kos.networks.clear();
                } else if h.network_mode.is_none() {
                    h.network_mode = Some(v.to_string());
                } else {
                    c.kos.networks.push(v.to_string());
                }
            }
            "AddDevice" => {
                if v.is_empty() {
                    h.devices.clear();
                } else {
                    h.devices.push(device(v)?);
                }
            }
            "AddCapability" => caps(&mut h.cap_add, v)?,
            "DropCapability" => caps(&mut h.cap_drop, v)?,
            "ReadOnly" => h.readonly_rootfs = or_default(v, false, boolean)?,
            "Pid" => {
                h.pid_mode = match v {
                    "" | "private" => None,
                    "host" => Some("host".into()),
                    _ => {
                        return Err(format!(
                            "invalid pid namespace {v:?}: expected host or private"
                        ))
                    }
                }
            }
            "SecurityLabel" => set_opt(&mut h.security_opt, "label=", v),
            "SecurityLabelType" => set_opt(&mut h.security_opt, "label=type:", v),
            "SecurityLabelLevel" => set_opt(&mut h.security_opt, "label=level:", v),
            "SecurityLabelDisable" => {
                let on = or_default(v, false, boolean)?;
                h.security_opt.retain(|o| o != "label=disable");
                if on {
                    h.security_opt.push("label=disable".into());
                }
            }
            "Landlock" => {
                if !v.is_empty() {
                    serde_json::from_str::<serde_json::Value>(v)
                        .map_err(|e| format!("Landlock= is not a JSON ruleset: {e}"))?;
                }
                set_opt(&mut h.security_opt, "landlock=", v)
            }
            "Memory" => h.memory = or_default(v, 0, size)?,
            "CPU" => {
                h.nano_cpus = or_default(v, 0, |v| {
                    let f: f64 = v.parse().map_err(|_| format!("invalid CPU count {v:?}"))?;
                    if !(f.is_finite() && f > 0.0 && f < 1e6) {
                        return Err(format!("invalid CPU count {v:?}"));
                    }
                    Ok((f * 1e9) as i64)
                })?
            }
            "Pids" => {
                h.pids_limit = match v {
                    "" | "max" | "infinity" => None,
                    _ => Some(
                        v.parse::<i64>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| format!("invalid pids limit {v:?}"))?,
                    ),
                }
            }
            "HealthCmd" => {
                c.healthcheck = match v {
                    "" => None,
                    "none" => Some(HealthConfig {
                        test: vec!["NONE".into()],
                        ..Default::default()
                    }),
                    _ => {
                        let mut hc = c.healthcheck.take().unwrap_or_default();
                        hc.test = vec!["CMD-SHELL".into(), v.to_string()];
                        Some(hc)
                    }
                }
            }
            "HealthInterval" | "HealthTimeout" | "HealthStartPeriod" | "HealthRetries" => {
                let hc = c.healthcheck.get_or_insert_with(HealthConfig::default);
                let n = if v.is_empty() {
                    0
                } else if a.key == "HealthRetries" {
                    v.parse().map_err(|_| format!("invalid number {v:?}"))?
                } else {
                    let d = span(v)?.ok_or("infinity is not allowed here")?;
                    i64::try_from(d.as_nanos()).map_err(|_| "too large".to_string())?
                };
                match a.key.as_str() {
                    "HealthInterval" => hc.interval = n,
                    "HealthTimeout" => hc.timeout = n,
                    "HealthStartPeriod" => hc.start_period = n,
                    _ => hc.retries = n,
                }
            }
            _ => self.warn(a, "unknown key in [Container]"),
        }
        Ok(())
    }
}

fn or_default<T>(
    v: &str,
    def: T,
    f: impl FnOnce(&str) -> std::result::Result<T, String>,
) -> std::result::Result<T, String> {
    if v.is_empty() {
        Ok(def)
    } else {
        f(v)
    }
}

fn span(v: &str) -> std::result::Result<Span, String> {
    timespan::parse(v)
}

/// Timeouts: `0` means no timeout, as in systemd.
fn zero_infinite(v: &str) -> std::result::Result<Span, String> {
    Ok(span(v)?.filter(|d| !d.is_zero()))
}

/// systemd's booleans.
pub fn boolean(v: &str) -> std::result::Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Ok(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Ok(false),
        _ => Err(format!("invalid boolean {v:?}")),
    }
}

fn list_names(list: &mut Vec<String>, v: &str) -> std::result::Result<(), String> {
    if v.is_empty() {
        list.clear();
        return Ok(());
    }
    for w in v.split_whitespace() {
        if UnitKind::of_name(w).is_none() {
            return Err(format!(
                "invalid unit name {w:?} (NAME.container or NAME.target)"
            ));
        }
        if !list.iter().any(|x| x == w) {
            list.push(w.to_string());
        }
    }
    Ok(())
}

fn exec_list(list: &mut Vec<ExecCommand>, v: &str) -> std::result::Result<(), String> {
    if v.is_empty() {
        list.clear();
        return Ok(());
    }
    let mut rest = v;
    let mut ignore_failure = false;
    if let Some(r) = rest.strip_prefix('-') {
        ignore_failure = true;
        rest = r;
    }
    let mut on_host = false;
    if let Some(r) = rest.strip_prefix("host:") {
        on_host = true;
        rest = r;
    }
    let argv = split_words(rest)?;
    if argv.is_empty() {
        return Err("empty command".into());
    }
    if on_host && !argv[0].starts_with('/') {
        return Err(format!(
            "host command {:?} must be an absolute path",
            argv[0]
        ));
    }
    list.push(ExecCommand {
        argv,
        ignore_failure,
        on_host,
    });
    Ok(())
}

fn caps(list: &mut Vec<String>, v: &str) -> std::result::Result<(), String> {
    if v.is_empty() {
        list.clear();
    }
    for w in v.split_whitespace() {
        let up = w.to_ascii_uppercase();
        let name = if up == "ALL" || up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        };
        if name != "ALL"
            && !name[4..]
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!("invalid capability {w:?}"));
        }
        if !list.contains(&name) {
            list.push(name);
        }
    }
    Ok(())
}

/// Replaces the `--security-opt` entries starting with `prefix` by `prefix + v` (none when
/// `v` is empty).
fn set_opt(list: &mut Vec<String>, prefix: &str, v: &str) {
    list.retain(|o| !o.starts_with(prefix));
    if !v.is_empty() {
        list.push(format!("{prefix}{v}"));
    }
}

/// `512`, `512K`, `1.5G`: bytes with binary suffixes, as `docker run --memory`.
fn size(v: &str) -> std::result::Result<i64, String> {
    let t = v.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_lowercase() {
                'b' => 1,
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                _ => return Err(format!("invalid size {v:?}")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let f: f64 = num.parse().map_err(|_| format!("invalid size {v:?}"))?;
    let bytes = f * mult as f64;
    if !(1.0..9.0e18).contains(&bytes) {
        return Err(format!("invalid size {v:?}"));
    }
    Ok(bytes as i64)
}

fn volume(v: &str) -> std::result::Result<String, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let dst = match parts.len() {
        1 => parts[0],
        2 | 3 => parts[1],
        _ => return Err(format!("invalid volume {v:?} (SRC:DST[:OPTIONS])")),
    };
    if !dst.starts_with('/') || parts.iter().take(2).any(|p| p.is_empty()) {
        return Err(format!(
            "invalid volume {v:?}: the destination must be an absolute path"
        ));
    }
    Ok(v.to_string())
}

fn mount(v: &str) -> std::result::Result<Mount, String> {
    let mut m = Mount {
        kind: "volume".into(),
        ..Default::default()
    };
    for field in v.split(',') {
        let (k, val) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => m.kind = val.to_string(),
            "source" | "src" => m.source = val.to_string(),
            "destination" | "dst" | "target" => m.target = val.to_string(),
            "ro" | "readonly" => m.read_only = val.is_empty() || boolean(val)?,
            "rw" => m.read_only = false,
            _ => return Err(format!("unknown mount option {k:?} in {v:?}")),
        }
    }
    if !matches!(m.kind.as_str(), "bind" | "volume" | "tmpfs") {
        return Err(format!("unsupported mount type {:?}", m.kind));
    }
    if !m.target.starts_with('/') {
        return Err(format!("mount {v:?} needs an absolute destination"));
    }
    if m.kind == "bind" && !m.source.starts_with('/') {
        return Err(format!("bind mount {v:?} needs an absolute source"));
    }
    Ok(m)
}

fn port(p: &str, what: &str, v: &str) -> std::result::Result<(), String> {
    // a single port or a range "8000-8010"
    let ok = p.split_once('-').map_or_else(
        || p.parse::<u16>().is_ok_and(|n| n > 0),
        |(a, b)| a.parse::<u16>().is_ok_and(|n| n > 0) && b.parse::<u16>().is_ok_and(|n| n > 0),
    );
    if ok {
        Ok(())
    } else {
        Err(format!("invalid {what} port {p:?} in {v:?}"))
    }
}

/// `[[IP:][HOST]:]CONTAINER[/PROTO]` as `podman run --publish`.
fn publish_port(v: &str) -> std::result::Result<(String, PortBinding), String> {
    let (addr, proto) = v.rsplit_once('/').unwrap_or((v, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(format!("invalid protocol {proto:?} in {v:?}"));
    }
    let (ip, rest) = if let Some(r) = addr.strip_prefix('[') {
        let (ip, r) = r
            .split_once("]:")
            .ok_or_else(|| format!("invalid address in {v:?}"))?;
        (ip.to_string(), r)
    } else {
        let n = addr.matches(':').count();
        if n == 2 {
            let (ip, r) = addr.split_once(':').unwrap_or(("", addr));
            (ip.to_string(), r)
        } else if n > 2 {
            return Err(format!("invalid port mapping {v:?}"));
        } else {
            (String::new(), addr)
        }
    };
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("invalid host IP {ip:?} in {v:?}"));
    }
    let (host, ctr) = rest.split_once(':').unwrap_or(("", rest));
    port(ctr, "container", v)?;
    if !host.is_empty() {
        port(host, "host", v)?;
    }
    Ok((
        format!("{ctr}/{proto}"),
        PortBinding {
            host_ip: ip,
            host_port: host.to_string(),
        },
    ))
}

/// `HOST[:CONTAINER][:PERMS]` as `podman run --device`.
fn device(v: &str) -> std::result::Result<DeviceMapping, String> {
    let mut parts: Vec<&str> = v.split(':').collect();
    let mut perms = "rwm".to_string();
    if parts.len() > 1 {
        let last = parts[parts.len() - 1];
        if !last.is_empty() && last.chars().all(|c| "rwm".contains(c)) {
            perms = last.to_string();
            parts.pop();
        }
    }
    let (host, ctr) = match parts.as_slice() {
        [h] => (*h, *h),
        [h, c] => (*h, *c),
        _ => {
            return Err(format!(
                "invalid device {v:?} (HOST[:CONTAINER][:PERMISSIONS])"
            ))
        }
    };
    if !host.starts_with("/dev/") || !ctr.starts_with('/') {
        return Err(format!(
            "invalid device {v:?}: paths must be absolute, the host one under /dev"
        ));
    }
    Ok(DeviceMapping {
        path_on_host: host.into(),
        path_in_container: ctr.into(),
        cgroup_permissions: perms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ini::lex;
    use std::path::Path;

    fn build(name: &str, text: &str) -> Result<UnitDef> {
        let p = Path::new("/u").join(name);
        let a = lex(&p, text)?;
        UnitDef::build(name, p, vec![], &a)
    }

    #[test]
    fn names() {
        assert_eq!(
            UnitKind::of_name("kos-dns.container"),
            Some(UnitKind::Container)
        );
        assert_eq!(
            UnitKind::of_name("kos-system.target"),
            Some(UnitKind::Target)
        );
        for bad in [
            "",
            ".target",
            "a.service",
            "a b.target",
            "../x.container",
            "a/b.target",
        ] {
            assert_eq!(UnitKind::of_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn container_keys_map_onto_docker_fields() {
        let d = build(
            "web.container",
            r#"[Unit]
Description=Web
[Container]
Image=registry.local/web:1
Exec=/bin/httpd -f -p "8080"
Environment=A=1 "B=two words"
Environment=A=3
Volume=/srv:/srv:ro
Mount=type=bind,source=/data,destination=/data,ro
PublishPort=127.0.0.1:8080:80
PublishPort=53:53/udp
PublishPort=[::1]:9090:90
Network=kos0
Network=other
AddDevice=/dev/fuse
AddDevice=/dev/ttyUSB0:/dev/serial:rw
AddCapability=NET_ADMIN CAP_SYS_TIME
DropCapability=all
User=1000:1000
ReadOnly=yes
SecurityLabelType=spc_t
SecurityLabelDisable=true
Landlock={"fs":[{"path":"/","access":["read"]}]}
Memory=512M
CPU=1.5
Pids=100
Pid=host
HealthCmd=/bin/true
HealthInterval=30s
HealthRetries=3
"#,
        )
        .unwrap();
        let c = &d.container;
        assert_eq!(c.name, "kos-web");
        assert_eq!(c.image, "registry.local/web:1");
        assert_eq!(c.cmd, ["/bin/httpd", "-f", "-p", "8080"]);
        assert_eq!(c.env, ["B=two words", "A=3"]);
        let h = &c.host_config;
        assert_eq!(h.binds, ["/srv:/srv:ro"]);
        assert_eq!(h.mounts[0].kind, "bind");
        assert!(h.mounts[0].read_only);
        assert_eq!(h.port_bindings["80/tcp"][0].host_ip, "127.0.0.1");
        assert_eq!(h.port_bindings["80/tcp"][0].host_port, "8080");
        assert_eq!(h.port_bindings["53/udp"][0].host_port, "53");
        assert_eq!(h.port_bindings["90/tcp"][0].host_ip, "::1");
        assert!(c.exposed_ports.contains_key("53/udp"));
        assert_eq!(h.network_mode.as_deref(), Some("kos0"));
        assert_eq!(c.kos.networks, ["other"]);
        assert_eq!(h.devices[0].path_in_container, "/dev/fuse");
        assert_eq!(h.devices[1].path_in_container, "/dev/serial");
        assert_eq!(h.devices[1].cgroup_permissions, "rw");
        assert_eq!(h.cap_add, ["CAP_NET_ADMIN", "CAP_SYS_TIME"]);
        assert_eq!(h.cap_drop, ["ALL"]);
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert!(h.readonly_rootfs);
        assert!(h.security_opt.contains(&"label=type:spc_t".to_string()));
        assert!(h.security_opt.contains(&"label=disable".to_string()));
        assert!(h.security_opt.iter().any(|o| o.starts_with("landlock={")));
        assert_eq!(h.memory, 512 << 20);
        assert_eq!(h.nano_cpus, 1_500_000_000);
        assert_eq!(h.pids_limit, Some(100));
        assert_eq!(h.pid_mode.as_deref(), Some("host"));
        let hc = c.healthcheck.as_ref().unwrap();
        assert_eq!(hc.test, ["CMD-SHELL", "/bin/true"]);
        assert_eq!(hc.interval, 30_000_000_000);
        assert_eq!(hc.retries, 3);
        // Docker's JSON names, so kosd can map them 1:1.
        let j = serde_json::to_value(c).unwrap();
        assert!(j["HostConfig"]["PortBindings"]["80/tcp"][0]["HostIp"].is_string());
        assert_eq!(j["HostConfig"]["NanoCpus"], 1_500_000_000i64);
        assert_eq!(j["HostConfig"]["ReadonlyRootfs"], true);
        assert_eq!(j["HostConfig"]["Devices"][0]["PathOnHost"], "/dev/fuse");
        assert_eq!(j["Healthcheck"]["Test"][0], "CMD-SHELL");
        assert_eq!(j["HostConfig"]["Mounts"][0]["Type"], "bind");
        assert_eq!(j["HostConfig"]["PidMode"], "host");
    }

    #[test]
    fn service_keys() {
        let d = build(
            "a.container",
            "[Unit]\nStartLimitBurst=3\n[Container]\nImage=x\n[Service]\nType=notify\nRestart=on-failure\nRestartSec=1s\nRestartSteps=3\nRestartMaxDelaySec=8s\nTimeoutStartSec=1min 30s\nTimeoutStopSec=0\nWatchdogSec=2s\nExecStartPre=-host:/bin/mkdir -p /run/x\nExecStartPre=/bin/true\nExecStartPost=/bin/echo up\n",
        )
        .unwrap();
        let s = &d.service;
        assert_eq!(s.service_type, ServiceType::Notify);
        assert_eq!(s.restart, RestartPolicy::OnFailure);
        assert_eq!(s.start_limit_burst, 3);
        assert_eq!(s.timeout_start, Some(Duration::from_secs(90)));
        assert_eq!(s.timeout_stop, None);
        assert_eq!(s.watchdog, Some(Duration::from_secs(2)));
        assert_eq!(s.effective_notify_access(), NotifyAccess::All);
        assert_eq!(s.exec_start_pre.len(), 2);
        assert!(s.exec_start_pre[0].on_host && s.exec_start_pre[0].ignore_failure);
        assert_eq!(s.exec_start_pre[0].argv, ["/bin/mkdir", "-p", "/run/x"]);
        assert!(!s.exec_start_pre[1].on_host && !s.exec_start_pre[1].ignore_failure);
        // 1s, 2s, 4s, then 8s capped: 1 * 8^((n-1)/3)
        let delays: Vec<u64> = (1..=5)
            .map(|n| s.restart_delay(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 8000]);
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let e = build("a.container", "[Container]\nImage=x\n\nMemory=lots\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/u/a.container:4: Memory: invalid size \"lots\""
        );
        let e = build("a.container", "[Service]\nRestart=sometimes\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/u/a.container:2: Restart: invalid Restart"),
            "{e}"
        );
        let e = build("a.container", "[Unit]\nRequires=db\n").unwrap_err();
        assert!(
            e.to_string().contains("Requires: invalid unit name \"db\""),
            "{e}"
        );
        let e = build("a.container", "[Unit]\nDescription=x\n").unwrap_err();
        assert!(e.to_string().contains("needs Image="), "{e}");
        for bad in [
            "PublishPort=99999:80",
            "PublishPort=1.2.3:80:80",
            "Volume=/a:rel",
            "AddDevice=/etc/passwd",
            "Mount=type=bind,source=rel,destination=/x",
            "Landlock={not json",
            "Environment=NOEQUALS",
            "CPU=-1",
            "Pids=0",
            "HealthInterval=infinity",
        ] {
            assert!(
                build("a.container", &format!("[Container]\nImage=x\n{bad}\n")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_sections_are_warnings() {
        let d = build(
            "t.target",
            "[Unit]\nDescription=T\nFrobnicate=1\n[X-Vendor]\nA=1\n[Service]\nType=notify\n",
        )
        .unwrap();
        assert_eq!(d.warnings.len(), 3, "{:?}", d.warnings);
        assert!(d.warnings[0].contains("/u/t.target:3: Frobnicate"));
        assert_eq!(d.description, "T");
    }

    #[test]
    fn empty_assignment_resets_lists_and_defaults() {
        let d = build(
            "a.container",
            "[Unit]\nWants=b.container c.container\nWants=\nWants=d.container\n[Container]\nImage=x\nEnvironment=A=1\nEnvironment=\nVolume=/a:/a\nVolume=\n[Service]\nRestartSec=5s\nRestartSec=\nExecStartPre=/bin/a\nExecStartPre=\n",
        )
        .unwrap();
        assert_eq!(d.deps.wants, ["d.container"]);
        assert!(d.container.env.is_empty());
        assert!(d.container.host_config.binds.is_empty());
        assert_eq!(d.service.restart_sec, Duration::from_millis(100));
        assert!(d.service.exec_start_pre.is_empty());
    }

    #[test]
    fn oneshot_restart_always_refused() {
        assert!(build(
            "a.container",
            "[Container]\nImage=x\n[Service]\nType=oneshot\nRestart=always\n"
        )
        .is_err());
    }
}
