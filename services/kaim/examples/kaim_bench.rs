//! kaim's per-call overhead, measured by bench/kaim.sh.
//!
//! `kaim_bench serve SOCKET`: a minimal Docker-API-shaped upstream (hyper), answering
//! `/_ping` and `/containers/json` (any version prefix) so the measurement is of kaim, not of
//! an engine.
//! `kaim_bench measure DIRECT KAIM N`: N calls of each path on a fresh connection each (as a
//! CLI makes them), alternating direct and through kaim so drift hits both alike; prints the
//! medians and kaim's overhead, and exits 1 when the median overhead is 1 ms or more.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const LIST: &str = r#"[{"Id":"8dfafdbc3a40","Names":["/boring_feynman"],"Image":"registry.local/ci/build:1","Command":"sleep 1000","Created":1700000000,"State":"running","Status":"Up 2 minutes","Labels":{}}]"#;

fn serve(path: &str) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::{Response, StatusCode};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let _ = std::fs::remove_file(path);
        let l = tokio::net::UnixListener::bind(path)?;
        loop {
            let (s, _) = l.accept().await?;
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let p = req.uri().path();
                        let (status, body) = if p.ends_with("/_ping") {
                            (StatusCode::OK, "OK")
                        } else if p.ends_with("/containers/json") {
                            (StatusCode::OK, LIST)
                        } else {
                            (StatusCode::NOT_FOUND, "{\"message\":\"not found\"}")
                        };
                        let mut r =
                            Response::new(Full::new(bytes::Bytes::from_static(body.as_bytes())));
                        *r.status_mut() = status;
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    })
}

fn call(socket: &str, path: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut s = UnixStream::connect(socket)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: kaim-bench\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::with_capacity(1024);
    s.read_to_end(&mut buf)?;
    let took = t.elapsed();
    if !buf.starts_with(b"HTTP/1.1 200") {
        anyhow::bail!("{path} via {socket}: {}", String::from_utf8_lossy(&buf));
    }
    Ok(took)
}

fn median_us(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn p90_us(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() * 9 / 10].as_secs_f64() * 1e6
}

fn measure(direct: &str, kaim: &str, n: usize) -> anyhow::Result<bool> {
    let mut ok = true;
    for path in ["/_ping", "/v1.47/containers/json"] {
        for _ in 0..50 {
            call(direct, path)?;
            call(kaim, path)?;
        }
        let (mut d, mut k) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            d.push(call(direct, path)?);
            k.push(call(kaim, path)?);
        }
        let (dm, km) = (median_us(&mut d), median_us(&mut k));
        let over = km - dm;
        println!(
            "{path:<24} direct median {dm:7.1} us (p90 {:7.1}), via kaim {km:7.1} us (p90 {:7.1}); overhead {over:7.1} us (target < 1000)",
            p90_us(&mut d),
            p90_us(&mut k)
        );
        ok &= over < 1000.0;
    }
    Ok(ok)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") if args.len() == 3 => serve(&args[2]),
        Some("measure") if args.len() == 5 => {
            if measure(&args[2], &args[3], args[4].parse()?)? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        _ => anyhow::bail!("usage: kaim_bench serve SOCKET | measure DIRECT KAIM N"),
    }
}
