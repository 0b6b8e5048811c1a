//! The shim driven directly over ttrpc, as kosd drives it: logs written by the shim in
//! json-file and CRI formats, file:// and binary:// stdio, runc and crun through the runtime
//! options, events, grouping, and bad input answered with clear errors.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim_protos::api;
use protobuf::well_known_types::any::Any;
use protobuf::{CodedOutputStream, MessageField};

use support::ttrpc::{
    Client, Shim, ALREADY_EXISTS, FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND,
};
use support::{alive, mounts_under, wait_for};

/// Output with many short lines on both streams and one 40000-byte line on stdout.
const SCRIPT: &str =
    "i=0; while [ $i -lt 40 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); done; \
                      dd if=/dev/zero bs=40000 count=1 2>/dev/null | tr '\\0' x; echo; echo last";

fn expected_stdout() -> String {
    let mut s: String = (0..40).map(|i| format!("out-{i}\n")).collect();
    s.push_str(&"x".repeat(40000));
    s.push_str("\nlast\n");
    s
}

fn expected_stderr() -> String {
    (0..40).map(|i| format!("err-{i}\n")).collect()
}

fn create(
    shim: &mut Shim,
    id: &str,
    bundle: &Path,
    stdout: &str,
    stderr: &str,
    options: Option<Any>,
) -> Result<u32, support::ttrpc::RpcError> {
    let mut r = api::CreateTaskRequest::new();
    r.id = id.to_string();
    r.bundle = bundle.to_string_lossy().into_owned();
    r.stdout = stdout.to_string();
    r.stderr = stderr.to_string();
    if let Some(o) = options {
        r.options = MessageField::some(o);
    }
    let resp: api::CreateTaskResponse = shim.client.call("Create", &r)?;
    Ok(resp.pid)
}

fn start(c: &mut Client, id: &str, exec_id: &str) -> u32 {
    let mut r = api::StartRequest::new();
    r.id = id.into();
    r.exec_id = exec_id.into();
    let resp: api::StartResponse = c.call("Start", &r).expect("start");
    resp.pid
}

fn wait(c: &mut Client, id: &str, exec_id: &str) -> u32 {
    let mut r = api::WaitRequest::new();
    r.id = id.into();
    r.exec_id = exec_id.into();
    let resp: api::WaitResponse = c.call("Wait", &r).expect("wait");
    assert!(resp.exited_at.seconds > 0);
    resp.exit_status
}

fn delete(c: &mut Client, id: &str, exec_id: &str) -> api::DeleteResponse {
    let mut r = api::DeleteRequest::new();
    r.id = id.into();
    r.exec_id = exec_id.into();
    c.call("Delete", &r).expect("delete")
}

fn exec_spec(args: &[&str]) -> Any {
    let mut a = Any::new();
    a.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    a.value = serde_json::to_vec(&serde_json::json!({
        "args": args, "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
    }))
    .expect("json");
    a
}

/// Runs SCRIPT with both streams going to `uri` and waits for it to finish.
fn run_script_to(shim: &mut Shim, id: &str, out: &str, err: &str) {
    let b = shim.bundle(id, &["sh", "-c", SCRIPT], false);
    create(shim, id, &b, out, err, None).expect("create");
    start(&mut shim.client, id, "");
    assert_eq!(wait(&mut shim.client, id, ""), 0);
    delete(&mut shim.client, id, "");
}

/// PATH, PATH.1, ... oldest first.
fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for i in (1..100).rev() {
        let p = PathBuf::from(format!("{}.{i}", path.display()));
        if p.exists() {
            v.push(p);
        }
    }
    v.push(path.to_path_buf());
    v
}

#[test]
fn json_file_logs_are_line_by_line_split_and_rotated() {
    let mut shim = Shim::start("jsonlog");
    let log = shim.dir.path().join("j1.log");
    let uri = format!("json-file://{}?max-size=8192&max-file=20", log.display());
    run_script_to(&mut shim, "j1", &uri, &uri);
    let files = rotated_files(&log);
    assert!(files.len() > 2, "no rotation: {files:?}");
    let (mut out, mut err) = (String::new(), String::new());
    let mut pieces_of_long_line = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        for line in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).expect("one JSON object per line");
            let msg = v["log"].as_str().expect("log");
            assert!(msg.len() <= 16 * 1024 + 1, "entry too long");
            let t = v["time"].as_str().expect("time");
            assert!(t.ends_with('Z') && t.contains('T'), "{t}");
            if msg.starts_with('x') {
                pieces_of_long_line += 1;
            }
            match v["stream"].as_str() {
                Some("stdout") => out.push_str(msg),
                Some("stderr") => err.push_str(msg),
                other => panic!("stream {other:?}"),
            }
        }
    }
    assert_eq!(out, expected_stdout());
    assert_eq!(err, expected_stderr());
    // 40000 bytes at 16 KiB per entry: three entries, none truncated.
    assert_eq!(pieces_of_long_line, 3);
}

#[test]
fn json_file_terminal_output_is_logged_without_waiting_for_a_newline() {
    let mut shim = Shim::start("jsontty");
    let log = shim.dir.path().join("t1.log");
    let uri = format!("json-file://{}", log.display());
    // The prompt has no newline; the line after it comes only once the prompt was seen.
    let b = shim.bundle(
        "t1",
        &["sh", "-c", "printf 'prompt> '; sleep 3; echo done"],
        true,
    );
    let mut r = api::CreateTaskRequest::new();
    r.id = "t1".into();
    r.bundle = b.to_string_lossy().into_owned();
    r.terminal = true;
    r.stdout = uri;
    let _: api::CreateTaskResponse = shim.client.call("Create", &r).expect("create");
    start(&mut shim.client, "t1", "");
    let entries = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json entry");
                assert_eq!(v["stream"], "stdout");
                v["log"].as_str().expect("log").to_string()
            })
            .collect()
    };
    wait_for("the prompt's partial entry", Duration::from_secs(2), || {
        entries(&log) == ["prompt> "]
    });
    assert_eq!(wait(&mut shim.client, "t1", ""), 0);
    delete(&mut shim.client, "t1", "");
    assert_eq!(entries(&log), ["prompt> ", "done\r\n"]);
}

#[test]
fn cri_logs_mark_partial_lines() {
    let mut shim = Shim::start("crilog");
    let log = shim.dir.path().join("c1.log");
    let uri = format!("cri-log://{}", log.display());
    run_script_to(&mut shim, "c1", &uri, &uri);
    let text = std::fs::read_to_string(&log).expect("read");
    let (mut out, mut err) = (String::new(), String::new());
    let mut partial = 0;
    for line in text.lines() {
        let mut parts = line.splitn(4, ' ');
        let ts = parts.next().expect("time");
        let stream = parts.next().expect("stream");
        let tag = parts.next().expect("tag");
        let msg = parts.next().unwrap_or("");
        assert!(ts.ends_with('Z') && ts.len() >= 20, "{ts}");
        let buf = match stream {
            "stdout" => &mut out,
            "stderr" => &mut err,
            s => panic!("stream {s}"),
        };
        buf.push_str(msg);
        match tag {
            "F" => buf.push('\n'),
            "P" => partial += 1,
            t => panic!("tag {t}"),
        }
    }
    assert_eq!(out, expected_stdout());
    assert_eq!(err, expected_stderr());
    assert_eq!(partial, 2);
}

#[test]
fn file_and_binary_stdio() {
    let mut shim = Shim::start("uris");
    let d = shim.dir.path().to_path_buf();
    let (o, e) = (d.join("out.txt"), d.join("err.txt"));
    run_script_to(
        &mut shim,
        "f1",
        &format!("file://{}", o.display()),
        &format!("file://{}", e.display()),
    );
    assert_eq!(std::fs::read_to_string(&o).expect("out"), expected_stdout());
    assert_eq!(std::fs::read_to_string(&e).expect("err"), expected_stderr());

    // binary://: the logging program gets stdout on fd 3, stderr on fd 4, closes fd 5.
    let logger = d.join("logger.sh");
    kos_testsupport::write_executable(
        &logger,
        b"#!/bin/sh\nexec 5>&-\ncat <&3 > \"$1/bin-stdout\" &\ncat <&4 > \"$1/bin-stderr\"\nwait\n\
         echo \"$CONTAINER_ID $CONTAINER_NAMESPACE\" > \"$1/bin-env.tmp\"\nmv \"$1/bin-env.tmp\" \"$1/bin-env\"\n",
    );
    let uri = format!("binary://{}?{}", logger.display(), d.display());
    run_script_to(&mut shim, "b1", &uri, &uri);
    wait_for("logger finished", Duration::from_secs(10), || {
        d.join("bin-env").exists()
    });
    assert_eq!(
        std::fs::read_to_string(d.join("bin-stdout")).expect("o"),
        expected_stdout()
    );
    assert_eq!(
        std::fs::read_to_string(d.join("bin-stderr")).expect("e"),
        expected_stderr()
    );
    let env = std::fs::read_to_string(d.join("bin-env")).expect("env");
    assert_eq!(env.trim(), format!("b1 {}", shim.ns));
}

#[test]
fn runc_and_crun_through_runtime_options() {
    let mut shim = Shim::start("runtimes");
    for (id, bin) in [
        ("via-runc", "/usr/sbin/runc"),
        ("via-crun", "/usr/bin/crun"),
    ] {
        let root = shim.runtime_root().join(id);
        let b = shim.bundle(id, &["sh", "-c", "sleep 1000"], false);
        let out = shim.dir.path().join(format!("{id}.out"));
        let uri = format!("file://{}", out.display());
        let created = create(
            &mut shim,
            id,
            &b,
            &uri,
            &uri,
            Some(support::runtime_options(bin, &root, false)),
        );
        if let Err(e) = &created {
            if bin.ends_with("crun") && support::hybrid_cgroups() {
                // crun refuses hybrid cgroup hosts outright; the shim must pass that on as a
                // clear error naming the runtime, and leave nothing behind.
                assert!(
                    e.message.contains("crun") && e.message.contains("hybrid"),
                    "{e:?}"
                );
                assert!(!root.join(id).exists());
                support::skip("crun does not run containers on hybrid cgroup hosts");
                continue;
            }
        }
        created.expect("create");
        // The runtime keeps its state under the root the options named.
        assert!(
            root.join(id).exists(),
            "{bin} state not under {}",
            root.display()
        );
        start(&mut shim.client, id, "");
        let mut x = api::ExecProcessRequest::new();
        x.id = id.into();
        x.exec_id = "x".into();
        x.stdout = uri.clone();
        x.spec = MessageField::some(exec_spec(&["sh", "-c", "echo exec-via-runtime; exit 7"]));
        let _: api::Empty = shim.client.call("Exec", &x).expect("exec");
        start(&mut shim.client, id, "x");
        assert_eq!(wait(&mut shim.client, id, "x"), 7);
        delete(&mut shim.client, id, "x");
        let mut k = api::KillRequest::new();
        k.id = id.into();
        // A pid-1 shell ignores SIGTERM without a handler: SIGKILL.
        k.signal = 9;
        let _: api::Empty = shim.client.call("Kill", &k).expect("kill");
        assert_eq!(wait(&mut shim.client, id, ""), 137);
        let d = delete(&mut shim.client, id, "");
        assert_eq!(d.exit_status, 137);
        assert!(!root.join(id).exists(), "{bin} did not delete its state");
        assert_eq!(
            std::fs::read_to_string(&out).expect("out"),
            "exec-via-runtime\n"
        );
    }
}

#[test]
fn bad_input_gets_clear_errors_and_the_shim_keeps_serving() {
    let mut shim = Shim::start("badinput");
    let d = shim.dir.path().to_path_buf();

    let empty = d.join("no-config");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let e = create(&mut shim, "nc", &empty, "", "", None).expect_err("no config.json");
    assert_eq!(e.code, INVALID_ARGUMENT, "{e:?}");
    assert!(e.message.contains("config.json"), "{}", e.message);

    let b = shim.bundle("badrt", &["true"], false);
    let opts = support::runtime_options("/nonexistent/runtime", &shim.runtime_root(), false);
    let e = create(&mut shim, "badrt", &b, "", "", Some(opts)).expect_err("bad runtime");
    assert_eq!(e.code, FAILED_PRECONDITION, "{e:?}");
    assert!(
        e.message.contains("/nonexistent/runtime") && e.message.contains("not found"),
        "{}",
        e.message
    );

    let b = shim.bundle("badfifo", &["true"], false);
    let missing = d.join("missing-fifo");
    let e = create(
        &mut shim,
        "badfifo",
        &b,
        &missing.to_string_lossy(),
        "",
        None,
    )
    .expect_err("missing fifo");
    assert_eq!(e.code, INVALID_ARGUMENT, "{e:?}");
    assert!(e.message.contains("missing-fifo"), "{}", e.message);
    // Nothing half made: no container state in the runtime's root.
    assert!(!Path::new(&format!("/run/containerd/kos/{}/badfifo", shim.ns)).exists());

    let e = create(&mut shim, "baduri", &b, "ftp:///x", "", None).expect_err("bad uri");
    assert_eq!(e.code, INVALID_ARGUMENT, "{e:?}");

    // The shim still serves: a good container, then exec mistakes.
    let b = shim.bundle("good", &["sleep", "1000"], false);
    create(&mut shim, "good", &b, "", "", None).expect("create");
    let e = create(&mut shim, "good", &b, "", "", None).expect_err("duplicate container");
    assert_eq!(e.code, ALREADY_EXISTS);
    start(&mut shim.client, "good", "");
    let mut x = api::ExecProcessRequest::new();
    x.id = "good".into();
    x.exec_id = "x1".into();
    x.spec = MessageField::some(exec_spec(&["sleep", "1000"]));
    let _: api::Empty = shim.client.call("Exec", &x).expect("exec");
    let e = shim
        .client
        .call::<_, api::Empty>("Exec", &x)
        .expect_err("duplicate exec id");
    assert_eq!(e.code, ALREADY_EXISTS, "{e:?}");
    assert!(e.message.contains("x1"), "{}", e.message);

    let mut k = api::KillRequest::new();
    k.id = "good".into();
    k.exec_id = "nope".into();
    k.signal = 9;
    let e = shim
        .client
        .call::<_, api::Empty>("Kill", &k)
        .expect_err("unknown exec");
    assert_eq!(e.code, NOT_FOUND, "{e:?}");
    assert!(e.message.contains("nope"), "{}", e.message);

    let mut s = api::StateRequest::new();
    s.id = "ghost".into();
    let e = shim
        .client
        .call::<_, api::StateResponse>("State", &s)
        .expect_err("unknown");
    assert_eq!(e.code, NOT_FOUND);

    // Exec x1 runs; deleting it while running is refused, after a kill it goes.
    let pid = start(&mut shim.client, "good", "x1");
    assert!(alive(pid as i32));
    let mut dr = api::DeleteRequest::new();
    dr.id = "good".into();
    dr.exec_id = "x1".into();
    let e = shim
        .client
        .call::<_, api::DeleteResponse>("Delete", &dr)
        .expect_err("running");
    assert_eq!(e.code, FAILED_PRECONDITION);
    k.exec_id = "x1".into();
    let _: api::Empty = shim.client.call("Kill", &k).expect("kill exec");
    assert_eq!(wait(&mut shim.client, "good", "x1"), 137);
    let e = shim
        .client
        .call::<_, api::Empty>("Kill", &k)
        .expect_err("finished");
    assert_eq!(e.code, NOT_FOUND);
    assert_eq!(delete(&mut shim.client, "good", "x1").exit_status, 137);

    s.id = "good".into();
    let st: api::StateResponse = shim.client.call("State", &s).expect("state");
    assert_eq!(st.status.value(), 2, "running");
    assert!(mounts_under(shim.dir.path()).is_empty());
}

#[test]
fn events_reach_the_callers_event_service() {
    let mut shim = Shim::start("events");
    let b = shim.bundle("e1", &["sleep", "1000"], false);
    create(&mut shim, "e1", &b, "", "", None).expect("create");
    start(&mut shim.client, "e1", "");
    let mut x = api::ExecProcessRequest::new();
    x.id = "e1".into();
    x.exec_id = "x".into();
    x.spec = MessageField::some(exec_spec(&["true"]));
    let _: api::Empty = shim.client.call("Exec", &x).expect("exec");
    start(&mut shim.client, "e1", "x");
    assert_eq!(wait(&mut shim.client, "e1", "x"), 0);
    let mut p = api::PauseRequest::new();
    p.id = "e1".into();
    let _: api::Empty = shim.client.call("Pause", &p).expect("pause");
    let mut r = api::ResumeRequest::new();
    r.id = "e1".into();
    let _: api::Empty = shim.client.call("Resume", &r).expect("resume");
    let mut k = api::KillRequest::new();
    k.id = "e1".into();
    k.signal = 9;
    let _: api::Empty = shim.client.call("Kill", &k).expect("kill");
    assert_eq!(wait(&mut shim.client, "e1", ""), 137);
    delete(&mut shim.client, "e1", "");
    let want = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ];
    wait_for("all events", Duration::from_secs(10), || {
        shim.events.topics().len() >= want.len()
    });
    assert_eq!(shim.events.topics(), want);
    let urls: Vec<String> = shim
        .events
        .topics
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, u)| u.clone())
        .collect();
    assert_eq!(urls[0], "containerd.events.TaskCreate");
    assert_eq!(urls[8], "containerd.events.TaskDelete");
}

#[test]
fn containers_of_one_pod_share_a_shim() {
    let dir = support::TempDir::new("kshim-group");
    let sockdir = dir.path().join("s");
    std::fs::create_dir_all(&sockdir).expect("mkdir");
    let ns = support::unique("kg");
    // Shims this test started and did not shut down (it failed midway) are killed.
    struct KillShims(String);
    impl Drop for KillShims {
        fn drop(&mut self) {
            for pid in support::pids_with_cmdline(&self.0) {
                support::kill9(pid);
            }
        }
    }
    let _cleanup = KillShims(format!("-namespace {ns} "));
    let start_in = |id: &str, sandbox: &str| -> String {
        let b = dir.path().join(id);
        std::fs::create_dir_all(&b).expect("mkdir");
        let cfg = serde_json::json!({"annotations": {"io.kubernetes.cri.sandbox-id": sandbox}});
        std::fs::write(b.join("config.json"), cfg.to_string()).expect("config");
        let out = std::process::Command::new(support::shim_binary())
            .args(["-namespace", &ns, "-address"])
            .arg(&sockdir)
            .args(["-id", id, "start"])
            .current_dir(&b)
            .output()
            .expect("start");
        assert!(out.status.success());
        let a = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            std::fs::read_to_string(b.join("address")).expect("address"),
            a
        );
        a
    };
    let a1 = start_in("pod1-sandbox", "pod1");
    let a2 = start_in("pod1-app", "pod1");
    let b1 = start_in("pod2-sandbox", "pod2");
    assert_eq!(a1, a2);
    assert_ne!(a1, b1);
    let shut_down = |a: &str| -> i32 {
        let mut c = Client::connect(a);
        let info: api::ConnectResponse = c
            .call("Connect", &api::ConnectRequest::new())
            .expect("connect");
        let pid = info.shim_pid as i32;
        let _: api::Empty = c
            .call("Shutdown", &api::ShutdownRequest::new())
            .expect("shutdown");
        // Gone by the time the answer arrives, not only once the process has left: a start
        // right after must get a shim of its own, not join the one leaving.
        let sock = a.trim_start_matches("unix://");
        assert!(
            !Path::new(sock).exists(),
            "socket {sock} outlives the Shutdown answer"
        );
        pid
    };
    let old = shut_down(&a1);
    let again = start_in("pod1-app", "pod1");
    assert_eq!(again, a1);
    let new = shut_down(&again);
    assert_ne!(
        new, old,
        "the new start joined the shim that was shutting down"
    );
    let last = shut_down(&b1);
    for pid in [old, new, last] {
        wait_for("shim exit after Shutdown", Duration::from_secs(5), || {
            !alive(pid)
        });
    }
}

#[test]
fn resize_update_pids_stats_and_checkpoint() {
    let mut shim = Shim::start("update");
    let out = shim.dir.path().join("u1.out");
    let uri = format!("file://{}", out.display());
    let b = shim.bundle(
        "u1",
        &["sh", "-c", "sleep 0.3; stty size; sleep 1000"],
        true,
    );
    let mut r = api::CreateTaskRequest::new();
    r.id = "u1".into();
    r.bundle = b.to_string_lossy().into_owned();
    r.terminal = true;
    r.stdout = uri;
    let created: api::CreateTaskResponse = shim.client.call("Create", &r).expect("create");
    let mut rz = api::ResizePtyRequest::new();
    rz.id = "u1".into();
    rz.width = 123;
    rz.height = 45;
    let _: api::Empty = shim.client.call("ResizePty", &rz).expect("resize");
    start(&mut shim.client, "u1", "");
    wait_for("stty output", Duration::from_secs(10), || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("45 123")
    });

    // Update: a pids limit lands in the container's cgroup.
    let mut u = api::UpdateTaskRequest::new();
    u.id = "u1".into();
    let mut res = Any::new();
    res.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
    res.value = br#"{"pids":{"limit":77}}"#.to_vec();
    u.resources = MessageField::some(res);
    let _: api::Empty = shim.client.call("Update", &u).expect("update");
    let rel = format!("{}/u1/pids.max", shim.cgroup_parent);
    let limit = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .iter()
        .find_map(|root| std::fs::read_to_string(Path::new(root).join(&rel)).ok())
        .expect("pids.max");
    assert_eq!(limit.trim(), "77");

    // Pids lists the init; Stats comes from the same cgroup.
    let mut p = api::PidsRequest::new();
    p.id = "u1".into();
    let pids: api::PidsResponse = shim.client.call("Pids", &p).expect("pids");
    assert!(
        pids.processes.iter().any(|x| x.pid == created.pid),
        "{:?}",
        pids.processes
    );
    let mut s = api::StatsRequest::new();
    s.id = "u1".into();
    let st: api::StatsResponse = shim.client.call("Stats", &s).expect("stats");
    if st.stats.type_url == "io.containerd.cgroups.v1.Metrics" {
        use containerd_shim_protos::cgroups::metrics::Metrics;
        let m: Metrics = protobuf::Message::parse_from_bytes(&st.stats.value).expect("metrics");
        assert_eq!(m.pids.limit, 77);
        assert!(m.pids.current >= 1);
        assert!(m.memory.usage.usage > 0);
    } else {
        use containerd_shim_protos::cgroups_v2::metrics::Metrics;
        assert_eq!(st.stats.type_url, "io.containerd.cgroups.v2.Metrics");
        let m: Metrics = protobuf::Message::parse_from_bytes(&st.stats.value).expect("metrics");
        assert_eq!(m.pids.limit, 77);
        assert!(m.pids.current >= 1);
    }

    // Checkpoint cannot work with kosrun: a clear error, and the task keeps running.
    let mut c = api::CheckpointTaskRequest::new();
    c.id = "u1".into();
    c.path = shim.dir.path().join("ckpt").to_string_lossy().into_owned();
    let e = shim
        .client
        .call::<_, api::Empty>("Checkpoint", &c)
        .expect_err("checkpoint");
    assert_eq!(e.code, FAILED_PRECONDITION, "{e:?}");
    assert!(
        e.message.contains("u1") && e.message.contains("kosrun has no checkpoint/restore"),
        "{}",
        e.message
    );
    // Nor can a container be created from one.
    let b2 = shim.bundle("u2", &["true"], false);
    let mut cr = api::CreateTaskRequest::new();
    cr.id = "u2".into();
    cr.bundle = b2.to_string_lossy().into_owned();
    cr.checkpoint = c.path.clone();
    let e = shim
        .client
        .call::<_, api::CreateTaskResponse>("Create", &cr)
        .expect_err("restore");
    assert_eq!(e.code, FAILED_PRECONDITION, "{e:?}");
    assert!(
        e.message.contains("kosrun has no checkpoint/restore"),
        "{}",
        e.message
    );
    let mut sr = api::StateRequest::new();
    sr.id = "u1".into();
    let state: api::StateResponse = shim.client.call("State", &sr).expect("state");
    assert_eq!(state.status.value(), 2, "still running");
    assert!(state.terminal);
}

#[test]
fn without_a_pid_namespace_the_init_exit_kills_the_rest() {
    let mut shim = Shim::start("hostpid");
    let out = shim.dir.path().join("h1.out");
    let b = shim.bundle(
        "h1",
        &["sh", "-c", "sleep 1000 & echo $!; exec sleep 1000"],
        false,
    );
    support::share_host_pid_namespace(&b);
    let uri = format!("file://{}", out.display());
    let init = create(&mut shim, "h1", &b, &uri, &uri, None).expect("create");
    start(&mut shim.client, "h1", "");
    wait_for("background pid", Duration::from_secs(10), || {
        !std::fs::read_to_string(&out)
            .unwrap_or_default()
            .trim()
            .is_empty()
    });
    let bg: i32 = std::fs::read_to_string(&out)
        .expect("out")
        .trim()
        .parse()
        .expect("pid");
    assert!(alive(bg) && bg != init as i32);
    let mut k = api::KillRequest::new();
    k.id = "h1".into();
    k.signal = 9;
    let _: api::Empty = shim.client.call("Kill", &k).expect("kill init only");
    assert_eq!(wait(&mut shim.client, "h1", ""), 137);
    wait_for(
        "the background process killed too",
        Duration::from_secs(5),
        || !alive(bg),
    );
}

#[test]
fn ttrpc_rust_client_interoperates() {
    // kosd drives the shim with ttrpc-rust's client; the same wire, checked with its sync one.
    let mut shim = Shim::start("ttrpcrs");
    let client = containerd_shim_protos::ttrpc::Client::connect(&shim.address).expect("connect");
    let task = containerd_shim_protos::TaskClient::new(client);
    let ctx = || containerd_shim_protos::ttrpc::context::with_timeout(10_000_000_000);
    let info = task
        .connect(ctx(), &api::ConnectRequest::new())
        .expect("Connect");
    assert_eq!(info.shim_pid as i32, shim.pid);
    let mut s = api::StateRequest::new();
    s.id = "ghost".into();
    match task.state(ctx(), &s) {
        Err(containerd_shim_protos::ttrpc::Error::RpcStatus(st)) => {
            assert_eq!(st.code.value(), NOT_FOUND);
            assert!(st.message.contains("ghost"), "{}", st.message);
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let b = shim.bundle("rs1", &["sh", "-c", "exit 9"], false);
    let mut r = api::CreateTaskRequest::new();
    r.id = "rs1".into();
    r.bundle = b.to_string_lossy().into_owned();
    task.create(ctx(), &r).expect("Create");
    let mut st = api::StartRequest::new();
    st.id = "rs1".into();
    task.start(ctx(), &st).expect("Start");
    let mut w = api::WaitRequest::new();
    w.id = "rs1".into();
    assert_eq!(task.wait(ctx(), &w).expect("Wait").exit_status, 9);
    let mut d = api::DeleteRequest::new();
    d.id = "rs1".into();
    assert_eq!(task.delete(ctx(), &d).expect("Delete").exit_status, 9);
}

#[test]
fn io_uid_and_gid_own_the_stdio_pipes() {
    let mut shim = Shim::start("ioowner");
    let out = shim.dir.path().join("o1.out");
    let uri = format!("file://{}", out.display());
    let script = "stat -L -c %u:%g /proc/self/fd/1 /proc/self/fd/2; exec sleep 1000";
    let b = shim.bundle("o1", &["sh", "-c", script], false);
    let mut buf = Vec::new();
    {
        let mut os = CodedOutputStream::vec(&mut buf);
        os.write_uint32(4, 1234).expect("encode");
        os.write_uint32(5, 4321).expect("encode");
        os.flush().expect("flush");
    }
    let mut opts = Any::new();
    opts.type_url = "containerd.runc.v1.Options".into();
    opts.value = buf;
    create(&mut shim, "o1", &b, &uri, &uri, Some(opts)).expect("create");
    start(&mut shim.client, "o1", "");
    wait_for("stat output", Duration::from_secs(10), || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    });
    assert_eq!(
        std::fs::read_to_string(&out).expect("out"),
        "1234:4321\n1234:4321\n"
    );
    // Execs of the container get the same owner.
    let xout = shim.dir.path().join("x.out");
    let mut x = api::ExecProcessRequest::new();
    x.id = "o1".into();
    x.exec_id = "x".into();
    x.stdout = format!("file://{}", xout.display());
    x.spec = MessageField::some(exec_spec(&["stat", "-L", "-c", "%u:%g", "/proc/self/fd/1"]));
    let _: api::Empty = shim.client.call("Exec", &x).expect("exec");
    start(&mut shim.client, "o1", "x");
    assert_eq!(wait(&mut shim.client, "o1", "x"), 0);
    assert_eq!(std::fs::read_to_string(&xout).expect("out"), "1234:4321\n");
}

/// A cgroup made for a test in every hierarchy, removed (with what is below it) on drop.
struct TestCgroup(String);

impl TestCgroup {
    fn new(prefix: &str, subs: &[&str]) -> TestCgroup {
        let name = support::unique(prefix);
        let g = TestCgroup(name.clone());
        for sub in subs {
            kos_cgroups::Manager::new(Some(&format!("/{name}/{sub}")), "test")
                .and_then(|m| m.create())
                .expect("test cgroup");
        }
        g
    }

    fn path(&self, sub: &str) -> String {
        format!("/{}/{sub}", self.0)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        support::remove_cgroups(&self.0);
    }
}

/// The shim's cgroup in every hierarchy it is in (`/proc/PID/cgroup`).
fn cgroups_of(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .expect("/proc/PID/cgroup")
        .lines()
        .map(|l| l.splitn(3, ':').nth(2).unwrap_or("").to_string())
        .collect()
}

/// runc Options carrying only ShimCgroup (field 3), wrapped in an Any as containerd sends it.
fn shim_cgroup_options(path: &str) -> Any {
    let mut buf = Vec::new();
    {
        let mut os = CodedOutputStream::vec(&mut buf);
        os.write_string(3, path).expect("encode");
        os.flush().expect("flush");
    }
    let mut a = Any::new();
    a.type_url = "containerd.runc.v1.Options".into();
    a.value = buf;
    a
}

#[test]
fn shim_cgroup_from_the_start_action_and_from_create() {
    // Declared first, dropped last: the shim is gone before its cgroups are removed.
    let cg = TestCgroup::new("kos-shimcg", &["start", "create"]);

    // containerd's way: the options on the start action's stdin.
    let opts =
        protobuf::Message::write_to_bytes(&shim_cgroup_options(&cg.path("start"))).expect("encode");
    let mut shim = Shim::start_with_stdin("shimcg", &opts).expect("start");
    let groups = cgroups_of(shim.pid);
    assert!(
        groups.iter().all(|g| *g == cg.path("start")),
        "shim not in {} everywhere: {groups:?}",
        cg.path("start")
    );

    // kosd's way: in CreateTaskRequest.options; the container runs as usual.
    let b = shim.bundle("c1", &["sleep", "1000"], false);
    create(
        &mut shim,
        "c1",
        &b,
        "",
        "",
        Some(shim_cgroup_options(&cg.path("create"))),
    )
    .expect("create");
    let groups = cgroups_of(shim.pid);
    assert!(
        groups.iter().all(|g| *g == cg.path("create")),
        "shim not in {} everywhere: {groups:?}",
        cg.path("create")
    );

    // A cgroup that does not exist: a clear error, nothing made, the shim stays put.
    let b = shim.bundle("c2", &["true"], false);
    let missing = cg.path("missing");
    let e = create(
        &mut shim,
        "c2",
        &b,
        "",
        "",
        Some(shim_cgroup_options(&missing)),
    )
    .expect_err("missing shim cgroup");
    assert_eq!(e.code, INVALID_ARGUMENT, "{e:?}");
    assert!(
        e.message.contains(&missing) && e.message.contains("does not exist"),
        "{}",
        e.message
    );
    assert!(!Path::new(&format!("/run/containerd/kos/{}/c2", shim.ns)).exists());
    assert!(cgroups_of(shim.pid).iter().all(|g| *g == cg.path("create")));
    start(&mut shim.client, "c1", "");

    // And at the start action: it fails, naming the cgroup (before any daemon is forked).
    let opts = protobuf::Message::write_to_bytes(&shim_cgroup_options(&missing)).expect("encode");
    let err = match Shim::start_with_stdin("shimcg-bad", &opts) {
        Ok(_) => panic!("start with a missing shim cgroup succeeded"),
        Err(e) => e,
    };
    assert!(
        err.contains(&missing) && err.contains("does not exist"),
        "{err}"
    );
}

/// Writes `out-N` and `err-N` every 100 ms, N counting from 0.
const TICKER: &str =
    "i=0; while true; do echo out-$i; echo err-$i >&2; i=$((i+1)); sleep 0.1; done";

fn reopen(c: &mut Client, id: &str, exec_id: &str) -> Result<api::Empty, support::ttrpc::RpcError> {
    let mut r = api::StateRequest::new();
    r.id = id.into();
    r.exec_id = exec_id.into();
    c.call_service("kos.shim.v1.Logs", "Reopen", &r)
}

/// The numbers N of the `out-N` lines (stream stdout) of a CRI or json-file log, in order.
fn out_numbers(path: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let msg = if l.starts_with('{') {
                let v: serde_json::Value = serde_json::from_str(l).expect("json-file entry");
                (v["stream"] == "stdout").then(|| v["log"].as_str().expect("log").to_string())
            } else {
                let parts: Vec<&str> = l.splitn(4, ' ').collect();
                assert_eq!(parts.len(), 4, "cri line {l:?}");
                (parts[1] == "stdout").then(|| parts[3].to_string())
            }?;
            Some(
                msg.trim_end()
                    .strip_prefix("out-")
                    .expect("out-N")
                    .parse()
                    .expect("N"),
            )
        })
        .collect()
}

fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).expect("stat").ino()
}

/// Renames `log` to `log.1`, reopens through the shim, and checks that the new file exists
/// at once, new lines go there and the old file keeps what it had, nothing lost or doubled.
fn rotate_and_check(shim: &mut Shim, id: &str, log: &Path) {
    wait_for("first lines", Duration::from_secs(10), || {
        out_numbers(log).len() >= 3
    });
    let old = PathBuf::from(format!("{}.1", log.display()));
    std::fs::rename(log, &old).expect("rename");
    reopen(&mut shim.client, id, "").expect("reopen");
    // Synchronous: the new file is there as soon as the call returns, mode as before.
    let meta = std::fs::metadata(log).expect("new log file right after Reopen");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_ne!(inode(log), inode(&old));
    let old_text = std::fs::read_to_string(&old).expect("old log");
    wait_for("lines in the new file", Duration::from_secs(10), || {
        out_numbers(log).len() >= 3
    });
    assert_eq!(
        std::fs::read_to_string(&old).expect("old log"),
        old_text,
        "the old file got lines after Reopen"
    );
    let (a, b) = (out_numbers(&old), out_numbers(log));
    assert!(!a.is_empty() && !b.is_empty());
    let all: Vec<u32> = a.iter().chain(b.iter()).copied().collect();
    let expected: Vec<u32> = (0..all.len() as u32).collect();
    assert_eq!(all, expected, "old {a:?} then new {b:?}");
}

#[test]
fn reopen_log_writes_into_a_new_file_after_a_rename() {
    let mut shim = Shim::start("reopen");
    let d = shim.dir.path().to_path_buf();
    // Two containers in one shim (one pod): c1 with a CRI log, c2 with a json-file log.
    let log1 = d.join("c1.log");
    let uri1 = format!("cri-log://{}", log1.display());
    let b = shim.bundle("c1", &["sh", "-c", TICKER], false);
    create(&mut shim, "c1", &b, &uri1, &uri1, None).expect("create c1");
    start(&mut shim.client, "c1", "");
    let log2 = d.join("c2.log");
    let uri2 = format!("json-file://{}?max-size=1000000&max-file=2", log2.display());
    let b = shim.bundle("c2", &["sh", "-c", TICKER], false);
    create(&mut shim, "c2", &b, &uri2, &uri2, None).expect("create c2");
    start(&mut shim.client, "c2", "");

    wait_for("c2 lines", Duration::from_secs(10), || {
        out_numbers(&log2).len() >= 2
    });
    let c2_inode = inode(&log2);
    rotate_and_check(&mut shim, "c1", &log1);
    // Reopening c1 left c2's file alone: same file, still growing.
    assert_eq!(inode(&log2), c2_inode);
    let n = out_numbers(&log2).len();
    wait_for("c2 still writing", Duration::from_secs(10), || {
        out_numbers(&log2).len() > n
    });
    rotate_and_check(&mut shim, "c2", &log2);

    // Mistakes: unknown container or exec, a container without a log file, a bad method.
    let e = reopen(&mut shim.client, "ghost", "").expect_err("unknown container");
    assert_eq!(e.code, NOT_FOUND, "{e:?}");
    assert!(e.message.contains("ghost"), "{}", e.message);
    let e = reopen(&mut shim.client, "c1", "nope").expect_err("unknown exec");
    assert_eq!(e.code, NOT_FOUND, "{e:?}");
    let b = shim.bundle("nolog", &["sleep", "1000"], false);
    create(&mut shim, "nolog", &b, "", "", None).expect("create nolog");
    let e = reopen(&mut shim.client, "nolog", "").expect_err("no log file");
    assert_eq!(e.code, FAILED_PRECONDITION, "{e:?}");
    assert!(e.message.contains("no log file"), "{}", e.message);
    let e = shim
        .client
        .call_service::<_, api::Empty>("kos.shim.v1.Logs", "Rotate", &api::StateRequest::new())
        .expect_err("unknown method");
    assert_eq!(e.code, 12, "UNIMPLEMENTED: {e:?}");
    // A log directory that is gone: an error naming the file, the old file stays in use.
    let gone = d.join("gone");
    std::fs::create_dir(&gone).expect("mkdir");
    let log3 = gone.join("c3.log");
    let uri3 = format!("cri-log://{}", log3.display());
    let b = shim.bundle("c3", &["sh", "-c", TICKER], false);
    create(&mut shim, "c3", &b, &uri3, &uri3, None).expect("create c3");
    start(&mut shim.client, "c3", "");
    let moved = d.join("moved");
    std::fs::rename(&gone, &moved).expect("rename dir");
    let e = reopen(&mut shim.client, "c3", "").expect_err("directory gone");
    assert!(e.message.contains("c3.log"), "{}", e.message);
    let kept = moved.join("c3.log");
    let n = out_numbers(&kept).len();
    wait_for(
        "c3 still writing into its file",
        Duration::from_secs(10),
        || out_numbers(&kept).len() > n,
    );
    // The shim still serves the task API.
    let mut s = api::StateRequest::new();
    s.id = "c1".into();
    let st: api::StateResponse = shim.client.call("State", &s).expect("state");
    assert_eq!(st.status.value(), 2, "running");
}
