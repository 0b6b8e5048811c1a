//! A hijacked attach/exec connection wired to our stdio: the multiplexed
//! stream split into stdout and stderr (or raw bytes with a tty), stdin
//! copied in and half-closed at its end, and docker's detach keys.

use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::client::Stream;

/// Copies a multiplexed stream (8-byte frame headers) to `out` and `err`.
pub fn demux(mut r: impl Read, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<()> {
    let mut head = [0u8; 8];
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut got = 0;
        while got < 8 {
            let n = r.read(&mut head[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(());
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a frame header",
                ));
            }
            got += n;
        }
        let mut left = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let dst: &mut dyn Write = match head[0] {
            0 | 1 => out,
            2 => err,
            3 => {
                // The daemon's own error for this stream.
                let mut msg = vec![0u8; left.min(64 * 1024)];
                r.read_exact(&mut msg)?;
                return Err(io::Error::other(String::from_utf8_lossy(&msg).into_owned()));
            }
            _ => {
                // Not a frame: a daemon that wrote text (an error) unframed. Show
                // it rather than a header complaint, and stop.
                err.write_all(&head)?;
                let mut rest = Vec::new();
                r.take(64 * 1024).read_to_end(&mut rest)?;
                err.write_all(&rest)?;
                err.flush()?;
                return Ok(());
            }
        };
        while left > 0 {
            let n = r.read(&mut buf[..left.min(32 * 1024)])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a frame",
                ));
            }
            dst.write_all(&buf[..n])?;
            left -= n;
        }
        dst.flush()?;
    }
}

/// Docker's `--detach-keys` syntax: `ctrl-p,ctrl-q`, letters, `ctrl-@`...
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for k in s.split(',') {
        let k = k.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b'@'] => 0,
                [x @ b'a'..=b'z'] => x - b'a' + 1,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(format!("Unknown character: '{k}'")),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(format!("Unknown character: '{k}'"));
        }
    }
    Ok(out)
}

pub struct Attach {
    pub tty: bool,
    pub stdin: bool,
    /// Detach key sequence (only honoured with a tty, as docker).
    pub detach_keys: Vec<u8>,
}

/// Outcome of pumping: the output ended, or the user detached.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Eof,
    Detached,
}

/// Pumps until the daemon closes the output side (or the user detaches).
pub fn pump(reader: BufReader<Stream>, mut writer: Stream, a: &Attach) -> io::Result<Ended> {
    let detached = Arc::new(AtomicBool::new(false));
    if a.stdin {
        let keys = if a.tty {
            a.detach_keys.clone()
        } else {
            Vec::new()
        };
        let det = detached.clone();
        let shut = writer.try_clone()?;
        std::thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = [0u8; 32 * 1024];
            let mut matched = 0usize;
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if !keys.is_empty() {
                    // Bytes of a partial key sequence are held back until it is
                    // complete (detach) or broken (sent on).
                    let mut out = Vec::with_capacity(n);
                    for &b in &buf[..n] {
                        if b == keys[matched] {
                            matched += 1;
                            if matched == keys.len() {
                                det.store(true, Ordering::SeqCst);
                                // The keys go on as well: a daemon that handles
                                // detachKeys itself detaches without closing stdin.
                                let _ = writer.write_all(&out);
                                let _ = writer.write_all(&keys);
                                let _ = shut.shutdown_write();
                                let _ = shut.shutdown_both();
                                return;
                            }
                        } else {
                            out.extend_from_slice(&keys[..matched]);
                            matched = 0;
                            if b == keys[0] {
                                matched = 1;
                            } else {
                                out.push(b);
                            }
                        }
                    }
                    if writer.write_all(&out).is_err() {
                        return;
                    }
                } else if writer.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            // End of our input: the container's stdin sees EOF, output keeps flowing.
            let _ = writer.shutdown_write();
        });
    }
    let stdout = io::stdout();
    let stderr = io::stderr();
    let r = if a.tty {
        let mut out = stdout.lock();
        let mut rd = reader;
        let mut buf = [0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if let Err(e) = out.write_all(&buf[..n]).and_then(|_| out.flush()) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e),
            }
        }
    } else {
        demux(reader, &mut stdout.lock(), &mut stderr.lock())
    };
    if detached.load(Ordering::SeqCst) {
        return Ok(Ended::Detached);
    }
    r.map(|_| Ended::Eof)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn demux_frames() {
        let mut data = Vec::new();
        for (s, p) in [(1u8, &b"out1 "[..]), (2, b"err"), (1, b"out2")] {
            data.extend_from_slice(&[s, 0, 0, 0]);
            data.extend_from_slice(&(p.len() as u32).to_be_bytes());
            data.extend_from_slice(p);
        }
        let (mut o, mut e) = (Vec::new(), Vec::new());
        demux(&data[..], &mut o, &mut e).unwrap();
        assert_eq!(
            (o.as_slice(), e.as_slice()),
            (&b"out1 out2"[..], &b"err"[..])
        );
        let (mut o, mut e) = (Vec::new(), Vec::new());
        assert!(demux(&data[..5], &mut o, &mut e).is_err());
        let (mut o, mut e) = (Vec::new(), Vec::new());
        demux(&b"start: exec failed\n"[..], &mut o, &mut e).unwrap();
        assert_eq!(
            (o.as_slice(), e.as_slice()),
            (&b""[..], &b"start: exec failed\n"[..])
        );
    }

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("a,ctrl-@").unwrap(), vec![b'a', 0]);
        assert!(parse_detach_keys("ctrl-pq").is_err());
    }
}
