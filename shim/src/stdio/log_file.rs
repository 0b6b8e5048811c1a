//! The log files the shim writes by path (json-file, CRI), kept per process so that they can
//! be opened again at the same path after the file was renamed away: kubelet rotates a CRI
//! log by renaming it and then asking the runtime to reopen (ReopenContainerLog).

use std::cell::RefCell;
use std::rc::Rc;

use super::cri::CriFile;
use super::json_file::JsonFile;

/// One log file, shared by the sinks of the streams that write into it.
pub enum LogFile {
    Cri(Rc<RefCell<CriFile>>),
    Json(Rc<RefCell<JsonFile>>),
}

impl LogFile {
    /// Opens a new file at the same path (create, append, mode 0640, as at the start); the
    /// streams write there from now on. On failure they keep writing into the old file.
    pub fn reopen(&self) -> Result<(), String> {
        match self {
            LogFile::Cri(f) => {
                let mut f = f.borrow_mut();
                f.reopen()
                    .map_err(|e| format!("reopening cri log {}: {e}", f.path().display()))
            }
            LogFile::Json(f) => {
                let mut f = f.borrow_mut();
                f.reopen()
                    .map_err(|e| format!("reopening json-file log {}: {e}", f.path().display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdio::cri::CriSink;
    use crate::stdio::Sink;

    #[test]
    fn reopen_writes_into_a_new_file_at_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("0.log");
        let f = Rc::new(RefCell::new(CriFile::open(&p).expect("open")));
        let log = LogFile::Cri(f.clone());
        let mut out = CriSink::new(f, "stdout");
        out.write(b"before\n").expect("w");
        let old = dir.path().join("0.log.rotated");
        std::fs::rename(&p, &old).expect("rename");
        log.reopen().expect("reopen");
        assert_eq!(std::fs::read_to_string(&p).expect("new"), "");
        out.write(b"after\n").expect("w");
        let old_text = std::fs::read_to_string(&old).expect("old");
        let new_text = std::fs::read_to_string(&p).expect("new");
        assert!(old_text.ends_with(" stdout F before\n"), "{old_text}");
        assert!(new_text.ends_with(" stdout F after\n"), "{new_text}");
        assert_eq!((old_text.lines().count(), new_text.lines().count()), (1, 1));
    }

    #[test]
    fn a_failed_reopen_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("pod");
        std::fs::create_dir(&sub).expect("mkdir");
        let p = sub.join("0.log");
        let f = Rc::new(RefCell::new(CriFile::open(&p).expect("open")));
        let log = LogFile::Cri(f.clone());
        let moved = dir.path().join("moved");
        std::fs::rename(&sub, &moved).expect("rename dir");
        let e = log.reopen().expect_err("directory gone");
        assert!(e.contains("0.log"), "{e}");
        let mut out = CriSink::new(f, "stdout");
        out.write(b"still\n").expect("w");
        let text = std::fs::read_to_string(moved.join("0.log")).expect("old");
        assert!(text.ends_with(" stdout F still\n"), "{text}");
    }
}
