//! Envoy exactly as a generated Deployment runs it: its command line, with `$(POD_NAME)` and
//! `$(POD_NAMESPACE)` expanded and the bootstrap ConfigMap written to a local file, plus
//! `--base-id` so that several Envoys can share the machine; and waiting for it to answer.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;

use crate::http::{self, Response};
use crate::process::{ProcessBuilder, Running};
use crate::toolchain::{tool, vars};
use crate::wait::{Progress, wait_until};

/// Where the kubelet would expand `$(VAR)`s: the Deployment's env, resolved as for one pod.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = arg.to_owned();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// Envoy for the proxy `proxy_name`, run exactly as the generated Deployment `<ns>/<proxy_name>`
/// runs it: its command line (binary replaced by `$ENVOY`, `$(POD_NAME)` and `$(POD_NAMESPACE)`
/// expanded for a pod `<proxy_name>-local`) with the bootstrap ConfigMap it mounts written to
/// `<work_dir>/<mount path>`, plus `--base-id <base_id>`.
///
/// Fails unless the Deployment runs exactly one container whose config comes from one
/// ConfigMap volume.
pub async fn envoy_command(
    client: &Client,
    namespace: &str,
    proxy_name: &str,
    work_dir: &Path,
    log_dir: &Path,
    base_id: u32,
) -> Result<ProcessBuilder> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(proxy_name)
        .await
        .with_context(|| format!("reading Deployment {namespace}/{proxy_name}"))?;
    let pod = deployment
        .spec
        .template
        .spec
        .as_ref()
        .context("Deployment without a pod template")?;
    let [container] = pod.containers.as_slice() else {
        bail!(
            "expected one container in {proxy_name}, found {}",
            pod.containers.len()
        );
    };
    let pod_name = format!("{proxy_name}-local");
    let mut env = BTreeMap::new();
    for var in container.env.iter().flatten() {
        let value = match (
            &var.value,
            var.value_from.as_ref().and_then(|f| f.field_ref.as_ref()),
        ) {
            (Some(v), _) => v.clone(),
            (None, Some(f)) if f.field_path == "metadata.name" => pod_name.clone(),
            (None, Some(f)) if f.field_path == "metadata.namespace" => namespace.to_owned(),
            _ => bail!("cannot resolve env {} of {proxy_name}", var.name),
        };
        env.insert(var.name.clone(), value);
    }

    // The bootstrap: each ConfigMap volume's keys, written where the container mounts it.
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .with_context(|| format!("no volume {}", mount.name))?;
        let cm_name = &volume
            .config_map
            .as_ref()
            .with_context(|| format!("volume {} is not a ConfigMap", mount.name))?
            .name;
        let cm = config_maps
            .get(cm_name)
            .await
            .with_context(|| format!("reading ConfigMap {namespace}/{cm_name}"))?;
        let local = work_dir.join(mount.mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&local)?;
        for (key, data) in cm.data.iter().flatten() {
            std::fs::write(local.join(key), data)?;
        }
        mounts.push((mount.mount_path.clone(), local));
    }

    let mut args: Vec<String> = container
        .command
        .iter()
        .flatten()
        .skip(1)
        .cloned()
        .collect();
    args.extend(container.args.iter().flatten().cloned());
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            let a = expand(a, &env);
            match mounts.iter().find(|(m, _)| a.starts_with(m.as_str())) {
                Some((m, local)) => format!("{}{}", local.display(), &a[m.len()..]),
                None => a,
            }
        })
        .collect();
    Ok(ProcessBuilder::new("envoy", tool(vars::ENVOY)?, log_dir)
        .args(&args)
        .args(["--base-id", &base_id.to_string()]))
}

/// Waits until `GET <path>` with `Host: <host>` at `address` answers `status`, and returns it.
pub async fn wait_http(
    address: &str,
    host: &str,
    path: &str,
    status: u16,
    timeout: Duration,
    envoy: &impl Running,
) -> Result<Response> {
    let what = format!("GET {path} Host: {host} at {address} to answer {status}");
    wait_until(&what, timeout, || async {
        if let Err(e) = envoy.check_running() {
            return Ok(Progress::Abort(format!("{e:#}")));
        }
        let r = http::get(address, host, path).await?;
        Ok(if r.status == status {
            Progress::Done(r)
        } else {
            Progress::Pending(format!("{} {}", r.status, r.body.trim()))
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_kubelet_variables() {
        let env = BTreeMap::from([
            ("POD_NAME".to_owned(), "p".to_owned()),
            ("POD_NAMESPACE".to_owned(), "ns".to_owned()),
        ]);
        assert_eq!(expand("$(POD_NAME).$(POD_NAMESPACE)", &env), "p.ns");
    }
}
