//! Finding and executing the user's program.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Stage};

/// Resolve args[0] against PATH from the process's own environment, as execvp would,
/// but inside the container's root (we have already pivoted).
pub fn find_program(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        return check_exec(&p).map(|_| p);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(arg0);
        if check_exec(&p).is_ok() {
            return Ok(p);
        }
    }
    Err(Error::failed(
        Stage::Exec,
        format!("exec: {arg0:?}: executable file not found in $PATH"),
    ))
}

fn check_exec(p: &Path) -> Result<()> {
    let c = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::failed(Stage::Exec, format!("exec: {} contains a NUL", p.display())))?;
    let md = std::fs::metadata(p).map_err(|e| {
        Error::failed_by(
            Stage::Exec,
            format!("exec: {:?}: stat {}: {}", p, p.display(), errno_text(&e)),
            e,
        )
    })?;
    if md.is_dir() {
        return Err(Error::failed(
            Stage::Exec,
            format!("exec: {p:?}: is a directory"),
        ));
    }
    // SAFETY: valid path.
    if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
        return Err(Error::failed(
            Stage::Exec,
            format!(
                "exec: {:?}: {}",
                p,
                errno_text(&std::io::Error::last_os_error())
            ),
        ));
    }
    Ok(())
}

/// An errno as runc words it ("no such file or directory"): engines above match these
/// texts (the docker CLI exits 127 for "no such file or directory" and "executable file
/// not found", 126 for "permission denied" and "is a directory").
fn errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

pub struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

pub fn prepare(path: &Path, args: &[String], env: &[String]) -> Result<Prepared> {
    let c = |s: &str| {
        CString::new(s).map_err(|_| {
            Error::invalid_in(
                Stage::Exec,
                "process.args",
                format!("{s:?} contains a NUL byte"),
            )
        })
    };
    Ok(Prepared {
        path: CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            Error::invalid_in(
                Stage::Exec,
                "process.args",
                "program path contains a NUL byte".into(),
            )
        })?,
        argv: args.iter().map(|a| c(a)).collect::<Result<_>>()?,
        envp: env.iter().map(|e| c(e)).collect::<Result<_>>()?,
    })
}

impl Prepared {
    /// execve; returns only on failure.
    pub fn exec(&self) -> Error {
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.envp.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: NULL-terminated arrays of valid C strings that outlive the call.
        unsafe { libc::execve(self.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        Error::failed(
            Stage::Exec,
            format!(
                "exec {}: {}",
                self.path.to_string_lossy(),
                errno_text(&std::io::Error::last_os_error())
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_texts_are_worded_as_runc_words_them() {
        let enoent = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(errno_text(&enoent), "no such file or directory");
        let eacces = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(errno_text(&eacces), "permission denied");
    }

    #[test]
    fn a_missing_program_is_reported_as_runc_reports_it() {
        let e = find_program("/no/such/prog", &[]).expect_err("missing");
        assert!(
            e.to_string().contains(
                r#"exec: "/no/such/prog": stat /no/such/prog: no such file or directory"#
            ),
            "{e}"
        );
        let e = find_program("/", &[]).expect_err("a directory");
        assert!(
            e.to_string().contains(r#"exec: "/": is a directory"#),
            "{e}"
        );
    }
}
