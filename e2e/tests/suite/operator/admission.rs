//! What never reaches the operator (admission), and what it writes passes Envoy's and
//! Gloo's own checks.

use anyhow::{Context, Result, bail, ensure};
use hostrouter_e2e::TestContext;
use hostrouter_e2e::resources::{proxies as proxy_api, routers};
use hostrouter_e2e::toolchain::{tool, vars};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::world::World;

/// Scenario 6: invalid specs never reach the operator.
pub(super) async fn rejects_invalid_specs(cx: &TestContext) -> Result<()> {
    let ns = cx.namespace([]).await?;
    let valid = json!({
        "apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter",
        "metadata": {"name": "probe", "namespace": ns.name()},
        "spec": {"proxyName": "edge", "listener": {"port": 8080}, "namespaceSelector": {}},
    });
    let api = routers(&cx.client(), ns.name());
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let obj: DynamicObject = serde_json::from_value(valid.clone())?;
    api.create(&params, &obj)
        .await
        .context("the valid baseline must be accepted")?;
    // Every routing field set, and valid: the rules below must not reject what they should let
    // through.
    let mut routed = valid.clone();
    routed["spec"]["hosts"] = json!({
        "template": "{service}.{namespace}.{portName}-{port}.apps.example.com",
        "allowedSuffixes": ["example.com", "example.org"],
    });
    routed["spec"]["paths"] =
        json!({"host": "apps.example.com", "template": "/{namespace}/{service}/{port}"});
    routed["spec"]["listener"] = json!({"port": 8080, "bindAddress": "::ffff:127.0.0.1"});
    routed["spec"]["envoy"] = json!({
        "adminPort": 80,
        "image": "registry.example.com:5000/team/envoy:1.40",
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": 1, "memory": "128Mi"}},
    });
    routed["spec"]["service"] = json!({
        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
        "labels": {"team": "platform"},
        "loadBalancerClass": "service.k8s.aws/nlb",
        "loadBalancerSourceRanges": ["198.51.100.0/24", "2001:db8::/32"],
        "externalTrafficPolicy": "Local",
    });
    // Every field of the Envoy fleet too.
    routed["spec"]["envoy"]["autoscaling"] =
        json!({"minReplicas": 2, "maxReplicas": 6, "cpuUtilization": 70, "memoryUtilization": 90});
    routed["spec"]["envoy"]["disruptionBudget"] = json!({"maxUnavailable": "25%"});
    routed["spec"]["envoy"]["pod"] = json!({
        "annotations": {"prometheus.io/scrape": "true"},
        "labels": {"team": "platform"},
        "nodeSelector": {"node-role.example.com/edge": "true"},
        "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}],
        "priorityClassName": "edge-critical",
        "env": [{"name": "ENVOY_CONCURRENCY_HINT", "value": "2"}],
    });
    // A prefix of 4 labels of 60 characters: 243 characters, within the limit.
    let long_prefix = vec!["a".repeat(60); 4].join(".");
    routed["spec"]["namespaceSelector"] =
        json!({"matchExpressions": [{"key": format!("{long_prefix}/team"), "operator": "Exists"}]});
    routed["spec"]["tls"] = json!({
        "port": 443,
        "certificates": [{"secretName": "wildcard-apps"}, {"secretName": "shop.example.com"}],
        "redirectHttp": true,
    });
    let offline = render(cx, &routed).await?;
    ensure!(
        offline.0,
        "`hostrouter render` refused a valid router: {}",
        offline.1
    );
    let obj: DynamicObject = serde_json::from_value(routed)?;
    api.create(&params, &obj)
        .await
        .context("a valid router with hosts, paths and tls must be accepted")?;

    let long_name = "a".repeat(41);
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "port 0",
            json!({"listener": {"port": 0}}),
            &["spec.listener.port"],
        ),
        (
            "port 65536",
            json!({"listener": {"port": 65536}}),
            &["spec.listener.port"],
        ),
        (
            "uppercase proxy name",
            json!({"proxyName": "Edge"}),
            &["spec.proxyName"],
        ),
        (
            "proxy name with underscore",
            json!({"proxyName": "my_proxy"}),
            &["spec.proxyName"],
        ),
        (
            "too long proxy name",
            json!({"proxyName": long_name}),
            &["spec.proxyName"],
        ),
        (
            "missing namespace selector",
            json!({"namespaceSelector": null}),
            &["namespaceSelector"],
        ),
        (
            "In without values",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}),
            &["values must be non-empty"],
        ),
        (
            "Exists with values",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["x"]}]}}),
            &["must be empty for Exists"],
        ),
        (
            "unknown operator",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Like"}]}}),
            &["operator"],
        ),
        (
            "bad matchLabels key",
            json!({"namespaceSelector": {"matchLabels": {"-bad key": "x"}}}),
            &["matchLabels keys must be valid label keys"],
        ),
        (
            "bad matchLabels value",
            json!({"serviceSelector": {"matchLabels": {"team": "not a value!"}}}),
            &["serviceSelector.matchLabels"],
        ),
        (
            "bind address not an IP",
            json!({"listener": {"port": 8080, "bindAddress": "localhost"}}),
            &["bindAddress must be an IPv4 or IPv6 address"],
        ),
        (
            "listener on the admin port",
            json!({"listener": {"port": 19000}}),
            &["listener.port must differ from envoy.adminPort"],
        ),
        (
            "unknown destination",
            json!({"destination": "Cluster"}),
            &["spec.destination"],
        ),
        (
            "negative replicas",
            json!({"envoy": {"replicas": -1}}),
            &["spec.envoy.replicas"],
        ),
        (
            "a CPU limit that is not a quantity",
            json!({"envoy": {"resources": {"limits": {"cpu": "abc"}}}}),
            &["spec.envoy.resources.limits.cpu", "cpu must be a quantity"],
        ),
        (
            "requests above limits",
            json!({"envoy": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}}}),
            &[
                "spec.envoy.resources",
                "resources.requests must not exceed resources.limits",
            ],
        ),
        (
            "a Service annotation key that is not a key",
            json!({"service": {"annotations": {"bad key!": "x"}}}),
            &[
                "spec.service.annotations",
                "annotation keys must be qualified names",
            ],
        ),
        (
            "an image with spaces",
            json!({"envoy": {"image": "envoy proxy:1.40"}}),
            &[
                "spec.envoy.image",
                "image must be a container image reference",
            ],
        ),
        (
            "a selector key whose prefix is longer than 253",
            json!({"namespaceSelector": {"matchExpressions": [{"key": format!("{}/team", vec!["a".repeat(60); 5].join(".")), "operator": "Exists"}]}}),
            &[
                "spec.namespaceSelector.matchExpressions[0].key",
                "prefix before '/' must have at most 253 characters",
            ],
        ),
        (
            "a matchLabels key whose prefix is longer than 253",
            json!({"serviceSelector": {"matchLabels": {format!("{}/team", vec!["a".repeat(60); 5].join(".")): "x"}}}),
            &[
                "spec.serviceSelector.matchLabels",
                "prefix of at most 253 characters",
            ],
        ),
        (
            "a bind address that is a name",
            json!({"listener": {"port": 8080, "bindAddress": "::ffff:not-an-ip"}}),
            &[
                "spec.listener.bindAddress",
                "bindAddress must be an IPv4 or IPv6 address",
            ],
        ),
        (
            "template with an unknown variable",
            json!({"hosts": {"template": "{svc}.example.com"}}),
            &[
                "spec.hosts.template",
                "template may contain only lowercase letters",
            ],
        ),
        (
            "template with uppercase letters",
            json!({"hosts": {"template": "{service}.Example.com"}}),
            &["spec.hosts.template", "template may contain only"],
        ),
        (
            "template with a character no DNS name has",
            json!({"hosts": {"template": "{service}_{namespace}.example.com"}}),
            &["spec.hosts.template", "template may contain only"],
        ),
        (
            "template without {service}",
            json!({"hosts": {"template": "{namespace}.example.com"}}),
            &["spec.hosts.template", "template must contain {service}"],
        ),
        (
            "template with an empty label",
            json!({"hosts": {"template": "{service}..example.com"}}),
            &[
                "spec.hosts.template",
                "template must not start or end with '.'",
            ],
        ),
        (
            "template that can exceed 253 characters",
            json!({"hosts": {"template": format!("{{service}}.{{namespace}}.{}.example.com", vec!["x".repeat(60); 2].join("."))}}),
            &[
                "spec.hosts.template",
                "template can produce names longer than 253 characters",
            ],
        ),
        (
            "allowed suffix that is not a DNS name",
            json!({"hosts": {"allowedSuffixes": ["*.example.com"]}}),
            &["spec.hosts.allowedSuffixes[0]"],
        ),
        (
            "path template without a leading slash",
            json!({"paths": {"template": "{namespace}/{service}"}}),
            &[
                "spec.paths.template",
                "template must be '/'-separated segments",
            ],
        ),
        (
            "path template with a trailing slash",
            json!({"paths": {"template": "/{service}/"}}),
            &[
                "spec.paths.template",
                "template must be '/'-separated segments",
            ],
        ),
        (
            "path host that is not a DNS name",
            json!({"paths": {"host": "Apps.Example.com"}}),
            &["spec.paths.host"],
        ),
        (
            "tls without certificates",
            json!({"tls": {"certificates": []}}),
            &["spec.tls.certificates"],
        ),
        (
            "tls certificate without a Secret name",
            json!({"tls": {"certificates": [{}]}}),
            &["spec.tls.certificates[0].secretName"],
        ),
        (
            "tls certificate named twice",
            json!({"tls": {"certificates": [{"secretName": "a"}, {"secretName": "a"}]}}),
            &["spec.tls.certificates[1]: Duplicate value"],
        ),
        (
            "tls on the listener's port",
            json!({"tls": {"port": 8080, "certificates": [{"secretName": "a"}]}}),
            &["tls.port (default 8443) must differ from listener.port"],
        ),
        (
            "tls on the admin port",
            json!({"tls": {"port": 19000, "certificates": [{"secretName": "a"}]}}),
            &["tls.port (default 8443) must differ from envoy.adminPort"],
        ),
        (
            "autoscaling with minReplicas above maxReplicas",
            json!({"envoy": {"resources": {"requests": {"cpu": "100m"}}, "autoscaling": {"minReplicas": 5, "maxReplicas": 3}}}),
            &[
                "spec.envoy.autoscaling",
                "envoy.autoscaling.minReplicas must not exceed envoy.autoscaling.maxReplicas",
            ],
        ),
        (
            "autoscaling with maxReplicas 0",
            json!({"envoy": {"resources": {"requests": {"cpu": "100m"}}, "autoscaling": {"maxReplicas": 0}}}),
            &["spec.envoy.autoscaling.maxReplicas"],
        ),
        (
            "autoscaling on CPU without a CPU request",
            json!({"envoy": {"autoscaling": {"maxReplicas": 3}}}),
            &["spec.envoy", "envoy.resources.requests.cpu"],
        ),
        (
            "autoscaling on memory without a memory request",
            json!({"envoy": {"resources": {"requests": {"cpu": "100m"}}, "autoscaling": {"maxReplicas": 3, "memoryUtilization": 80}}}),
            &["spec.envoy", "envoy.resources.requests.memory"],
        ),
        (
            "a disruption budget with both minAvailable and maxUnavailable",
            json!({"envoy": {"disruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}}),
            &[
                "spec.envoy.disruptionBudget",
                "exactly one of minAvailable and maxUnavailable",
            ],
        ),
        (
            "a disruption budget with neither",
            json!({"envoy": {"disruptionBudget": {}}}),
            &[
                "spec.envoy.disruptionBudget",
                "exactly one of minAvailable and maxUnavailable",
            ],
        ),
        (
            "a disruption budget of 150%",
            json!({"envoy": {"disruptionBudget": {"minAvailable": "150%"}}}),
            &["spec.envoy.disruptionBudget.minAvailable"],
        ),
        (
            "a disruption budget of -1 pods",
            json!({"envoy": {"disruptionBudget": {"maxUnavailable": -1}}}),
            &["spec.envoy.disruptionBudget.maxUnavailable"],
        ),
        (
            "a disruption budget of a number in a string",
            json!({"envoy": {"disruptionBudget": {"minAvailable": "5"}}}),
            &["spec.envoy.disruptionBudget.minAvailable"],
        ),
        (
            "a disruption budget beyond 32 bits",
            json!({"envoy": {"disruptionBudget": {"minAvailable": 3_000_000_000_i64}}}),
            &["spec.envoy.disruptionBudget.minAvailable"],
        ),
        (
            "a spread whose maxSkew is beyond 32 bits",
            json!({"envoy": {"pod": {"topologySpreadConstraints": [{"maxSkew": 3_000_000_000_i64, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]}}}),
            &["spec.envoy.pod.topologySpreadConstraints[0].maxSkew"],
        ),
        (
            "a spread with maxSkew 0 and minDomains without DoNotSchedule",
            json!({"envoy": {"pod": {"topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 2}]}}}),
            &[
                "spec.envoy.pod.topologySpreadConstraints",
                "maxSkew must be at least 1",
            ],
        ),
        (
            "a toleration with an unknown operator",
            json!({"envoy": {"pod": {"tolerations": [{"key": "edge", "operator": "Matches", "effect": "NoSchedule"}]}}}),
            &[
                "spec.envoy.pod.tolerations",
                "operator must be Exists or Equal",
            ],
        ),
        (
            "a toleration with Exists and a value",
            json!({"envoy": {"pod": {"tolerations": [{"key": "edge", "operator": "Exists", "value": "x"}]}}}),
            &["spec.envoy.pod.tolerations", "Exists takes no value"],
        ),
        (
            "a toleration with tolerationSeconds and NoSchedule",
            json!({"envoy": {"pod": {"tolerations": [{"key": "edge", "effect": "NoSchedule", "tolerationSeconds": 30}]}}}),
            &[
                "spec.envoy.pod.tolerations",
                "tolerationSeconds needs NoExecute",
            ],
        ),
        (
            "a node selector value that is no label value",
            json!({"envoy": {"pod": {"nodeSelector": {"edge": "not a value"}}}}),
            &["spec.envoy.pod.nodeSelector.edge"],
        ),
        (
            "an affinity weight beyond 32 bits",
            json!({"envoy": {"pod": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 3_000_000_000_i64, "preference": {}}]}}}}}),
            &[
                "spec.envoy.pod.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
            ],
        ),
        (
            "a pod label that overrides the selector",
            json!({"envoy": {"pod": {"labels": {"app.kubernetes.io/instance": "other"}}}}),
            &[
                "spec.envoy.pod.labels",
                "must not set the labels the operator selects the pods by",
            ],
        ),
        (
            "a pod annotation of the operator's",
            json!({"envoy": {"pod": {"annotations": {"hostrouter.io/bootstrap-sha256": "x"}}}}),
            &[
                "spec.envoy.pod.annotations",
                "must not set hostrouter.io/ keys",
            ],
        ),
        (
            "env that sets POD_NAME",
            json!({"envoy": {"pod": {"env": [{"name": "POD_NAME", "value": "x"}]}}}),
            &[
                "spec.envoy.pod.env",
                "must not set POD_NAME or POD_NAMESPACE",
            ],
        ),
        (
            "env that names a variable twice",
            json!({"envoy": {"pod": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}}}),
            &["spec.envoy.pod.env[1]: Duplicate value"],
        ),
        (
            "a priority class name that is not a DNS name",
            json!({"envoy": {"pod": {"priorityClassName": "Edge_Critical"}}}),
            &["spec.envoy.pod.priorityClassName"],
        ),
        (
            "a Service label of the operator's",
            json!({"service": {"labels": {"app.kubernetes.io/managed-by": "me"}}}),
            &["spec.service.labels", "must not set the operator's labels"],
        ),
        (
            "a load balancer class on a ClusterIP Service",
            json!({"service": {"type": "ClusterIP", "loadBalancerClass": "example.com/lb"}}),
            &["spec.service", "apply only to service.type LoadBalancer"],
        ),
        (
            "source ranges on a NodePort Service",
            json!({"service": {"type": "NodePort", "loadBalancerSourceRanges": ["10.0.0.0/8"]}}),
            &["spec.service", "apply only to service.type LoadBalancer"],
        ),
        (
            "a source range that is not a CIDR",
            json!({"service": {"loadBalancerSourceRanges": ["10.0.0.300/8"]}}),
            &["spec.service.loadBalancerSourceRanges", "must be CIDRs"],
        ),
        (
            "externalTrafficPolicy on a ClusterIP Service",
            json!({"service": {"type": "ClusterIP", "externalTrafficPolicy": "Local"}}),
            &[
                "spec.service",
                "externalTrafficPolicy applies only to service.type LoadBalancer or NodePort",
            ],
        ),
        (
            "an Envoy fleet with the Gateway API backend",
            json!({"backend": {"type": "GatewayAPI", "gatewayAPI": {"gatewayClassName": "eg"}}, "envoy": {"pod": {"labels": {"team": "a"}}}}),
            &["envoy configures the Envoy Deployment the operator runs for Gloo"],
        ),
        (
            "tls port 70000",
            json!({"tls": {"port": 70000, "certificates": [{"secretName": "a"}]}}),
            &["spec.tls.port"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, spec_patch, expected) in &cases {
        let mut manifest = valid.clone();
        for (k, v) in spec_patch.as_object().into_iter().flatten() {
            manifest["spec"][k] = v.clone();
        }
        if manifest["spec"]["namespaceSelector"].is_null() {
            manifest["spec"]
                .as_object_mut()
                .map(|s| s.remove("namespaceSelector"));
        }
        // `hostrouter render` refuses it too, by the same rules, naming the same field.
        let offline = render(cx, &manifest).await?;
        if offline.0 || !expected.iter().all(|e| offline.1.contains(e)) {
            failures.push(format!(
                "{what}: `hostrouter render` should fail mentioning {expected:?}; exit ok: {}, stderr: {}",
                offline.0, offline.1
            ));
        }
        let obj: DynamicObject = serde_json::from_value(manifest)?;
        match api.create(&params, &obj).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(status))
                if status.code == 422 && expected.iter().all(|e| status.message.contains(e)) =>
            {
                eprintln!("{what}: {}", status.message);
            }
            Err(e) => failures.push(format!(
                "{what}: expected a 422 mentioning {expected:?}, got {e}"
            )),
        }
    }
    if !failures.is_empty() {
        bail!(
            "invalid specs were not rejected as expected:\n{}",
            failures.join("\n")
        );
    }
    // kubectl shows the same readable message.
    let bad = json!({"apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter", "metadata": {"name": "bad", "namespace": ns.name()},
        "spec": {"proxyName": "edge", "listener": {"port": 0}, "namespaceSelector": {}}});
    let out = cx
        .cluster()
        .kubectl_command()?
        .args(["apply", "--dry-run=server", "-f", "-"])
        .stdin(bad.to_string())
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("spec.listener.port"),
        "kubectl apply of port 0: {stderr}"
    );
    Ok(())
}

/// `hostrouter render -f <manifest>`: whether it succeeded, and its stderr.
async fn render(cx: &TestContext, manifest: &Value) -> Result<(bool, String)> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = cx.log_dir().join(format!("render-{n}.yaml"));
    std::fs::write(&path, serde_yaml::to_string(manifest)?)?;
    let out = hostrouter_e2e::cli::ToolCommand::new(tool(vars::HOSTROUTER_BIN)?)
        .arg("render")
        .arg("-f")
        .arg(&path)
        .output()
        .await?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Scenario 8: the bootstrap passes the real Envoy's validation; the Proxy of a router that
/// uses every routing field (template and extra hostnames, paths, TLS with the redirect) is
/// accepted by Gloo's v1.22 CRD with strict field validation (the listener level is typed
/// there), and its routes validate strictly against Gloo v1.11's full schema.
pub(super) async fn generated_config_is_valid(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let ns = w.app.name();
    let ca = hostrouter_e2e::pki::TestCa::new(&cx.log_dir().join("pki"), "shape-ca").await?;
    let cert = ca.issue("wildcard", &["*.apps.example.test"]).await?;
    hostrouter_e2e::resources::apply_tls_secret(&w.client, ns, "wildcard", &cert).await?;
    let mut manifest = w.router_manifest(ns, "edge", &w.proxy_name);
    manifest["spec"]["hosts"] = json!({"template": "{service}.{namespace}.apps.example.test", "allowedSuffixes": ["example.test"]});
    manifest["spec"]["paths"] = json!({"host": "apps.example.test"});
    manifest["spec"]["tls"] =
        json!({"certificates": [{"secretName": "wildcard"}], "redirectHttp": true});
    let obj: DynamicObject = serde_json::from_value(manifest)?;
    routers(&w.client, ns)
        .create(&PostParams::default(), &obj)
        .await?;
    w.wait_condition(ns, "edge", "Programmed", "True", "Programmed")
        .await?;
    let cm: ConfigMap = Api::namespaced(w.client.clone(), ns)
        .get(&format!("{}-envoy-bootstrap", w.proxy_name))
        .await?;
    let bootstrap = cm
        .data
        .as_ref()
        .and_then(|d| d.get("envoy.yaml"))
        .context("no envoy.yaml in the ConfigMap")?;
    let path = cx.log_dir().join("envoy.yaml");
    std::fs::write(&path, bootstrap)?;
    let (valid, text) = hostrouter_e2e::cli::ToolCommand::new(tool(vars::ENVOY)?)
        .args(["--mode", "validate", "-c"])
        .arg(&path)
        .args([
            "--service-node",
            "validate",
            "--service-cluster",
            "validate",
        ])
        .status_and_text()
        .await?;
    ensure!(
        valid && text.contains("OK"),
        "envoy --mode validate failed:\n{text}"
    );

    let proxy = proxy_api(&w.client, w.gloo.name())
        .get(&w.proxy_name)
        .await?;
    let spec = &proxy.data["spec"];
    let listeners = spec["listeners"].as_array().context("no listeners")?;
    ensure!(
        listeners.len() == 2
            && listeners[1]["sslConfigurations"][0]["secretRef"]["name"] == "wildcard",
        "expected an HTTPS listener serving the wildcard Secret: {spec}"
    );
    let redirects = spec.to_string().contains("portRedirect");
    let rewrites = spec.to_string().contains("prefixRewrite");
    ensure!(
        redirects && rewrites,
        "expected redirects and rewrites in {spec}"
    );

    // Gloo v1.22's own CRD types the listener level: strict validation catches a misspelling there.
    let strict = PatchParams::apply("e2e").validation(kube::api::ValidationDirective::Strict);
    let real = proxy_api(&w.client, w.gloo.name());
    let copy_name = format!("{}-shape", w.proxy_name);
    let real_copy = json!({
        "apiVersion": "gloo.solo.io/v1", "kind": "Proxy",
        "metadata": {"name": copy_name, "namespace": w.gloo.name()},
        "spec": spec,
    });
    real.patch(&copy_name, &strict, &Patch::Apply(&real_copy))
        .await
        .context("the generated Proxy does not validate strictly against Gloo v1.22's Proxy CRD")?;
    let mut misspelt = real_copy.clone();
    misspelt["spec"]["listeners"][1]["sslConfigurations"][0]["secretRefs"] = json!({});
    ensure!(
        real.patch(&copy_name, &strict, &Patch::Apply(&misspelt))
            .await
            .is_err(),
        "Gloo v1.22's CRD accepted a misspelled sslConfigurations field; the check would prove nothing"
    );
    real.delete(&copy_name, &Default::default()).await?;

    let shape = crate::shapes::v111_proxy(cx).await?;
    let copy = json!({
        "apiVersion": shape.api_version, "kind": "Proxy",
        "metadata": {"name": w.proxy_name, "namespace": w.gloo.name()},
        "spec": proxy.data["spec"],
    });
    let api: Api<DynamicObject> = Api::namespaced_with(w.client.clone(), w.gloo.name(), &shape);
    let params = PatchParams::apply("e2e").validation(kube::api::ValidationDirective::Strict);
    api.patch(&w.proxy_name, &params, &Patch::Apply(&copy))
        .await
        .context("the generated Proxy does not validate against Gloo v1.11's full Proxy schema")?;

    // And the check can fail: a misspelled field is rejected.
    let mut broken = copy.clone();
    broken["spec"]["listeners"][0]["httpListener"]["virtualHosts"][0]["routes"][0]["matchers"][0] =
        json!({"prefx": "/"});
    let rejected = api
        .patch(&w.proxy_name, &params, &Patch::Apply(&broken))
        .await;
    ensure!(
        rejected.is_err(),
        "the v1.11 schema accepted a misspelled matcher; the shape check would prove nothing"
    );
    Ok(())
}
