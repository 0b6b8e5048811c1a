//! `kos-init`: the init of `docker run --init`. As pid 1 of the container it
//! starts the program (`kos-init [--] PROGRAM [ARGS...]`, looked up in PATH),
//! forwards every signal it receives to it, reaps every process that ends up
//! as its child (orphans are re-parented to pid 1), and exits with the
//! program's status (128+N when a signal N ended it).
//!
//! kosd embeds a statically linked build of this file (see build.rs) and
//! bind-mounts it into containers, whose images may have no C library; so it
//! uses only std and a few libc functions declared here, no crates.

use std::os::raw::c_int;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// glibc's `sigset_t` on Linux: 1024 bits.
#[repr(C)]
struct SigSet([u64; 16]);

extern "C" {
    fn sigfillset(set: *mut SigSet) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwait(set: *const SigSet, sig: *mut c_int) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
}

const SIG_SETMASK: c_int = 2;
const WNOHANG: c_int = 1;
const SIGCHLD: c_int = 17;

/// The shell's convention for a wait status: the exit code, or 128+signal.
fn exit_code(status: c_int) -> i32 {
    let sig = status & 0x7f;
    if sig == 0 {
        (status >> 8) & 0xff
    } else {
        128 + sig
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("kos-init: no program given (usage: kos-init [--] PROGRAM [ARGS...])");
        std::process::exit(2);
    }
    // Every signal stays pending for sigwait; the program gets an empty mask back.
    let mut all = SigSet([0; 16]);
    // SAFETY: valid pointers to a sigset_t-sized buffer.
    unsafe {
        sigfillset(&mut all);
        sigprocmask(SIG_SETMASK, &all, std::ptr::null_mut());
    }
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    // SAFETY: sigprocmask is async-signal-safe; the set is a local, fully initialised.
    unsafe {
        cmd.pre_exec(|| {
            let none = SigSet([0; 16]);
            if sigprocmask(SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c.id() as c_int,
        Err(e) => {
            eprintln!("kos-init: starting {}: {e}", args[0]);
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            };
            std::process::exit(code);
        }
    };
    loop {
        let mut sig: c_int = 0;
        // SAFETY: valid pointers.
        if unsafe { sigwait(&all, &mut sig) } != 0 {
            continue;
        }
        if sig != SIGCHLD {
            // SAFETY: plain kill(2) of our own child.
            unsafe { kill(child, sig) };
            continue;
        }
        loop {
            let mut status: c_int = 0;
            // SAFETY: valid pointer.
            let pid = unsafe { waitpid(-1, &mut status, WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                std::process::exit(exit_code(status));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::exit_code;

    #[test]
    fn wait_status_to_exit_code() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(15), 143);
        assert_eq!(exit_code(9 | 0x80), 137);
    }
}
