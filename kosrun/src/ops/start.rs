//! `start`: release a created container's init into the user's program.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use super::create::Created;
use super::StateDoc;
use crate::container::Container;
use crate::error::{Error, Result, Stage};
use crate::hooks;
use crate::linux::spawn;
use crate::store::{Saved, Status};

/// Returns hook warnings (poststart failures are reported, not fatal).
pub fn start(root: &Path, id: &str) -> Result<Vec<String>> {
    let mut c = Container::load(root, id)?;
    let status = c.status();
    if status != Status::Created {
        return Err(Error::WrongState {
            id: id.to_string(),
            status: status.to_string(),
            what: "cannot start a container that is not created",
        });
    }
    let (conn, name) = spawn::start_connect(c.dir())?;
    let released = release(conn.as_fd());
    let _ = std::fs::remove_file(c.dir().join(name));
    released?;
    c.saved.started = true;
    let warnings = record_started(c.save());
    Ok(finish(&c.saved, warnings))
}

/// `run`'s start of the container it has just created: the init is released over the
/// channel `create_for_run` kept, and the state is written once, with create and start
/// both done. The directory lock is released when this returns.
pub fn start_created(created: &mut Created) -> Result<Vec<String>> {
    let starter = created.starter.take().ok_or_else(|| {
        Error::failed(
            Stage::Start,
            "container was not created for run: no channel to its init".into(),
        )
    })?;
    // SAFETY: the channel's descriptor lives as long as `starter`, which outlives this use.
    let fd = unsafe { BorrowedFd::borrow_raw(starter.chan.raw()) };
    if starter.at_once {
        read_report(fd)?;
    } else {
        release(fd)?;
    }
    created.saved.started = true;
    let warnings = record_started(starter.dir.save(&created.saved));
    drop(starter);
    Ok(finish(&created.saved, warnings))
}

/// One byte releases the init (it already holds the state for startContainer hooks);
/// it closes its end by exec'ing (close-on-exec), or writes why it could not.
fn release(conn: BorrowedFd) -> Result<()> {
    loop {
        match nix::unistd::write(conn, b"s") {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::failed_by(
                    Stage::Start,
                    format!("release container init: {e}"),
                    e,
                ))
            }
        }
    }
    read_report(conn)
}

/// The init's word on its start: nothing (the channel closed by its exec) or why not.
fn read_report(conn: BorrowedFd) -> Result<()> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while reply.len() < 64 * 1024 {
        match nix::unistd::read(conn, &mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if !reply.is_empty() {
        return Err(Error::failed(
            Stage::Start,
            String::from_utf8_lossy(&reply).into_owned(),
        ));
    }
    Ok(())
}

/// Only a shortcut for later commands: the status comes from the init's executable,
/// so a full or read-only --root (or our death right here) cannot make it wrong.
fn record_started(saved: Result<()>) -> Vec<String> {
    match saved {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("container started; its state was not updated: {e}")],
    }
}

/// Poststart hooks, after the program has started.
fn finish(saved: &Saved, mut warnings: Vec<String>) -> Vec<String> {
    let hooks = match saved.view() {
        Ok(v) => v.hooks,
        Err(e) => {
            warnings.push(format!("poststart hooks not run: {e}"));
            return warnings;
        }
    };
    if hooks::of_kind(hooks.as_ref(), hooks::Kind::Poststart).is_empty() {
        return warnings;
    }
    let state = StateDoc::new(saved, Status::Running).json();
    warnings.extend(hooks::run_all_warn(
        hooks.as_ref(),
        hooks::Kind::Poststart,
        &state,
    ));
    warnings
}
