//! The Deployment running Envoy with the bootstrap from the ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecurityContext, Sysctl, TCPSocketAction, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::HostRouterSpec;
use crate::render::naming::{
    BOOTSTRAP_HASH_ANNOTATION, BOOTSTRAP_KEY, REPLICAS_FROM_ANNOTATION, REPLICAS_FROM_AUTOSCALER,
    bootstrap_config_map_name, selector_labels,
};
use crate::render::routes::{HTTP, HTTPS};
use crate::render::{Identity, Settings};
/// Where the bootstrap ConfigMap is mounted.
pub const BOOTSTRAP_DIR: &str = "/etc/envoy";
/// Envoy's path in Gloo's envoy wrapper image (and in upstream Envoy images).
pub const ENVOY_BINARY: &str = "/usr/local/bin/envoy";
/// The non-root user Gloo's envoy wrapper image runs as.
pub const ENVOY_UID: i64 = 10101;

/// Envoy's command line. The node id is unique per pod; `$(VAR)` is expanded by the kubelet.
pub fn envoy_args(proxy_name: &str) -> Vec<String> {
    [
        "--config-path",
        &format!("{BOOTSTRAP_DIR}/{BOOTSTRAP_KEY}"),
        "--service-node",
        "$(POD_NAME).$(POD_NAMESPACE)",
        "--service-cluster",
        proxy_name,
        "--disable-hot-restart",
        "--log-level",
        "info",
    ]
    .map(str::to_owned)
    .to_vec()
}

pub fn deployment(
    id: &Identity<'_>,
    spec: &HostRouterSpec,
    settings: &Settings,
    bootstrap_hash: &str,
) -> Deployment {
    let pod = &spec.envoy.pod;
    let image = spec
        .envoy
        .image
        .clone()
        .unwrap_or_else(|| settings.envoy_image.clone());
    let field_env = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Binding a port below 1024 as non-root, without capabilities, needs this namespaced sysctl
    // (allowed by the restricted Pod Security Standard).
    let privileged_port = listener_ports(spec)
        .into_iter()
        .map(|(_, port)| port)
        .chain([spec.admin_port()])
        .any(|port| port < 1024);
    let sysctls = privileged_port.then(|| {
        vec![Sysctl {
            name: "net.ipv4.ip_unprivileged_port_start".to_owned(),
            value: "0".to_owned(),
        }]
    });

    let container = Container {
        name: "envoy".to_owned(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(vec![ENVOY_BINARY.to_owned()]),
        args: Some(envoy_args(&id.proxy.name)),
        env: Some(
            [
                field_env("POD_NAME", "metadata.name"),
                field_env("POD_NAMESPACE", "metadata.namespace"),
            ]
            .into_iter()
            .chain(pod.env.iter().cloned())
            .collect(),
        ),
        ports: Some(
            listener_ports(spec)
                .into_iter()
                .map(|(name, port)| ContainerPort {
                    name: Some(name.to_owned()),
                    container_port: port,
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                })
                .collect(),
        ),
        // Ready once Gloo has delivered the listener and Envoy accepts connections on it.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String(HTTP.to_owned()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        resources: spec.envoy.resources.as_ref().map(|r| r.to_requirements()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Default::default()
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "bootstrap".to_owned(),
            mount_path: BOOTSTRAP_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };

    // The operator's labels and annotations win (admission refuses them in `pod` anyway).
    let mut labels = pod.labels.clone();
    labels.extend(id.labels.clone());
    let mut annotations = pod.annotations.clone();
    annotations.insert(
        BOOTSTRAP_HASH_ANNOTATION.to_owned(),
        bootstrap_hash.to_owned(),
    );
    let non_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());

    let mut metadata = id.local_meta(id.proxy.name.clone());
    if spec.envoy.autoscaling.is_some() {
        metadata.annotations = Some(BTreeMap::from([(
            REPLICAS_FROM_ANNOTATION.to_owned(),
            REPLICAS_FROM_AUTOSCALER.to_owned(),
        )]));
    }
    Deployment {
        metadata,
        spec: DeploymentSpec {
            // With an autoscaler the replica count is its to set.
            replicas: spec.envoy.autoscaling.is_none().then(|| spec.replicas()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&id.proxy.name)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(ENVOY_UID),
                        run_as_group: Some(ENVOY_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..Default::default()
                        }),
                        sysctls,
                        ..Default::default()
                    }),
                    containers: vec![container],
                    node_selector: non_empty(&pod.node_selector),
                    tolerations: (!pod.tolerations.is_empty()).then(|| pod.tolerations.clone()),
                    affinity: pod.affinity.clone(),
                    topology_spread_constraints: spread(spec, &id.proxy.name),
                    priority_class_name: pod.priority_class_name.clone(),
                    volumes: Some(vec![Volume {
                        name: "bootstrap".to_owned(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: bootstrap_config_map_name(&id.proxy.name),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The pods' topology spread: `spec.envoy.pod.topologySpreadConstraints` when set (`[]`: none),
/// else, when there can be more than one pod, a preference for spreading them evenly across
/// zones and then nodes. `ScheduleAnyway`, not `DoNotSchedule`: a cluster with one zone or
/// fewer nodes than pods still runs every pod. Only pods of the same revision are counted
/// (`matchLabelKeys: [pod-template-hash]`), so that a rollout spreads the new pods too.
fn spread(spec: &HostRouterSpec, proxy_name: &str) -> Option<Vec<TopologySpreadConstraint>> {
    if let Some(set) = &spec.envoy.pod.topology_spread_constraints {
        return (!set.is_empty()).then(|| set.clone());
    }
    let most_pods = spec
        .envoy
        .autoscaling
        .as_ref()
        .map_or(spec.replicas(), |a| a.max_replicas);
    (most_pods > 1).then(|| {
        [ZONE_KEY, HOSTNAME_KEY]
            .map(|key| TopologySpreadConstraint {
                max_skew: 1,
                topology_key: key.to_owned(),
                when_unsatisfiable: "ScheduleAnyway".to_owned(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(proxy_name)),
                    ..Default::default()
                }),
                match_label_keys: Some(vec!["pod-template-hash".to_owned()]),
                ..Default::default()
            })
            .to_vec()
    })
}

/// Well-known node labels: the node's zone and its name.
const ZONE_KEY: &str = "topology.kubernetes.io/zone";
const HOSTNAME_KEY: &str = "kubernetes.io/hostname";

/// The ports Envoy listens on, by name: `http`, and `https` with `spec.tls` (whether or not a
/// certificate is usable yet, so that a Secret never changes the pods).
pub fn listener_ports(spec: &HostRouterSpec) -> Vec<(&'static str, i32)> {
    let mut ports = vec![(HTTP, spec.listener.port)];
    if let Some(tls) = &spec.tls {
        ports.push((HTTPS, tls.port()));
    }
    ports
}
