#!/usr/bin/env python3
"""Runs every test of the workspace and the conformance suite; ends with one line
`N passed, N failed, N skipped`, totalled over all suites, and exits non-zero on a failure.

Suites are found, not listed: every test harness `cargo build --workspace --tests` produces
(the unit tests of each library and binary, each integration test file), the doc tests, and
the conformance suite against kosrun. A crate added to the workspace is picked up by itself.
Examples are built with them, as `cargo test` does: some tests start one as their server.
A crate that does not compile counts as one failure and the others still run.

Independent suites run side by side (KOS_TEST_JOBS, default 2 on this 2-core machine), the
slowest of the previous run first. Each test binary runs as `cargo test` would run it: from
its package directory with CARGO_MANIFEST_DIR and CARGO_PKG_* set.

Skips: a test that cannot run because the machine lacks a kernel feature calls its support
module's `skip(reason)`, which appends one line to $KOS_TEST_SKIPS/skips.log and returns; the
test then passes in libtest's eyes, so each recorded skip moves one test from passed to
skipped here. Every suite gets its own KOS_TEST_SKIPS directory. A missing tool is a failure
(scripts/deps.sh installs the tools), never a skip.

Host-wide forwarding sysctls (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding), which the
suites' kosd turn on for their bridges, are put back as the run found them at its end.

Environment: KOS_TEST_JOBS (parallel suites), KOS_TEST_ONLY (regex on suite names, for a
partial run), KOS_TEST_TIMEOUT (seconds per suite, default 1500), KOS_TEST_NO_CONFORMANCE=1,
CARGO, KOSRUN (the kosrun every suite drives; default the shipped one, scripts/build-kosrun.sh,
built here).
Logs: target/kos-test/logs/<suite>.log.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARGO = os.environ.get("CARGO", "cargo")
JOBS = max(1, int(os.environ.get("KOS_TEST_JOBS", "2")))
TIMEOUT = int(os.environ.get("KOS_TEST_TIMEOUT", "1500"))
ONLY = re.compile(os.environ["KOS_TEST_ONLY"]) if os.environ.get("KOS_TEST_ONLY") else None

# Suites that check host-wide state (say, that the host's links are as they were) must not
# overlap with suites changing that state: a suite matching a group's pattern waits until no
# other suite of the group runs. Everything else overlaps freely.
GROUPS = {
    "host-network": re.compile(r"^(kos-network|kos-cni|kos-dns|kosd)/"),
}

RESULT = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
TEST_LINE = re.compile(r"^test (\S+) \.\.\. (ok|FAILED)")
CLOSING = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$")

print_lock = threading.Lock()


def say(msg=""):
    with print_lock:
        print(msg, flush=True)


def target_dir():
    out = subprocess.run(
        [CARGO, "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    meta = json.loads(out)
    return Path(meta["target_directory"]), meta


class Suite:
    def __init__(self, name, argv, cwd, env=None, kind="libtest"):
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.env = env or {}
        self.kind = kind  # libtest | doctest | closing (prints the closing line itself)
        self.passed = self.failed = self.skipped = 0
        self.notes = []  # why a suite failed beyond its tests (crash, timeout, build)
        self.seconds = 0.0
        self.log = None
        self.skip_lines = []


def build(meta):
    """Builds every test harness (and the binaries integration tests run); returns the
    suites to run and the packages that failed to build."""
    say("== building the tests of every crate")
    pkgs = {p["id"]: p for p in meta["packages"]}
    cmd = [CARGO, "build", "--workspace", "--tests", "--bins", "--examples", "--keep-going",
           "--message-format=json-render-diagnostics"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    suites, broken = [], set()
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        reason = msg.get("reason")
        if reason == "compiler-message" and msg["message"].get("level") == "error":
            broken.add(msg["package_id"])
        elif reason == "compiler-artifact" and msg["profile"]["test"] and msg.get("executable"):
            pkg = pkgs.get(msg["package_id"])
            if pkg is None:
                continue
            t = msg["target"]
            kind = t["kind"][0]
            name = f'{pkg["name"]}/{kind}' if kind == "lib" else f'{pkg["name"]}/{kind}:{t["name"]}'
            pdir = str(Path(pkg["manifest_path"]).parent)
            env = {
                "CARGO_MANIFEST_DIR": pdir,
                "CARGO_PKG_NAME": pkg["name"],
                "CARGO_PKG_VERSION": pkg["version"],
                "CARGO_CRATE_NAME": t["name"].replace("-", "_"),
            }
            suites.append(Suite(name, [msg["executable"], "--color", "never"], pdir, env))
    rc = proc.wait()
    broken_names = sorted(pkgs[i]["name"] if i in pkgs else i for i in broken)
    if rc != 0 and not broken_names:
        broken_names = ["(cargo build failed before compiling: see above)"]
    return suites, broken_names


def shipped_kosrun(tdir):
    """The kosrun every suite drives (exported to them as KOSRUN): $KOSRUN, else the one KOS
    ships (scripts/build-kosrun.sh: a static musl build), built here together with the
    workspace's release kosrun and kos-conformance."""
    if os.environ.get("KOSRUN"):
        return Path(os.environ["KOSRUN"]), None
    say("== building the release kosrun and kos-conformance, and the shipped kosrun")
    r = subprocess.run([CARGO, "build", "--release", "-p", "kosrun", "-p", "kos-conformance"], cwd=ROOT)
    if r.returncode != 0:
        return None, "the release build of kosrun/kos-conformance failed"
    r = subprocess.run(["bash", str(ROOT / "scripts" / "build-kosrun.sh")], cwd=ROOT,
                       env=dict(os.environ, CARGO=CARGO), stdout=subprocess.PIPE, text=True)
    lines = r.stdout.split()
    if r.returncode != 0 or not lines:
        return None, "scripts/build-kosrun.sh (the shipped kosrun) failed"
    return Path(lines[-1]), None


def run_suite(s, logdir, skipdir):
    s.log = logdir / (re.sub(r"[^A-Za-z0-9_.-]", "_", s.name) + ".log")
    sd = skipdir / re.sub(r"[^A-Za-z0-9_.-]", "_", s.name)
    sd.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, KOS_TEST_SKIPS=str(sd), **s.env)
    start = time.monotonic()
    with open(s.log, "w") as log:
        p = subprocess.Popen(s.argv, cwd=s.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = p.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            rc = p.wait()
            s.notes.append(f"killed after {TIMEOUT} s")
    s.seconds = time.monotonic() - start
    text = s.log.read_text(errors="replace").splitlines()
    skips_file = sd / "skips.log"
    if skips_file.exists():
        s.skip_lines = [l for l in skips_file.read_text(errors="replace").splitlines() if l.strip()]
    parse(s, text, rc)
    mark = "ok  " if s.failed == 0 else "FAIL"
    say(f"{mark} {s.name:<44} {s.passed:4} passed, {s.failed} failed, {s.skipped} skipped"
        f"  ({s.seconds:.0f}s){'  ' + '; '.join(s.notes) if s.notes else ''}")
    return s


def parse(s, lines, rc):
    passed = failed = 0
    if s.kind == "closing":
        found = [CLOSING.match(l.strip()) for l in lines]
        found = [m for m in found if m]
        if found:
            m = found[-1]
            s.passed, s.failed, s.skipped = int(m[1]), int(m[2]), int(m[3] or 0)
        else:
            s.failed = 1
            s.notes.append(f"no closing line (exit {rc})")
        if rc != 0 and s.failed == 0:
            s.failed = 1
            s.notes.append(f"exit {rc} with no failed test")
        return
    results = [RESULT.match(l) for l in lines]
    results = [m for m in results if m]
    if s.kind == "libtest":
        # One harness, one summary: the last. Earlier ones can only come from a test's own
        # captured output (a test that runs a test binary), printed among the failures.
        results = results[-1:]
    if results:
        passed = sum(int(m[1]) for m in results)
        failed = sum(int(m[2]) for m in results)
    else:
        # Killed or crashed before the summary: count what finished, and the crash.
        for l in lines:
            m = TEST_LINE.match(l)
            if m:
                if m[2] == "ok":
                    passed += 1
                else:
                    failed += 1
        failed += 1
        if not s.notes:
            s.notes.append(f"no test summary (exit {rc})")
    if rc != 0 and failed == 0:
        failed = 1
        s.notes.append(f"exit {rc} with no failed test")
    skipped = min(len(s.skip_lines), passed)
    s.passed, s.failed, s.skipped = passed - skipped, failed, skipped


def schedule(suites, logdir, skipdir):
    """Runs the suites JOBS at a time, in order, except that a suite whose group is busy
    waits (and a later suite goes first)."""
    pending = list(suites)
    busy = set()
    running = {}
    done = []
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        while pending or running:
            while len(running) < JOBS:
                pick = next((s for s in pending if not groups_of(s) & busy), None)
                if pick is None:
                    break
                pending.remove(pick)
                busy |= groups_of(pick)
                running[pool.submit(run_suite, pick, logdir, skipdir)] = pick
            finished = next(as_completed(list(running)))
            s = running.pop(finished)
            busy -= groups_of(s)
            done.append(finished.result())
    return done


def groups_of(s):
    return {g for g, pat in GROUPS.items() if pat.search(s.name)}


def failure_excerpt(s, limit=80):
    lines = s.log.read_text(errors="replace").splitlines()
    if s.kind == "libtest" and "failures:" in lines:
        start = lines.index("failures:")
        lines = lines[start:]
    elif s.kind == "closing":
        lines = [l for l in lines if l.startswith("FAIL") or l.startswith("     |")] or lines
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more lines in {s.log})"]
    return "\n".join("    " + l for l in lines)


def pin_toolchain():
    """Test harnesses build binaries with the real cargo (env!("CARGO")), which runs `rustc`
    from PATH: rustup's proxy, which would obey a dependency's own rust-toolchain.toml (ttrpc
    pins one) when compiling in that crate's directory. Pin the toolchain the tests were
    built with, as running under `cargo test` does."""
    if os.environ.get("RUSTUP_TOOLCHAIN") or not shutil.which("rustup"):
        return
    r = subprocess.run(["rustup", "show", "active-toolchain"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.split():
        os.environ["RUSTUP_TOOLCHAIN"] = r.stdout.split()[0]


# Host-wide sysctls the suites' daemons turn on (kosd, like dockerd, enables forwarding for its
# bridges and leaves it on); a daemon cannot tell whether another test's still needs it, so
# the run puts them back as it found them once every suite has ended.
HOST_SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")


def read_host_sysctls():
    saved = {}
    for key in HOST_SYSCTLS:
        try:
            saved[key] = (Path("/proc/sys") / key).read_text().strip()
        except OSError:
            pass
    return saved


def restore_host_sysctls(saved):
    for key, value in saved.items():
        path = Path("/proc/sys") / key
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
                say(f"== restored {key.replace('/', '.')} to {value}")
        except OSError as e:
            say(f"== could not restore {key.replace('/', '.')} to {value}: {e}")


def main():
    os.chdir(ROOT)
    pin_toolchain()
    started = time.monotonic()
    tdir, meta = target_dir()
    work = tdir / "kos-test"
    logdir, skipdir = work / "logs", work / "skips"
    for d in (logdir, skipdir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    times_file = work / "times.json"
    try:
        times = json.loads(times_file.read_text())
    except (OSError, ValueError):
        times = {}

    suites, broken = build(meta)
    # A crate that did not compile is already one failure: its doc tests are left out.
    exclude = [a for b in broken if b in {p["name"] for p in meta["packages"]}
               for a in ("--exclude", b)]
    suites.append(Suite("doctests", [CARGO, "test", "--workspace", *exclude, "--doc",
                                     "--no-fail-fast", "--color", "never"],
                        str(ROOT), kind="doctest"))
    setup_failures = [f"{b}: does not compile" for b in broken]
    runtime, err = shipped_kosrun(tdir)
    if err:
        setup_failures.append(err)
    else:
        os.environ["KOSRUN"] = str(runtime)
        say(f"== the suites drive {runtime}")
    if os.environ.get("KOS_TEST_NO_CONFORMANCE") != "1" and not err:
        conformance = tdir / "release" / "kos-conformance"
        suites.append(Suite("conformance", [str(conformance), "--runtime", str(runtime),
                                            "--keep-going", "--skip-known-departures"],
                            str(ROOT), kind="closing"))
    if ONLY:
        suites = [s for s in suites if ONLY.search(s.name)]
    # The slowest first, so the long ones overlap instead of trailing alone at the end.
    suites.sort(key=lambda s: -times.get(s.name, 60.0))

    say(f"== running {len(suites)} suites, {JOBS} at a time (logs in {logdir})")
    sysctls = read_host_sysctls()
    try:
        done = schedule(suites, logdir, skipdir)
    finally:
        restore_host_sysctls(sysctls)

    times.update({s.name: round(s.seconds, 1) for s in done})
    times_file.write_text(json.dumps(times, indent=1, sort_keys=True))

    failed_suites = [s for s in done if s.failed]
    for s in sorted(failed_suites, key=lambda s: s.name):
        say(f"\n== FAILED: {s.name} ({s.log})")
        say(failure_excerpt(s))
    for f in setup_failures:
        say(f"\n== FAILED: {f}")
    skips = [(s.name, l) for s in done for l in s.skip_lines]
    if skips:
        say("\n== skipped for lack of a kernel feature:")
        for name, l in skips:
            say(f"    {l}")
    passed = sum(s.passed for s in done)
    failed = sum(s.failed for s in done) + len(setup_failures)
    skipped = sum(s.skipped for s in done)
    say(f"\n== {len(done)} suites in {time.monotonic() - started:.0f}s")
    say(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
