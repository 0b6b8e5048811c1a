//! Command implementations, one module per family; each returns the exit code.

mod build;
mod container;
mod df;
mod image;
mod inspect;
mod list;
mod logs;
mod objects;
mod run;
mod stats;
mod system;
mod units;

use anyhow::Result;
use serde_json::{json, Value};

use crate::cli::{Cli, Cmd, ContainerCmd, ImageCmd, InspectCmd, TypedInspectCmd};
use crate::client::Client;

pub fn dispatch(cli: Cli) -> Result<i32> {
    // Commands that need no daemon.
    match &cli.cmd {
        Cmd::Completion(c) => return system::completion(&c.shell),
        Cmd::Man(m) => return system::man(&m.dir),
        _ => {}
    }
    let tls = crate::client::TlsFlags {
        tls: cli.tls,
        verify: cli.tlsverify,
        cacert: cli.tlscacert.clone(),
        cert: cli.tlscert.clone(),
        key: cli.tlskey.clone(),
    };
    let c = Client::from_flag(cli.host.as_deref(), &tls).map_err(|e| crate::status(125, e))?;
    run_cmd(&c, cli.cmd)
}

fn typed_inspect(kind: &str, i: TypedInspectCmd) -> Cmd {
    Cmd::Inspect(InspectCmd {
        format: i.format,
        size: i.size,
        kind: Some(kind.to_string()),
        names: i.names,
    })
}

/// `kos container X`: the top-level command X, same flags, as docker's aliases.
fn container_cmd(c: &Client, cc: ContainerCmd) -> Result<i32> {
    let cmd = match cc {
        ContainerCmd::Attach(a) => Cmd::Attach(a),
        ContainerCmd::Cp(x) => Cmd::Cp(x),
        ContainerCmd::Create(x) => Cmd::Create(x),
        ContainerCmd::Diff(x) => Cmd::Diff(x),
        ContainerCmd::Exec(x) => Cmd::Exec(x),
        ContainerCmd::Export(x) => Cmd::Export(x),
        ContainerCmd::Inspect(i) => typed_inspect("container", i),
        ContainerCmd::Kill(x) => Cmd::Kill(x),
        ContainerCmd::Logs(x) => Cmd::Logs(x),
        ContainerCmd::Ls(x) => Cmd::Ps(x),
        ContainerCmd::Pause(x) => Cmd::Pause(x),
        ContainerCmd::Port(x) => Cmd::Port(x),
        ContainerCmd::Prune(p) => return container::prune(c, p),
        ContainerCmd::Rename(x) => Cmd::Rename(x),
        ContainerCmd::Restart(x) => Cmd::Restart(x),
        ContainerCmd::Rm(x) => Cmd::Rm(x),
        ContainerCmd::Run(x) => Cmd::Run(x),
        ContainerCmd::Start(x) => Cmd::Start(x),
        ContainerCmd::Stats(x) => Cmd::Stats(x),
        ContainerCmd::Stop(x) => Cmd::Stop(x),
        ContainerCmd::Top(x) => Cmd::Top(x),
        ContainerCmd::Unpause(x) => Cmd::Unpause(x),
        ContainerCmd::Update(x) => Cmd::Update(x),
        ContainerCmd::Wait(x) => Cmd::Wait(x),
    };
    run_cmd(c, cmd)
}

/// `kos image X`, likewise.
fn image_cmd(c: &Client, ic: ImageCmd) -> Result<i32> {
    let cmd = match ic {
        ImageCmd::Build(x) => Cmd::Build(x),
        ImageCmd::History(x) => Cmd::History(x),
        ImageCmd::Inspect(i) => typed_inspect("image", i),
        ImageCmd::Load(x) => Cmd::Load(x),
        ImageCmd::Ls(x) => Cmd::Images(x),
        ImageCmd::Prune(p) => return image::prune(c, p),
        ImageCmd::Pull(x) => Cmd::Pull(x),
        ImageCmd::Push(x) => Cmd::Push(x),
        ImageCmd::Rm(x) => Cmd::Rmi(x),
        ImageCmd::Save(x) => Cmd::Save(x),
        ImageCmd::Tag(x) => Cmd::Tag(x),
    };
    run_cmd(c, cmd)
}

fn run_cmd(c: &Client, cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Container(cc) => container_cmd(c, cc),
        Cmd::Image(ic) => image_cmd(c, ic),
        Cmd::Diff(d) => container::diff(c, d),
        Cmd::Export(e) => container::export(c, e),
        Cmd::History(h) => image::history(c, h),
        Cmd::Run(r) => run::run(c, r),
        Cmd::Create(r) => run::create(c, r),
        Cmd::Start(s) => run::start(c, s),
        Cmd::Attach(a) => run::attach(c, a),
        Cmd::Exec(e) => run::exec(c, e),
        Cmd::Stop(s) => container::stop(c, s, "stop"),
        Cmd::Restart(s) => container::stop(c, s, "restart"),
        Cmd::Kill(k) => container::kill(c, k),
        Cmd::Rm(r) => container::rm(c, r),
        Cmd::Pause(p) => container::simple(c, p, "pause"),
        Cmd::Unpause(p) => container::simple(c, p, "unpause"),
        Cmd::Wait(w) => container::wait(c, w),
        Cmd::Rename(r) => container::rename(c, r),
        Cmd::Update(u) => container::update(c, u),
        Cmd::Top(t) => logs::top(c, t),
        Cmd::Port(p) => logs::port(c, p),
        Cmd::Logs(l) => logs::logs(c, l),
        Cmd::Cp(cp) => logs::cp(c, cp),
        Cmd::Stats(s) => stats::stats(c, s),
        Cmd::Ps(p) => list::ps(c, p),
        Cmd::Images(i) => list::images(c, i),
        Cmd::Inspect(i) => inspect::inspect(c, i),
        Cmd::Pull(p) => image::pull_cmd(c, p),
        Cmd::Push(p) => image::push(c, p),
        Cmd::Rmi(r) => image::rmi(c, r),
        Cmd::Tag(t) => image::tag(c, t),
        Cmd::Load(l) => image::load(c, l),
        Cmd::Save(s) => image::save(c, s),
        Cmd::Build(b) => build::build(c, b),
        Cmd::Login(l) => system::login(c, l),
        Cmd::Logout(l) => system::logout(c, l),
        Cmd::Volume(v) => objects::volume(c, v),
        Cmd::Network(n) => objects::network(c, n),
        Cmd::System(s) => system::system(c, s),
        Cmd::Info(i) => system::info(c, i),
        Cmd::Version(v) => system::version(c, v),
        Cmd::Events(e) => system::events(c, e),
        Cmd::Completion(_) | Cmd::Man(_) => Ok(0),
    }
}

/// `--filter k=v` flags as the API's `filters` JSON (`{"k":{"v":true}}`).
pub fn filters_json(filters: &[String]) -> Result<String> {
    let mut m = serde_json::Map::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value)"))?;
        let e = m
            .entry(k.trim().to_ascii_lowercase())
            .or_insert_with(|| json!({}));
        e[v] = Value::Bool(true);
    }
    Ok(if m.is_empty() {
        String::new()
    } else {
        Value::Object(m).to_string()
    })
}

/// Runs `op` on every name; prints each name that worked (when `echo`),
/// each failure on stderr, and fails with 1 when any did, as docker does.
pub fn each(
    names: &[String],
    echo: bool,
    mut op: impl FnMut(&str) -> std::result::Result<(), String>,
) -> Result<i32> {
    let mut failed = false;
    for n in names {
        match op(n) {
            Ok(()) => {
                if echo {
                    println!("{n}");
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Path encoding for names in URLs: what a path may hold stays as is
/// (`/`, `:`, `@` as docker sends them), the rest is percent-encoded.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn path_segments() {
        assert_eq!(seg("127.0.0.1:5000/x:1"), "127.0.0.1:5000/x:1");
        assert_eq!(seg("a b?c#d"), "a%20b%3Fc%23d");
    }

    #[test]
    fn filters() {
        assert_eq!(filters_json(&[]).unwrap(), "");
        assert_eq!(
            filters_json(&["status=exited".into(), "label=a=b".into()]).unwrap(),
            r#"{"label":{"a=b":true},"status":{"exited":true}}"#
        );
        assert!(filters_json(&["nope".into()]).is_err());
    }
}
