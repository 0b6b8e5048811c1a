//! `start`: release a created container's init into the user's program.

use std::io::{Read, Write};
use std::path::Path;

use super::StateDoc;
use crate::container::Container;
use crate::error::{Error, Result, Stage};
use crate::hooks;
use crate::linux::spawn;
use crate::store::Status;

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
    let conn = spawn::start_connect(c.dir())?;
    let mut conn = std::fs::File::from(conn);
    // One byte releases the init; it already holds the state for startContainer hooks.
    conn.write_all(b"s")
        .map_err(|e| Error::failed_by(Stage::Start, format!("release container init: {e}"), e))?;
    // The init closes its end by exec'ing (close-on-exec), or writes why it could not.
    let mut reply = String::new();
    let _ = (&mut conn).take(64 * 1024).read_to_string(&mut reply);
    let _ = std::fs::remove_file(c.start_socket());
    let _ = std::fs::remove_file(c.dir().join(crate::store::OLD_START_SOCKET));
    if !reply.is_empty() {
        return Err(Error::failed(Stage::Start, reply));
    }
    // Only a shortcut for later commands: the status comes from the init's executable,
    // so a full or read-only --root (or our death right here) cannot make it wrong.
    c.saved.started = true;
    let mut warnings = Vec::new();
    if let Err(e) = c.save() {
        warnings.push(format!("container started; its state was not updated: {e}"));
    }
    let state = StateDoc::new(&c.saved, Status::Running).json();
    warnings.extend(hooks::run_all_warn(
        &c.saved.config,
        hooks::Kind::Poststart,
        &state,
    ));
    Ok(warnings)
}
