//! The configuration files of the node's parts, as text (pure functions).
//!
//! Every path is under the node's own directory: nothing is written to `/etc`, `/var/lib` or
//! `/run` but the network namespace's file (see [`super::network`]).

use std::path::Path;

use serde_json::json;

use super::dns::CLUSTER_DOMAIN;
use super::network::{HOST_IP, NODE_IP, POD_CIDR, POD_GATEWAY};

/// The Pod sandbox image, imported before containerd needs it (no registry is reachable).
pub const PAUSE_IMAGE: &str = "hostrouter.local/pause:1";
/// The bridge the Pods hang on, inside the node's namespace.
pub const BRIDGE: &str = "hrlab0";

/// containerd's configuration (version 3): its own root, state and socket; the CRI plugin with
/// runc, the CNI bridge, the pinned sandbox image, and what this machine does not allow
/// (lowering `oom_score_adj` needs CAP_SYS_RESOURCE).
pub fn containerd(dir: &Path, runc: &Path, cni_bin_dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 3
root = "{d}/containerd/root"
state = "{d}/containerd/state"

[grpc]
  address = "{d}/containerd/containerd.sock"

[ttrpc]
  address = "{d}/containerd/containerd.sock.ttrpc"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "native"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni}"]
    conf_dir = "{d}/cni/net.d"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
"#,
        runc = runc.display(),
        cni = cni_bin_dir.display(),
    )
}

/// The CNI network: a bridge with the Pods' subnet, the bridge as their gateway (this machine
/// routes the subnet into the namespace, so no masquerading), and port mappings.
pub fn cni(dir: &Path) -> String {
    let ipam_dir = dir.join("cni/ipam");
    serde_json::to_string_pretty(&json!({
        "cniVersion": "1.0.0",
        "name": "hostrouter-lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY.to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    }))
    .unwrap_or_default()
}

/// The kubelet's configuration: cgroup v1 with cgroupfs and no per-QoS cgroups (this
/// machine's cgroups), its ports on the node's address and loopback only, no eviction by disk
/// or memory pressure (a test machine's disk is what it is), no DNS for Pods (none runs).
pub fn kubelet(dir: &Path, pod_logs: &Path) -> String {
    let d = dir.display();
    let pod_logs = pod_logs.display();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{d}/containerd/containerd.sock
imageServiceEndpoint: unix://{d}/containerd/containerd.sock
podLogsDir: {pod_logs}
resolvConf: ""
clusterDomain: {CLUSTER_DOMAIN}
clusterDNS: [{HOST_IP}]
maxPods: 12
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
localStorageCapacityIsolation: false
protectKernelDefaults: false
shutdownGracePeriod: 0s
nodeStatusUpdateFrequency: 2s
syncFrequency: 5s
fileCheckFrequency: 5s
"#
    )
}

/// kube-proxy's configuration: iptables mode, in the node's namespace; every Service packet
/// masqueraded, so that a Pod reaching a Service that sends it to another Pod of the same
/// bridge gets the answer back through the same address translation (this machine has no
/// bridge netfilter); the conntrack table left as it is (its sysctls are not namespaced).
pub fn kube_proxy(kubeconfig: &Path) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: {kubeconfig}
bindAddress: {NODE_IP}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: {POD_CIDR}
iptables:
  masqueradeAll: true
  syncPeriod: 5s
  minSyncPeriod: 0s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
        kubeconfig = kubeconfig.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cni_network_is_the_pods_subnet_on_its_bridge() {
        let v: serde_json::Value = serde_json::from_str(&cni(Path::new("/lab"))).unwrap();
        let bridge = &v["plugins"][0];
        assert_eq!(bridge["bridge"], BRIDGE);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], POD_CIDR);
        assert_eq!(bridge["ipam"]["dataDir"], "/lab/cni/ipam");
    }

    #[test]
    fn the_configs_stay_under_the_nodes_directory() {
        for text in [
            containerd(Path::new("/lab"), Path::new("/bin/runc"), Path::new("/cni")),
            kubelet(Path::new("/lab"), Path::new("/lab/logs/pods")),
        ] {
            for line in text
                .lines()
                .filter(|l| l.contains("\"/") || l.contains(": /"))
            {
                assert!(
                    line.contains("/lab") || line.contains("/bin/runc") || line.contains("/cni"),
                    "{line}"
                );
            }
        }
    }
}
