//! `run`, `create`, `start`, `attach` and `exec`: the calls docker makes, in
//! its order (create, attach, wait, start, resize), and nothing more.

use std::io::BufReader;
use std::os::fd::RawFd;

use anyhow::Result;
use serde_json::{json, Value};

use super::image::pull_image;
use super::seg;
use crate::cli::{AttachCmd, ContainerOpts, CreateCmd, ExecCmd, RunCmd, StartCmd};
use crate::client::{query, Client, ClientError, Request, Response, Stream};
use crate::status;
use crate::streams::{self, Attach, Ended};
use crate::tty;

const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

fn attach_flags(o: &ContainerOpts, detach: bool) -> Result<(bool, bool, bool)> {
    if detach {
        if !o.attach.is_empty() {
            return Err(status(
                125,
                "kos: conflicting options: cannot specify both --attach and --detach",
            ));
        }
        return Ok((false, false, false));
    }
    if o.attach.is_empty() {
        return Ok((o.interactive, true, true));
    }
    let mut f = (false, false, false);
    for a in &o.attach {
        match a.to_ascii_lowercase().as_str() {
            "stdin" => f.0 = true,
            "stdout" => f.1 = true,
            "stderr" => f.2 = true,
            other => {
                return Err(status(
                    125,
                    format!("kos: invalid argument \"{other}\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"),
                ))
            }
        }
    }
    Ok(f)
}

fn run_err(cmd: &str, e: impl std::fmt::Display) -> anyhow::Error {
    status(
        125,
        format!("kos: {e}\n\nRun 'kos {cmd} --help' for more information"),
    )
}

/// Creates the container, pulling the image when it is missing (as `--pull` says).
fn create_container(c: &Client, o: &ContainerOpts, body: &Value, cmd: &str) -> Result<String> {
    let q = query(&[
        ("name", o.name.clone().unwrap_or_default()),
        ("platform", o.platform.clone().unwrap_or_default()),
    ]);
    let pull_quiet = o.quiet;
    match o.pull.as_str() {
        "always" => pull_image(c, &o.image, o.platform.as_deref(), pull_quiet, true)
            .map_err(|e| run_err(cmd, e))?,
        "missing" | "never" => {}
        other => {
            return Err(run_err(
                cmd,
                format!("invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""),
            ))
        }
    }
    let attempt = |c: &Client| -> std::result::Result<Value, ClientError> {
        c.post_json(&format!("/containers/create{q}"), Some(body))
    };
    let r = match attempt(c) {
        Err(e) if e.is_not_found() && o.pull == "missing" && e.message().contains("image") => {
            eprintln!("Unable to find image '{}' locally", o.image);
            pull_image(c, &o.image, o.platform.as_deref(), pull_quiet, true)
                .map_err(|e| run_err(cmd, e))?;
            attempt(c).map_err(|e| run_err(cmd, e))?
        }
        r => r.map_err(|e| run_err(cmd, e))?,
    };
    if let Some(w) = r.get("Warnings").and_then(Value::as_array) {
        for w in w.iter().filter_map(Value::as_str) {
            eprintln!("WARNING: {w}");
        }
    }
    r.get("Id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| run_err(cmd, "the daemon's create answer has no Id"))
}

/// Opens the hijacked attach connection.
fn attach_conn(
    c: &Client,
    id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    logs: bool,
    detach_keys: Option<&str>,
) -> Result<(BufReader<Stream>, Stream)> {
    let b = |x: bool| if x { "1".to_string() } else { String::new() };
    let q = query(&[
        ("stream", "1".into()),
        ("logs", b(logs)),
        ("stdin", b(stdin)),
        ("stdout", b(stdout)),
        ("stderr", b(stderr)),
        ("detachKeys", detach_keys.unwrap_or("").to_string()),
    ]);
    let mut req = Request::new("POST", format!("/containers/{}/attach{q}", seg(id)));
    req.upgrade = true;
    let r = c.request(req)?;
    upgraded(r)
}

fn upgraded(r: Response) -> Result<(BufReader<Stream>, Stream)> {
    if r.status != 101 && r.status != 200 {
        return Err(anyhow::anyhow!(
            "unexpected status {} for an attach",
            r.status
        ));
    }
    Ok(r.into_upgraded()?)
}

/// Docker's exit code for a start that failed: 127 not found, 126 cannot invoke.
fn start_failure_code(msg: &str) -> i32 {
    let m = msg.to_ascii_lowercase();
    if m.contains("executable file not found")
        || m.contains("no such file or directory")
        || m.contains("not found") && m.contains("exec")
    {
        127
    } else if m.contains("permission denied")
        || m.contains("cannot execute")
        || m.contains("is a directory")
    {
        126
    } else {
        125
    }
}

fn resize(c: &Client, path: &str, fd: RawFd) {
    if let Some((h, w)) = tty::size(fd) {
        let _ = c.post(&format!("{path}/resize?h={h}&w={w}"), None);
    }
}

/// Watches SIGWINCH (resize) and, without a tty, proxies SIGINT/SIGTERM/...
/// to the container, as docker's sig-proxy.
fn signal_thread(c: &Client, resize_path: Option<String>, kill_path: Option<String>) {
    let mut sigs = Vec::new();
    if resize_path.is_some() {
        sigs.push(libc::SIGWINCH);
    }
    if kill_path.is_some() {
        sigs.extend([
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ]);
    }
    if sigs.is_empty() {
        return;
    }
    let Ok(fd) = tty::signal_pipe(&sigs) else {
        return;
    };
    let c2 = c.pinned();
    std::thread::spawn(move || {
        let mut b = [0u8; 1];
        loop {
            // SAFETY: reading one byte from our own pipe.
            let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
            if n <= 0 {
                return;
            }
            let sig = i32::from(b[0]);
            if sig == libc::SIGWINCH {
                if let Some(p) = &resize_path {
                    resize(&c2, p, 0);
                }
            } else if let (Some(p), Some(name)) = (&kill_path, tty::signal_name(sig)) {
                let _ = c2.post(&format!("{p}?signal={name}"), None);
            }
        }
    });
}

fn wait_result(r: Response) -> Result<i32> {
    let v: Value = crate::client::json(r)?;
    if let Some(m) = v
        .get("Error")
        .and_then(|e| e.get("Message"))
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
    {
        return Err(status(125, format!("kos: {m}")));
    }
    Ok(v.get("StatusCode").and_then(Value::as_i64).unwrap_or(125) as i32)
}

pub fn run(c: &Client, r: RunCmd) -> Result<i32> {
    let o = &r.opts;
    let (a_in, a_out, a_err) = attach_flags(o, r.detach)?;
    let body = crate::opts::create_body(o, a_out, a_err, a_in).map_err(|e| run_err("run", e))?;
    let id = create_container(c, o, &body, "run")?;
    if r.detach {
        c.post(&format!("/containers/{id}/start"), None)
            .map_err(|e| {
                status(
                    start_failure_code(&e.message()),
                    format!("kos: {e}\n\nRun 'kos run --help' for more information"),
                )
            })?;
        println!("{id}");
        return Ok(0);
    }
    let tty_in = o.tty && tty::is_tty(0);
    let keys = streams::parse_detach_keys(r.detach_keys.as_deref().unwrap_or(DEFAULT_DETACH_KEYS))
        .map_err(|e| run_err("run", e))?;
    let conn = if a_in || a_out || a_err {
        Some(
            attach_conn(c, &id, a_in, a_out, a_err, false, r.detach_keys.as_deref())
                .map_err(|e| run_err("run", e))?,
        )
    } else {
        None
    };
    // Registered before start so an exit cannot be missed.
    let cond = if o.rm { "removed" } else { "next-exit" };
    let waiter = c
        .post(&format!("/containers/{id}/wait?condition={cond}"), None)
        .map_err(|e| run_err("run", e))?;
    let raw = if tty_in && a_in {
        tty::RawMode::enter(0).ok()
    } else {
        None
    };
    if let Err(e) = c.post(&format!("/containers/{id}/start"), None) {
        drop(raw);
        let code = start_failure_code(&e.message());
        if o.rm {
            let _ = c.delete(&format!("/containers/{id}?force=1&v=1"));
        }
        return Err(status(
            code,
            format!("kos: {e}\n\nRun 'kos run --help' for more information"),
        ));
    }
    let cpath = format!("/containers/{id}");
    if o.tty && tty::is_tty(1) {
        resize(c, &cpath, 1);
    }
    signal_thread(
        c,
        (o.tty && tty::is_tty(1)).then(|| cpath.clone()),
        (!o.tty && r.sig_proxy).then(|| format!("{cpath}/kill")),
    );
    if let Some((rd, wr)) = conn {
        let a = Attach {
            tty: o.tty,
            stdin: a_in,
            detach_keys: keys,
        };
        let ended = streams::pump(rd, wr, &a);
        drop(raw);
        match ended {
            Ok(Ended::Detached) => return Ok(0),
            Ok(Ended::Eof) => {}
            Err(e) => eprintln!("kos: error copying the container's output: {e}"),
        }
    }
    wait_result(waiter)
}

pub fn create(c: &Client, r: CreateCmd) -> Result<i32> {
    let (a_in, a_out, a_err) = attach_flags(&r.opts, false)?;
    let body =
        crate::opts::create_body(&r.opts, a_out, a_err, a_in).map_err(|e| run_err("create", e))?;
    let id = create_container(c, &r.opts, &body, "create")?;
    println!("{id}");
    Ok(0)
}

fn inspect_container(c: &Client, id: &str) -> Result<Value> {
    Ok(c.get_json(&format!("/containers/{}/json", seg(id)))?)
}

pub fn start(c: &Client, s: StartCmd) -> Result<i32> {
    if !s.attach && !s.interactive {
        // As docker: each name that started is printed, each failure reported,
        // then one summary line naming the failed ones.
        let mut failed = Vec::new();
        for n in &s.containers {
            match c.post(&format!("/containers/{}/start", seg(n)), None) {
                Ok(_) => println!("{n}"),
                Err(e) => {
                    eprintln!("{e}");
                    failed.push(n.clone());
                }
            }
        }
        if failed.is_empty() {
            return Ok(0);
        }
        return Err(status(
            1,
            format!("Error: failed to start containers: {}", failed.join(", ")),
        ));
    }
    if s.containers.len() > 1 {
        return Err(status(
            1,
            "you cannot start and attach multiple containers at once",
        ));
    }
    let name = &s.containers[0];
    let info = inspect_container(c, name)?;
    let id = info["Id"].as_str().unwrap_or(name).to_string();
    let tty_mode = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let open_stdin = info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let a_in = s.interactive && open_stdin;
    let keys = streams::parse_detach_keys(s.detach_keys.as_deref().unwrap_or(DEFAULT_DETACH_KEYS))
        .map_err(|e| status(1, e))?;
    let conn = attach_conn(c, &id, a_in, true, true, false, s.detach_keys.as_deref())?;
    let waiter = c.post(&format!("/containers/{id}/wait?condition=next-exit"), None)?;
    let raw = if tty_mode && a_in && tty::is_tty(0) {
        tty::RawMode::enter(0).ok()
    } else {
        None
    };
    if let Err(e) = c.post(&format!("/containers/{id}/start"), None) {
        drop(raw);
        return Err(status(start_failure_code(&e.message()), e.to_string()));
    }
    let cpath = format!("/containers/{id}");
    if tty_mode && tty::is_tty(1) {
        resize(c, &cpath, 1);
    }
    signal_thread(
        c,
        (tty_mode && tty::is_tty(1)).then(|| cpath.clone()),
        (!tty_mode).then(|| format!("{cpath}/kill")),
    );
    let ended = streams::pump(
        conn.0,
        conn.1,
        &Attach {
            tty: tty_mode,
            stdin: a_in,
            detach_keys: keys,
        },
    );
    drop(raw);
    if let Ok(Ended::Detached) = ended {
        return Ok(0);
    }
    wait_result(waiter)
}

pub fn attach(c: &Client, a: AttachCmd) -> Result<i32> {
    let info = inspect_container(c, &a.container)?;
    let id = info["Id"].as_str().unwrap_or(&a.container).to_string();
    if !info["State"]["Running"].as_bool().unwrap_or(false) {
        return Err(status(
            1,
            "You cannot attach to a stopped container, start it first",
        ));
    }
    if info["State"]["Paused"].as_bool().unwrap_or(false) {
        return Err(status(
            1,
            "You cannot attach to a paused container, unpause it first",
        ));
    }
    let tty_mode = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let a_in = !a.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let keys = streams::parse_detach_keys(a.detach_keys.as_deref().unwrap_or(DEFAULT_DETACH_KEYS))
        .map_err(|e| status(1, e))?;
    let conn = attach_conn(c, &id, a_in, true, true, false, a.detach_keys.as_deref())?;
    let waiter = c.post(
        &format!("/containers/{id}/wait?condition=not-running"),
        None,
    )?;
    let raw = if tty_mode && a_in && tty::is_tty(0) {
        tty::RawMode::enter(0).ok()
    } else {
        None
    };
    let cpath = format!("/containers/{id}");
    if tty_mode && tty::is_tty(1) {
        resize(c, &cpath, 1);
    }
    signal_thread(
        c,
        (tty_mode && tty::is_tty(1)).then(|| cpath.clone()),
        (!tty_mode && a.sig_proxy).then(|| format!("{cpath}/kill")),
    );
    let ended = streams::pump(
        conn.0,
        conn.1,
        &Attach {
            tty: tty_mode,
            stdin: a_in,
            detach_keys: keys,
        },
    );
    drop(raw);
    if let Ok(Ended::Detached) = ended {
        return Ok(0);
    }
    wait_result(waiter)
}

pub fn exec(c: &Client, e: ExecCmd) -> Result<i32> {
    let env = crate::opts::env_list(&e.env, &e.env_file).map_err(|m| status(125, m))?;
    let tty_mode = e.tty;
    let mut body = json!({
        "User": e.user.clone().unwrap_or_default(),
        "Privileged": e.privileged,
        "Tty": tty_mode,
        "AttachStdin": e.interactive && !e.detach,
        "AttachStdout": !e.detach,
        "AttachStderr": !e.detach,
        "Detach": e.detach,
        "DetachKeys": e.detach_keys.clone().unwrap_or_default(),
        "Env": env,
        "WorkingDir": e.workdir.clone().unwrap_or_default(),
        "Cmd": e.command,
    });
    if tty_mode {
        if let Some((h, w)) = tty::size(1) {
            body["ConsoleSize"] = json!([h, w]);
        }
    }
    let created: Value = c.post_json(
        &format!("/containers/{}/exec", seg(&e.container)),
        Some(&body),
    )?;
    let xid = created["Id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the daemon's exec answer has no Id"))?
        .to_string();
    let start_body = json!({"Detach": e.detach, "Tty": tty_mode});
    if e.detach {
        c.post(&format!("/exec/{xid}/start"), Some(&start_body))?;
        return Ok(0);
    }
    let mut req = Request::new("POST", format!("/exec/{xid}/start"));
    req.body =
        crate::client::ReqBody::Bytes(start_body.to_string().into_bytes(), "application/json");
    req.upgrade = true;
    let resp = c.request(req)?;
    let (rd, wr) = upgraded(resp)?;
    let a_in = e.interactive;
    let raw = if tty_mode && a_in && tty::is_tty(0) {
        tty::RawMode::enter(0).ok()
    } else {
        None
    };
    let xpath = format!("/exec/{xid}");
    if tty_mode && tty::is_tty(1) {
        resize(c, &xpath, 1);
        signal_thread(c, Some(xpath.clone()), None);
    }
    let keys = streams::parse_detach_keys(e.detach_keys.as_deref().unwrap_or(DEFAULT_DETACH_KEYS))
        .map_err(|m| status(125, m))?;
    let ended = streams::pump(
        rd,
        wr,
        &Attach {
            tty: tty_mode,
            stdin: a_in,
            detach_keys: keys,
        },
    );
    drop(raw);
    if let Ok(Ended::Detached) = ended {
        return Ok(0);
    }
    let info: Value = c.get_json(&format!("{xpath}/json"))?;
    Ok(info["ExitCode"].as_i64().unwrap_or(0) as i32)
}

#[cfg(test)]
mod tests {
    use super::start_failure_code;

    #[test]
    fn start_failure_codes() {
        assert_eq!(
            start_failure_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_failure_code("exec /etc: permission denied"), 126);
        assert_eq!(start_failure_code("something else"), 125);
    }
}
