//! The CRI RuntimeService: each call checked, then handed to the sandbox and container code.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tokio_stream::{wrappers::BroadcastStream, Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::container::{self, stats};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::images::blocking;
use crate::sandbox::RUNTIME_HANDLER;
use crate::state::{ContainerRecord, ContainerState, SandboxRecord, SandboxState};
use crate::streaming::session::{self, Wants};
use crate::streaming::{portforward, StreamRequest, Streaming};

pub const RUNTIME_NAME: &str = "kos";
pub const CRI_API_VERSION: &str = "v1";

#[derive(Clone)]
pub struct Runtime {
    pub core: Arc<Core>,
    pub streaming: Arc<Streaming>,
}

type R<T> = std::result::Result<Response<T>, Status>;

fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A container filter's common part: id and pod id prefixes and a label selector.
fn container_selected(
    c: &ContainerRecord,
    id: &str,
    pod_sandbox_id: &str,
    label_selector: &HashMap<String, String>,
) -> bool {
    (id.is_empty() || c.id.starts_with(id))
        && (pod_sandbox_id.is_empty() || c.sandbox_id.starts_with(pod_sandbox_id))
        && labels_match(label_selector, &c.config.labels)
}

/// A pod filter's common part: an id prefix and a label selector.
fn sandbox_selected(s: &SandboxRecord, id: &str, label_selector: &HashMap<String, String>) -> bool {
    (id.is_empty() || s.id.starts_with(id)) && labels_match(label_selector, &s.config.labels)
}

/// The `info` map of a verbose status answer: one JSON document under `key`, built only
/// when asked for.
fn verbose_info(
    verbose: bool,
    key: &str,
    doc: impl FnOnce() -> serde_json::Value,
) -> HashMap<String, String> {
    let mut info = HashMap::new();
    if verbose {
        info.insert(key.to_string(), doc().to_string());
    }
    info
}

impl Runtime {
    /// A snapshot of the containers `keep` selects; the state lock is not held after.
    fn containers(&self, keep: impl Fn(&ContainerRecord) -> bool) -> Vec<ContainerRecord> {
        let inner = self.core.inner();
        inner
            .containers
            .values()
            .filter(|c| keep(c))
            .cloned()
            .collect()
    }

    /// A snapshot of the pods `keep` selects; the state lock is not held after.
    fn sandboxes(&self, keep: impl Fn(&SandboxRecord) -> bool) -> Vec<SandboxRecord> {
        let inner = self.core.inner();
        inner
            .sandboxes
            .values()
            .filter(|s| keep(s))
            .cloned()
            .collect()
    }

    fn sandbox_container_ids(&self, sandbox_id: &str) -> Vec<String> {
        self.containers(|c| c.sandbox_id == sandbox_id)
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    /// Picks up where a previous server left: watches containers that were running.
    pub fn recover(&self) {
        for c in self.containers(|c| c.state == ContainerState::Running) {
            self.core.keep_stdin_open(&c.id, &c.config, &c.bundle);
            container::watch(self.core.clone(), c);
        }
    }

    async fn stop_sandbox(&self, id: &str) -> Result<()> {
        let sb = self.core.sandbox(id)?;
        for c in self.sandbox_container_ids(&sb.id) {
            self.core.stop_container(&c, 0).await?;
        }
        let core = self.core.clone();
        let sid = sb.id.clone();
        blocking(move || {
            let mut rec = core.sandbox(&sid)?;
            core.release_sandbox_network(&mut rec)?;
            rec.state = SandboxState::NotReady;
            core.save_sandbox(rec)
        })
        .await
    }

    async fn container_stats(&self, rec: &ContainerRecord) -> Result<cri::ContainerStats> {
        let attributes = Some(cri::ContainerAttributes {
            id: rec.id.clone(),
            metadata: rec.config.metadata.clone(),
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
        });
        let mut out = cri::ContainerStats {
            attributes,
            ..Default::default()
        };
        if rec.state == ContainerState::Running {
            let shim = self.core.shim(rec).await?;
            let m = shim
                .stats(&rec.id)
                .await
                .map_err(|e| Error::shim("container stats", e))?;
            let f = stats::decode(&m)?;
            out.cpu = Some(stats::cpu(&f));
            out.memory = Some(stats::memory(&f));
        }
        let upper = rec.bundle.join("upper");
        let (bytes, inodes) = blocking(move || Ok(crate::images::usage(&upper))).await?;
        out.writable_layer = Some(cri::FilesystemUsage {
            timestamp: crate::core::now_nanos(),
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: rec.bundle.join("upper").to_string_lossy().into_owned(),
            }),
            used_bytes: Some(cri::UInt64Value { value: bytes }),
            inodes_used: Some(cri::UInt64Value { value: inodes }),
        });
        Ok(out)
    }

    /// Each container's stats in turn, stopping at the first error.
    async fn containers_stats(&self, recs: &[ContainerRecord]) -> Result<Vec<cri::ContainerStats>> {
        let mut out = Vec::with_capacity(recs.len());
        for r in recs {
            out.push(self.container_stats(r).await?);
        }
        Ok(out)
    }

    async fn sandbox_stats(&self, sb: &SandboxRecord) -> Result<cri::PodSandboxStats> {
        let recs = self.containers(|c| c.sandbox_id == sb.id);
        let containers = self.containers_stats(&recs).await?;
        let mut total = stats::Figures::default();
        for s in &containers {
            if let Some(c) = &s.cpu {
                total.cpu_ns += c
                    .usage_core_nano_seconds
                    .as_ref()
                    .map(|v| v.value)
                    .unwrap_or(0);
            }
            if let Some(m) = &s.memory {
                let g = |x: &Option<cri::UInt64Value>| x.as_ref().map(|v| v.value).unwrap_or(0);
                total.usage += g(&m.usage_bytes);
                total.working_set += g(&m.working_set_bytes);
                total.rss += g(&m.rss_bytes);
                total.faults += g(&m.page_faults);
                total.major_faults += g(&m.major_page_faults);
            }
        }
        let network = match (&sb.netns, sb.state) {
            (Some(ns), SandboxState::Ready) => {
                let ns = ns.clone();
                let ifaces = blocking(move || crate::sandbox::netstats::read(&ns)).await?;
                Some(network_usage(ifaces))
            }
            // A host-network pod's traffic is the node's, not the pod's.
            _ => None,
        };
        Ok(cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: sb.id.clone(),
                metadata: sb.config.metadata.clone(),
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(stats::cpu(&total)),
                memory: Some(stats::memory(&total)),
                network,
                process: Some(cri::ProcessUsage {
                    timestamp: crate::core::now_nanos(),
                    process_count: None,
                }),
                containers,
            }),
            windows: None,
        })
    }
}

/// The pod's interfaces as CRI reports them; eth0 (or the first) is the default one.
fn network_usage(ifaces: Vec<crate::sandbox::netstats::Counters>) -> cri::NetworkUsage {
    let now = crate::core::now_nanos();
    let v = |x: u64| Some(cri::UInt64Value { value: x });
    let interfaces: Vec<cri::NetworkInterfaceUsage> = ifaces
        .into_iter()
        .map(|c| cri::NetworkInterfaceUsage {
            name: c.name,
            rx_bytes: v(c.rx_bytes),
            rx_errors: v(c.rx_errors),
            tx_bytes: v(c.tx_bytes),
            tx_errors: v(c.tx_errors),
        })
        .collect();
    // The default one is also in the list of all, as kubelet's summary expects.
    let default = interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .or(interfaces.first())
        .cloned();
    cri::NetworkUsage {
        timestamp: now,
        default_interface: default,
        interfaces,
    }
}

fn sandbox_brief(s: &SandboxRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: s.id.clone(),
        metadata: s.config.metadata.clone(),
        state: crate::sandbox::state_value(s.state) as i32,
        created_at: s.created_at,
        labels: s.config.labels.clone(),
        annotations: s.config.annotations.clone(),
        runtime_handler: RUNTIME_HANDLER.into(),
    }
}

#[tonic::async_trait]
impl cri::runtime_service_server::RuntimeService for Runtime {
    async fn version(&self, _r: Request<cri::VersionRequest>) -> R<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: CRI_API_VERSION.into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> R<cri::RunPodSandboxResponse> {
        let r = r.into_inner();
        let config = r
            .config
            .ok_or_else(|| Error::InvalidArgument("pod sandbox config is missing".into()))?;
        let core = self.core.clone();
        let handler = r.runtime_handler;
        let id = blocking(move || core.run_sandbox(config, &handler)).await?;
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<cri::StopPodSandboxRequest>,
    ) -> R<cri::StopPodSandboxResponse> {
        self.stop_sandbox(&r.into_inner().pod_sandbox_id).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<cri::RemovePodSandboxRequest>,
    ) -> R<cri::RemovePodSandboxResponse> {
        let id = r.into_inner().pod_sandbox_id;
        let sb = match self.core.sandbox(&id) {
            Ok(s) => s,
            Err(Error::NotFound(_)) => return Ok(Response::new(cri::RemovePodSandboxResponse {})),
            Err(e) => return Err(e.into()),
        };
        if sb.state == SandboxState::Ready {
            self.stop_sandbox(&sb.id).await?;
        }
        for c in self.sandbox_container_ids(&sb.id) {
            self.core.remove_container(&c).await?;
        }
        let core = self.core.clone();
        blocking(move || {
            let rec = core.sandbox(&sb.id)?;
            core.destroy_sandbox(&rec)?;
            core.forget_sandbox(&rec.id)
        })
        .await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> R<cri::PodSandboxStatusResponse> {
        let r = r.into_inner();
        let sb = self.core.sandbox(&r.pod_sandbox_id)?;
        let status = self.core.sandbox_status(&sb);
        let containers_statuses = self
            .containers(|c| c.sandbox_id == sb.id)
            .iter()
            .map(container::status)
            .collect();
        let info = verbose_info(r.verbose, "info", || {
            serde_json::json!({
                    "dir": sb.dir,
                    "netns": sb.netns,
                    "ipcns": sb.ipcns,
                    "utsns": sb.utsns,
                    "userns": sb.userns,
                    "pidHolder": sb.holder.map(|h| h.0),
                    "cniNetwork": sb.cni_network,
                    "cgroupParent": sb.cgroup_parent,
                    "runtimeHandler": RUNTIME_HANDLER,
                    "config": sb.config,
            })
        });
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(status),
            info,
            containers_statuses,
            timestamp: crate::core::now_nanos(),
        }))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<cri::ListPodSandboxRequest>,
    ) -> R<cri::ListPodSandboxResponse> {
        let f = r.into_inner().filter.unwrap_or_default();
        let items = self
            .sandboxes(|s| sandbox_selected(s, &f.id, &f.label_selector))
            .iter()
            .map(sandbox_brief)
            .filter(|s| f.state.as_ref().is_none_or(|st| st.state == s.state))
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        r: Request<cri::CreateContainerRequest>,
    ) -> R<cri::CreateContainerResponse> {
        let r = r.into_inner();
        let config = r
            .config
            .ok_or_else(|| Error::InvalidArgument("container config is missing".into()))?;
        let id = self
            .core
            .create_container(&r.pod_sandbox_id, config)
            .await?;
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        r: Request<cri::StartContainerRequest>,
    ) -> R<cri::StartContainerResponse> {
        self.core
            .start_container(&r.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        r: Request<cri::StopContainerRequest>,
    ) -> R<cri::StopContainerResponse> {
        let r = r.into_inner();
        self.core.stop_container(&r.container_id, r.timeout).await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<cri::RemoveContainerRequest>,
    ) -> R<cri::RemoveContainerResponse> {
        self.core
            .remove_container(&r.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        r: Request<cri::ListContainersRequest>,
    ) -> R<cri::ListContainersResponse> {
        let f = r.into_inner().filter.unwrap_or_default();
        let containers = self
            .containers(|c| {
                container_selected(c, &f.id, &f.pod_sandbox_id, &f.label_selector)
                    && f.state
                        .as_ref()
                        .is_none_or(|s| s.state == container::state_value(c.state) as i32)
            })
            .into_iter()
            .map(|c| cri::Container {
                state: container::state_value(c.state) as i32,
                created_at: c.created_at,
                image_ref: c.image_id.clone(),
                id: c.id,
                pod_sandbox_id: c.sandbox_id,
                metadata: c.config.metadata,
                image: c.config.image,
                image_id: c.image_id,
                labels: c.config.labels,
                annotations: c.config.annotations,
            })
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> R<cri::ContainerStatusResponse> {
        let r = r.into_inner();
        let rec = self.core.container(&r.container_id)?;
        let info = verbose_info(r.verbose, "info", || {
            serde_json::json!({
                    "sandboxID": rec.sandbox_id,
                    "pid": rec.pid,
                    "bundle": rec.bundle,
                    "shim": rec.shim_address,
                    "cgroupsPath": rec.cgroups_path,
                    "imageName": rec.image_name,
            })
        });
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(container::status(&rec)),
            info,
        }))
    }

    async fn update_container_resources(
        &self,
        r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> R<cri::UpdateContainerResourcesResponse> {
        let r = r.into_inner();
        let rec = self.core.container(&r.container_id)?;
        let Some(res) = r.linux else {
            return Ok(Response::new(cri::UpdateContainerResourcesResponse {}));
        };
        if rec.state == ContainerState::Running || rec.state == ContainerState::Created {
            let shim = self.core.shim(&rec).await?;
            shim.update(&rec.id, &container::spec::oci_resources(&res))
                .await
                .map_err(|e| Error::shim("updating resources", e))?;
        }
        self.core.update_container(&rec.id, |c| {
            let l = c.config.linux.get_or_insert_with(Default::default);
            l.resources = Some(res);
        })?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        r: Request<cri::ReopenContainerLogRequest>,
    ) -> R<cri::ReopenContainerLogResponse> {
        let rec = self.core.container(&r.into_inner().container_id)?;
        if rec.state != ContainerState::Running {
            return Err(
                Error::FailedPrecondition(format!("container {} is not running", rec.id)).into(),
            );
        }
        // The shim writes the log itself: it opens a new file at the log path (kubelet
        // renamed the old one) and answers once that file exists.
        let shim = self.core.shim(&rec).await?;
        shim.reopen_log(&rec.id)
            .await
            .map_err(|e| Error::shim(format!("reopening the log of {}", rec.id), e))?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, r: Request<cri::ExecSyncRequest>) -> R<cri::ExecSyncResponse> {
        let r = r.into_inner();
        let resp = self
            .core
            .exec_sync(&r.container_id, r.cmd, r.timeout)
            .await?;
        Ok(Response::new(resp))
    }

    async fn exec(&self, r: Request<cri::ExecRequest>) -> R<cri::ExecResponse> {
        let r = r.into_inner();
        session::check(&self.core, &r.container_id, Wants::of_exec(&r))?;
        if r.cmd.is_empty() {
            return Err(Error::InvalidArgument("exec command is empty".into()).into());
        }
        if r.tty && r.stderr {
            return Err(Error::InvalidArgument("tty and stderr cannot both be true".into()).into());
        }
        let url = self.streaming.url_for(StreamRequest::Exec(r))?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, r: Request<cri::AttachRequest>) -> R<cri::AttachResponse> {
        let r = r.into_inner();
        let w = Wants::of_attach(&r);
        let rec = session::check(&self.core, &r.container_id, w)?;
        session::check_attach(&rec, w)?;
        let url = self.streaming.url_for(StreamRequest::Attach(r))?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        r: Request<cri::PortForwardRequest>,
    ) -> R<cri::PortForwardResponse> {
        let r = r.into_inner();
        portforward::pod_netns(&self.core, &r.pod_sandbox_id)?;
        if let Some(p) = r.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(Error::InvalidArgument(format!("invalid port {p}")).into());
        }
        let url = self.streaming.url_for(StreamRequest::PortForward(r))?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        r: Request<cri::ContainerStatsRequest>,
    ) -> R<cri::ContainerStatsResponse> {
        let rec = self.core.container(&r.into_inner().container_id)?;
        let stats = self.container_stats(&rec).await?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_container_stats(
        &self,
        r: Request<cri::ListContainerStatsRequest>,
    ) -> R<cri::ListContainerStatsResponse> {
        let f = r.into_inner().filter.unwrap_or_default();
        let recs =
            self.containers(|c| container_selected(c, &f.id, &f.pod_sandbox_id, &f.label_selector));
        let stats = self.containers_stats(&recs).await?;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        r: Request<cri::PodSandboxStatsRequest>,
    ) -> R<cri::PodSandboxStatsResponse> {
        let sb = self.core.sandbox(&r.into_inner().pod_sandbox_id)?;
        let stats = self.sandbox_stats(&sb).await?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> R<cri::ListPodSandboxStatsResponse> {
        let f = r.into_inner().filter.unwrap_or_default();
        let sbs = self.sandboxes(|s| sandbox_selected(s, &f.id, &f.label_selector));
        let mut stats = Vec::with_capacity(sbs.len());
        for s in &sbs {
            stats.push(self.sandbox_stats(s).await?);
        }
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        r: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> R<cri::UpdateRuntimeConfigResponse> {
        // kubelet sends the pod CIDR here; CNI plugins own addressing, so it is only logged.
        if let Some(cidr) = r
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
        {
            tracing::info!(pod_cidr = %cidr, "runtime config update");
        }
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, r: Request<cri::StatusRequest>) -> R<cri::StatusResponse> {
        let net = self.core.network.ready();
        let info = verbose_info(r.into_inner().verbose, "config", || {
            serde_json::json!({
                    "cniConfDir": self.core.config.cni_conf_dir,
                    "cniBinDirs": self.core.config.cni_bin_dirs,
                    "runtime": self.core.config.runtime_binary,
                    "registryConfigDir": self.core.config.registry_config_dir,
            })
        });
        let handler = |name: &str| cri::RuntimeHandler {
            name: name.into(),
            features: Some(cri::RuntimeHandlerFeatures {
                recursive_read_only_mounts: false,
                user_namespaces: false,
            }),
        };
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![
                    cri::RuntimeCondition {
                        r#type: "RuntimeReady".into(),
                        status: true,
                        reason: String::new(),
                        message: String::new(),
                    },
                    cri::RuntimeCondition {
                        r#type: "NetworkReady".into(),
                        status: net.is_ok(),
                        reason: if net.is_ok() {
                            String::new()
                        } else {
                            "NetworkPluginNotReady".into()
                        },
                        message: net.err().unwrap_or_default(),
                    },
                ],
            }),
            info,
            runtime_handlers: vec![handler(""), handler(RUNTIME_HANDLER)],
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: false,
            }),
        }))
    }

    async fn checkpoint_container(
        &self,
        r: Request<cri::CheckpointContainerRequest>,
    ) -> R<cri::CheckpointContainerResponse> {
        let rec = self.core.container(&r.into_inner().container_id)?;
        Err(Error::Unimplemented(format!(
            "checkpointing container {} is not supported by the kos runtime (CRIU cannot restore pinned pod namespaces here)",
            rec.id
        ))
        .into())
    }

    type GetContainerEventsStream = Pin<
        Box<dyn Stream<Item = std::result::Result<cri::ContainerEventResponse, Status>> + Send>,
    >;

    async fn get_container_events(
        &self,
        _r: Request<cri::GetEventsRequest>,
    ) -> R<Self::GetContainerEventsStream> {
        let rx = self.core.events.subscribe();
        // A subscriber that falls behind skips what it missed rather than ending.
        let s = BroadcastStream::new(rx).filter_map(|e| e.ok().map(Ok));
        Ok(Response::new(Box::pin(s)))
    }

    async fn list_metric_descriptors(
        &self,
        _r: Request<cri::ListMetricDescriptorsRequest>,
    ) -> R<cri::ListMetricDescriptorsResponse> {
        // No CRI-side metrics are exported; kubelet then keeps using the stats calls.
        Ok(Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: vec![],
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> R<cri::ListPodSandboxMetricsResponse> {
        Ok(Response::new(cri::ListPodSandboxMetricsResponse {
            pod_metrics: vec![],
        }))
    }

    async fn runtime_config(
        &self,
        _r: Request<cri::RuntimeConfigRequest>,
    ) -> R<cri::RuntimeConfigResponse> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}
