//! The CRI client of bench/cri.sh: the same calls against any CRI server.
//!
//! cri-bench --socket PATH --image REF --pods N --runs R [--sandbox-image REF]
//!           [--mem PATTERN]...
//!
//! Per run: N pods in a row, each RunPodSandbox + CreateContainer + StartContainer (the
//! container running), then each pod StopPodSandbox + RemovePodSandbox. Prints the median
//! per-pod time of both halves and of the whole run; with --mem, the summed RSS and PSS of
//! processes whose command line holds a PATTERN while all N pods run (last run).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tokio::net::UnixStream;
use tonic::transport::{Endpoint, Uri};
use tower::service_fn;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn memory(patterns: &[String]) -> (u64, u64, usize) {
    let (mut rss, mut pss, mut n) = (0, 0, 0);
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(c) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let c = String::from_utf8_lossy(&c).replace('\0', " ");
        if !patterns.iter().any(|p| c.contains(p.as_str())) {
            continue;
        }
        if let Ok(s) = std::fs::read_to_string(e.path().join("smaps_rollup")) {
            n += 1;
            for l in s.lines() {
                let kb = |l: &str| -> u64 {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(0)
                };
                if l.starts_with("Rss:") {
                    rss += kb(l);
                } else if l.starts_with("Pss:") {
                    pss += kb(l);
                }
            }
        }
    }
    (rss, pss, n)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut socket, mut image, mut sandbox_image) = (None, None, None);
    let (mut pods, mut runs) = (1usize, 5usize);
    let mut mem = Vec::new();
    while let Some(f) = args.next() {
        let v = args.next().with_context(|| format!("{f} needs a value"))?;
        match f.as_str() {
            "--socket" => socket = Some(PathBuf::from(v)),
            "--image" => image = Some(v),
            "--sandbox-image" => sandbox_image = Some(v),
            "--pods" => pods = v.parse()?,
            "--runs" => runs = v.parse()?,
            "--mem" => mem.push(v),
            _ => bail!("unknown flag {f}"),
        }
    }
    let socket = socket.context("--socket")?;
    let image = image.context("--image")?;
    let ch = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(service_fn(move |_: Uri| {
            let p = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
        }))
        .await?;
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let mut img = ImageServiceClient::new(ch);
    for i in std::iter::once(&image).chain(sandbox_image.iter()) {
        img.pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: i.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .with_context(|| format!("pulling {i}"))?;
    }
    let (mut up, mut down, mut whole) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_mem = (0, 0, 0);
    for run in 0..runs {
        let t_run = Instant::now();
        let mut ids = Vec::new();
        for p in 0..pods {
            let t = Instant::now();
            let cfg = PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: format!("bench-{p}"),
                    uid: format!("bench-{}-{run}-{p}", std::process::id()),
                    namespace: "bench".into(),
                    attempt: 0,
                }),
                linux: Some(LinuxPodSandboxConfig {
                    security_context: Some(LinuxSandboxSecurityContext {
                        namespace_options: Some(NamespaceOption {
                            network: NamespaceMode::Node as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let sb = rt
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(cfg.clone()),
                    runtime_handler: String::new(),
                })
                .await?
                .into_inner()
                .pod_sandbox_id;
            let c = rt
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: sb.clone(),
                    config: Some(ContainerConfig {
                        metadata: Some(ContainerMetadata {
                            name: "c".into(),
                            attempt: 0,
                        }),
                        image: Some(ImageSpec {
                            image: image.clone(),
                            ..Default::default()
                        }),
                        command: vec!["sleep".into(), "3600".into()],
                        ..Default::default()
                    }),
                    sandbox_config: Some(cfg),
                })
                .await?
                .into_inner()
                .container_id;
            rt.start_container(StartContainerRequest {
                container_id: c.clone(),
            })
            .await?;
            let st = rt
                .container_status(ContainerStatusRequest {
                    container_id: c,
                    verbose: false,
                })
                .await?
                .into_inner()
                .status
                .context("status")?;
            if st.state != ContainerState::ContainerRunning as i32 {
                bail!("container not running after start");
            }
            up.push(t.elapsed());
            ids.push(sb);
        }
        if run + 1 == runs && !mem.is_empty() {
            last_mem = memory(&mem);
        }
        for sb in ids {
            let t = Instant::now();
            rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sb.clone(),
            })
            .await?;
            rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sb })
                .await?;
            down.push(t.elapsed());
        }
        whole.push(t_run.elapsed());
    }
    println!(
        "pods={pods} runs={runs} up_median_ms={:.1} down_median_ms={:.1} run_median_ms={:.1}",
        median(&mut up).as_secs_f64() * 1e3,
        median(&mut down).as_secs_f64() * 1e3,
        median(&mut whole).as_secs_f64() * 1e3
    );
    if !mem.is_empty() {
        println!(
            "memory with {pods} pods: processes={} rss_kib={} pss_kib={}",
            last_mem.2, last_mem.0, last_mem.1
        );
    }
    Ok(())
}
