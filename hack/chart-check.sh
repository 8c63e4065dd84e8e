#!/usr/bin/env bash
# Checks the Helm chart in charts/hostrouter (called by `make chart-check`):
#
#  1. `helm lint --strict` with the default values and with hack/testdata/full-values.yaml.
#  2. `helm template --include-crds` for these value sets (defaults; ServiceMonitor enabled;
#     Grafana dashboard enabled; hack/testdata/full-values.yaml, which sets every knob;
#     replicaCount=3 with leader election; leader election off), then for each render:
#     - kubernetes-validate --strict against Kubernetes $KUBE_VERSION for every object except
#       the ServiceMonitor. ServiceMonitor is a prometheus-operator CRD that kubernetes-validate
#       has no schema for (it would only print a WARN and pass), so it is left out of that run
#       and checked on its own below. Any WARN (unknown schema) or ERROR fails the check.
#     - structural checks (embedded Python, PyYAML from the kubernetes-validate venv): the
#       HostRouter CRD is shipped; namespaced objects are in the release namespace; the
#       ClusterRole has exactly the least-privilege rules; with leader election a Lease Role and
#       RoleBinding exist and the Deployment rolls with RollingUpdate (maxUnavailable 0), without
#       it the Deployment is a single-replica Recreate one; the restricted securityContext;
#       selectors match pod labels; the
#       ServiceMonitor selects the metrics Service, names one of its ports, uses only known
#       fields and valid durations, and honours the scraped labels (a router's `namespace`); and the Grafana dashboard ConfigMap (the one object allowed
#       outside the release namespace, in grafanaDashboard.namespace) carries the sidecar label
#       and exactly charts/hostrouter/dashboards/hostrouter.json, whose panels all read the
#       dashboard's data source variable. (The e2e trial
#       operator::grafana_dashboard_queries_use_only_exported_metrics checks every query against
#       the operator's real /metrics.)
#  3. config/samples: demo-services.yaml passes kubernetes-validate --strict; every HostRouter
#     sample's spec passes the openAPIV3Schema of the chart's CRD (unknown fields rejected, as
#     the API server's pruning would drop them; CEL rules are not evaluated here).
#  4. Values of the wrong type or out of range are REJECTED by values.schema.json:
#     hack/testdata/bad-values.yaml (replicaCount: "two"), --set replicaCount=two,
#     replicaCount=-1, replicaCount=2 without leader election and a lease duration that is not a
#     duration string must make `helm template` fail with the schema's message.
#
# Environment:
#   HELM                 helm binary (default: helm)
#   KUBERNETES_VALIDATE  kubernetes-validate executable, normally in a venv (default:
#                        kubernetes-validate)
#   PYTHON               Python with PyYAML (default: the python next to KUBERNETES_VALIDATE,
#                        else python3)
#   KUBE_VERSION         Kubernetes version to render and validate for (default: 1.37.0)
set -euo pipefail

HELM=${HELM:-helm}
KUBERNETES_VALIDATE=${KUBERNETES_VALIDATE:-kubernetes-validate}
KUBE_VERSION=${KUBE_VERSION:-1.37.0}
if [[ -z ${PYTHON:-} ]]; then
  kv_path=$(command -v "$KUBERNETES_VALIDATE" || true)
  if [[ -n $kv_path && -x $(dirname "$kv_path")/python ]]; then
    PYTHON=$(dirname "$kv_path")/python
  else
    PYTHON=python3
  fi
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
chart=$root/charts/hostrouter
testdata=$root/hack/testdata
namespace=hostrouter-system
release=hostrouter

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "chart-check: FAIL: $*" >&2
  exit 1
}
step() {
  echo "==> $*"
}

for tool in "$HELM" "$KUBERNETES_VALIDATE" "$PYTHON"; do
  command -v "$tool" >/dev/null || fail "$tool not found (set HELM, KUBERNETES_VALIDATE, PYTHON)"
done
"$PYTHON" -c 'import yaml' 2>/dev/null || fail "$PYTHON has no PyYAML (use the kubernetes-validate venv's python)"
echo "helm: $("$HELM" version --short)  kubernetes-validate: $("$KUBERNETES_VALIDATE" --version)  kubernetes: $KUBE_VERSION"

# ---------------------------------------------------------------------------------------------
step "helm lint --strict (default values)"
"$HELM" lint --strict --kube-version "$KUBE_VERSION" --namespace "$namespace" "$chart"
step "helm lint --strict (hack/testdata/full-values.yaml)"
"$HELM" lint --strict --kube-version "$KUBE_VERSION" --namespace "$namespace" \
  -f "$testdata/full-values.yaml" "$chart"

# ---------------------------------------------------------------------------------------------
# Structural checks of one render. Arguments: rendered.yaml out.yaml namespace servicemonitors
# Writes every object but the ServiceMonitors to out.yaml for kubernetes-validate.
cat >"$work/check.py" <<'PY'
import re
import sys

import yaml

import json

rendered, out, namespace, want_sm = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
# The dashboard ConfigMaps wanted, and their namespace; the dashboard file they must hold.
want_dash, dash_namespace, dash_file = int(sys.argv[5]), sys.argv[6], sys.argv[7]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
errors = []


def err(msg):
    errors.append(msg)


def name(d):
    return f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"


def subset(small, big):
    return all(big.get(k) == v for k, v in (small or {}).items())


CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
DASHBOARD_KEY = "hostrouter.json"


def is_dashboard(d):
    return d.get("kind") == "ConfigMap" and DASHBOARD_KEY in (d.get("data") or {})


by_kind = {}
for d in docs:
    by_kind.setdefault(d.get("kind"), []).append(d)
    want_ns = dash_namespace if is_dashboard(d) else namespace
    if d.get("kind") not in CLUSTER_SCOPED and d["metadata"].get("namespace") != want_ns:
        err(f"{name(d)}: metadata.namespace is {d['metadata'].get('namespace')!r}, want {want_ns!r}")

# The Grafana dashboard for the sidecar: the chart's file, verbatim, under the sidecar label.
dashboards = [d for d in docs if is_dashboard(d)]
if len(dashboards) != want_dash:
    err(f"want {want_dash} Grafana dashboard ConfigMap, got {len(dashboards)}")
shipped = json.load(open(dash_file))
for cm in dashboards:
    if cm["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
        err(f"{name(cm)}: no sidecar label grafana_dashboard: \"1\"")
    try:
        dash = json.loads(cm["data"][DASHBOARD_KEY])
    except ValueError as e:
        err(f"{name(cm)}: {DASHBOARD_KEY} is not JSON: {e}")
        continue
    if dash != shipped:
        err(f"{name(cm)}: {DASHBOARD_KEY} differs from {dash_file}")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource" or variables["datasource"].get("query") != "prometheus":
        err(f"{name(cm)}: no Prometheus data source variable named datasource")
    ids = set()
    panels = [p for top in dash.get("panels", []) for p in [top, *top.get("panels", [])]]
    for p in panels:
        where = f"{name(cm)}: panel {p.get('title')!r}"
        if p.get("id") in ids:
            err(f"{where}: duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            err(f"{where}: no query")
        for t in [p, *p.get("targets", [])]:
            if t.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
                err(f"{where}: data source {t.get('datasource')}, want the ${{datasource}} variable")

# The chart ships the generated HostRouter CRD (charts/hostrouter/crds/).
crds = [c for c in by_kind.get("CustomResourceDefinition", []) if c["metadata"]["name"] == "hostrouters.hostrouter.io"]
if len(crds) != 1:
    err(f"want exactly 1 CRD hostrouters.hostrouter.io from charts/hostrouter/crds/, got {len(crds)}")
else:
    names = crds[0]["spec"]["names"]
    if crds[0]["spec"].get("scope") != "Namespaced" or names.get("kind") != "HostRouter" or "hr" not in names.get("shortNames", []):
        err("CRD hostrouters.hostrouter.io: want a Namespaced kind HostRouter with short name hr")

# Least privilege: exactly these rules (the e2e trial operator::every_verb_of_the_charts_rbac_is_needed
# shows each verb needed).
WANT_RULES = {
    ("hostrouter.io", "hostrouters"): {"get", "list", "watch", "patch"},
    ("hostrouter.io", "hostrouters/status"): {"patch"},
    ("", "namespaces"): {"list", "watch"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("autoscaling", "horizontalpodautoscalers"): {"get", "list", "watch", "create", "patch", "delete"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("gloo.solo.io", "proxies"): {"get", "list", "watch", "create", "patch", "delete"},
    ("gateway.networking.k8s.io", "gateways"): {"get", "list", "watch", "create", "patch", "delete"},
    ("gateway.networking.k8s.io", "httproutes"): {"get", "list", "watch", "create", "patch", "delete"},
    # Read only: TLS certificates of spec.tls (kubernetes.io/tls Secrets, by field selector).
    ("", "secrets"): {"get", "list", "watch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
roles = by_kind.get("ClusterRole", [])
if len(roles) != 1:
    err(f"want 1 ClusterRole, got {len(roles)}")
else:
    got = {}
    for rule in roles[0].get("rules", []):
        if set(rule) - {"apiGroups", "resources", "verbs"}:
            err(f"ClusterRole rule {rule}: unexpected fields (resourceNames, nonResourceURLs)")
        for g in rule.get("apiGroups", []):
            for r in rule.get("resources", []):
                got.setdefault((g, r), set()).update(rule.get("verbs", []))
    if got != WANT_RULES:
        extra = {k: v - WANT_RULES.get(k, set()) for k, v in got.items() if v - WANT_RULES.get(k, set())}
        missing = {k: v - got.get(k, set()) for k, v in WANT_RULES.items() if v - got.get(k, set())}
        err(f"ClusterRole rules differ from least privilege: extra {extra}, missing {missing}")
bindings = by_kind.get("ClusterRoleBinding", [])
sas = {s["metadata"]["name"] for s in by_kind.get("ServiceAccount", [])}
for b in bindings:
    if not roles or b["roleRef"]["name"] != roles[0]["metadata"]["name"]:
        err(f"{name(b)}: roleRef does not name the ClusterRole")
    for s in b.get("subjects", []):
        if s.get("kind") != "ServiceAccount" or s.get("namespace") != namespace:
            err(f"{name(b)}: subject {s} is not a ServiceAccount in {namespace}")

# The operator Deployment.
deps = by_kind.get("Deployment", [])
if len(deps) != 1:
    err(f"want 1 Deployment, got {len(deps)}")
pod_labels = {}
container_ports = set()
# Leader election: a Role on Leases in the release namespace, bound to the ServiceAccount, and
# the flags on the container; without it, a single replica rolled with Recreate.
leader_roles = by_kind.get("Role", [])
leader_bindings = by_kind.get("RoleBinding", [])
for r in leader_roles:
    rules = [(tuple(x.get("apiGroups", [])), tuple(x.get("resources", [])), set(x.get("verbs", []))) for x in r.get("rules", [])]
    if rules != [(("coordination.k8s.io",), ("leases",), {"get", "create", "update"})]:
        err(f"{name(r)}: rules {rules}, want exactly get/create/update on coordination.k8s.io leases")
for b in leader_bindings:
    if [b["roleRef"]["name"]] != [r["metadata"]["name"] for r in leader_roles]:
        err(f"{name(b)}: roleRef does not name the leader-election Role")
for dep in deps:
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    env_values = {e["name"]: e.get("value") for e in pod["containers"][0].get("env", [])}
    electing = env_values.get("HOSTROUTER_LEADER_ELECT") == "true"
    if electing:
        if len(leader_roles) != 1 or len(leader_bindings) != 1:
            err(f"{name(dep)}: leader election needs the Lease Role and RoleBinding")
        for b in leader_bindings:
            if pod.get("serviceAccountName") not in {s.get("name") for s in b.get("subjects", [])}:
                err(f"{name(b)}: does not bind the pod's ServiceAccount")
        strategy = spec.get("strategy", {})
        if strategy.get("type") != "RollingUpdate" or strategy.get("rollingUpdate", {}).get("maxUnavailable") != 0:
            err(f"{name(dep)}: with leader election the strategy must be RollingUpdate with maxUnavailable 0")
        for var in ("HOSTROUTER_LEADER_ELECT_LEASE_NAME", "HOSTROUTER_LEADER_ELECT_LEASE_DURATION",
                    "HOSTROUTER_LEADER_ELECT_RENEW_DEADLINE", "HOSTROUTER_LEADER_ELECT_RETRY_PERIOD"):
            if not env_values.get(var):
                err(f"{name(dep)}: env {var} missing")
    else:
        if leader_roles or leader_bindings:
            err(f"{name(dep)}: a Lease Role without leader election")
        if spec.get("replicas") not in (0, 1):
            err(f"{name(dep)}: replicas {spec.get('replicas')}, want 0 or 1 without leader election")
        if spec.get("strategy", {}).get("type") != "Recreate":
            err(f"{name(dep)}: without leader election the strategy must be Recreate")
    if not subset(spec["selector"]["matchLabels"], pod_labels):
        err(f"{name(dep)}: selector does not match the pod labels")
    if pod.get("automountServiceAccountToken") is not True:
        err(f"{name(dep)}: automountServiceAccountToken must be true")
    if sas and pod.get("serviceAccountName") not in sas:
        err(f"{name(dep)}: serviceAccountName {pod.get('serviceAccountName')} is not the chart's ServiceAccount")
    for b in bindings:
        if pod.get("serviceAccountName") not in {s.get("name") for s in b.get("subjects", [])}:
            err(f"{name(b)}: does not bind the pod's ServiceAccount")
    (c,) = pod["containers"]
    if c.get("args") != ["run"]:
        err(f"{name(dep)}: args {c.get('args')}, want [run]")
    container_ports = {p.get("name") for p in c.get("ports", [])}
    env = {e["name"] for e in c.get("env", [])}
    for var in ("HOSTROUTER_GLOO_NAMESPACE", "HOSTROUTER_GLOO_XDS_PORT", "HOSTROUTER_COMPRESS_PROXY_ABOVE_BYTES",
                "HOSTROUTER_HTTP_ADDRESS", "HOSTROUTER_LOG_FORMAT", "HOSTROUTER_LOG", "HOSTROUTER_LEADER_ELECT",
                "POD_NAME", "POD_NAMESPACE"):
        if var not in env:
            err(f"{name(dep)}: env {var} missing")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        if c.get(probe, {}).get("httpGet", {}).get("path") != path:
            err(f"{name(dep)}: {probe} must httpGet {path}")
    sc = c.get("securityContext", {})
    want_sc = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
               "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    if not subset(want_sc, sc):
        err(f"{name(dep)}: container securityContext {sc} is not the restricted one {want_sc}")

# The metrics Service and the ServiceMonitor that scrapes it.
services = by_kind.get("Service", [])
for svc in services:
    if not subset(svc["spec"].get("selector"), pod_labels):
        err(f"{name(svc)}: selector does not match the operator pod labels")
    for p in svc["spec"]["ports"]:
        if isinstance(p.get("targetPort"), str) and p["targetPort"] not in container_ports:
            err(f"{name(svc)}: targetPort {p['targetPort']} is not a container port")
    if svc["metadata"].get("annotations", {}).get("hostrouter.io/exclude") != "true":
        err(f"{name(svc)}: must be annotated hostrouter.io/exclude: \"true\"")

DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
SM_SPEC_FIELDS = {"endpoints", "selector", "namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels",
                  "sampleLimit", "scrapeProtocols", "attachMetadata", "labelLimit"}
SM_ENDPOINT_FIELDS = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
                      "honorTimestamps", "metricRelabelings", "relabelings", "params", "tlsConfig",
                      "authorization", "bearerTokenSecret", "followRedirects", "enableHttp2"}
sms = by_kind.get("ServiceMonitor", [])
if len(sms) != want_sm:
    err(f"want {want_sm} ServiceMonitor, got {len(sms)}")
for sm in sms:
    spec = sm.get("spec", {})
    if sm.get("apiVersion") != "monitoring.coreos.com/v1":
        err(f"{name(sm)}: apiVersion {sm.get('apiVersion')}, want monitoring.coreos.com/v1")
    if set(sm) - {"apiVersion", "kind", "metadata", "spec"} or set(spec) - SM_SPEC_FIELDS:
        err(f"{name(sm)}: unknown fields {sorted((set(sm) - {'apiVersion', 'kind', 'metadata', 'spec'}) | (set(spec) - SM_SPEC_FIELDS))}")
    match_names = spec.get("namespaceSelector", {}).get("matchNames", [])
    targets = [s for s in services
               if s["metadata"]["namespace"] in match_names
               and subset(spec.get("selector", {}).get("matchLabels"), s["metadata"].get("labels", {}))]
    if len(targets) != 1:
        err(f"{name(sm)}: selects {len(targets)} of the chart's Services, want exactly the metrics Service")
        continue
    port_names = {p.get("name") for p in targets[0]["spec"]["ports"]}
    if not spec.get("endpoints"):
        err(f"{name(sm)}: no endpoints")
    for ep in spec.get("endpoints", []):
        if set(ep) - SM_ENDPOINT_FIELDS:
            err(f"{name(sm)}: unknown endpoint fields {sorted(set(ep) - SM_ENDPOINT_FIELDS)}")
        if ep.get("port") not in port_names:
            err(f"{name(sm)}: endpoint port {ep.get('port')!r} is not a port name of {name(targets[0])}")
        if ep.get("path") != "/metrics":
            err(f"{name(sm)}: endpoint path {ep.get('path')!r}, want /metrics")
        if ep.get("honorLabels") is not True:
            err(f"{name(sm)}: honorLabels must be true (the per-router series' namespace label)")
        for k in ("interval", "scrapeTimeout"):
            if k in ep and not DURATION.match(str(ep[k])):
                err(f"{name(sm)}: {k} {ep[k]!r} is not a Prometheus duration")

with open(out, "w") as f:
    yaml.safe_dump_all([d for d in docs if d.get("kind") != "ServiceMonitor"], f, sort_keys=False)

if errors:
    print("\n".join(f"ERROR {e}" for e in errors))
    sys.exit(1)
kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items()))
print(f"OK structure: {kinds}")
PY

# Arguments: label, ServiceMonitors wanted, dashboard ConfigMaps wanted and their namespace,
# then helm's value flags.
render_and_validate() {
  local label=$1 want_sm=$2 want_dash=$3 dash_namespace=$4
  shift 4
  step "helm template ($label) | kubernetes-validate --strict --kubernetes-version $KUBE_VERSION"
  "$HELM" template "$release" "$chart" --include-crds --namespace "$namespace" \
    --kube-version "$KUBE_VERSION" "$@" >"$work/rendered.yaml"
  "$PYTHON" "$work/check.py" "$work/rendered.yaml" "$work/validate.yaml" "$namespace" "$want_sm" \
    "$want_dash" "$dash_namespace" "$chart/dashboards/hostrouter.json" ||
    fail "structural checks failed for $label"
  local out rc=0
  out=$("$KUBERNETES_VALIDATE" --strict --kubernetes-version "$KUBE_VERSION" "$work/validate.yaml" 2>&1) || rc=$?
  echo "$out" | sed 's|'"$work"'/validate.yaml|<render>|'
  if [[ $rc -ne 0 ]] || grep -qE '^(WARN|ERROR|FATAL)' <<<"$out"; then
    fail "kubernetes-validate rejected the $label render (or found an object it has no schema for)"
  fi
}

render_and_validate "default values" 0 0 -
render_and_validate "metrics.serviceMonitor.enabled=true" 1 0 - --set metrics.serviceMonitor.enabled=true
render_and_validate "grafanaDashboard.enabled=true" 0 1 "$namespace" --set grafanaDashboard.enabled=true
render_and_validate "hack/testdata/full-values.yaml" 1 1 monitoring -f "$testdata/full-values.yaml"
render_and_validate "replicaCount=3 with leader election" 0 0 - --set replicaCount=3
render_and_validate "leaderElection.enabled=false" 0 0 - --set leaderElection.enabled=false

# ---------------------------------------------------------------------------------------------
step "config/samples: demo-services.yaml | kubernetes-validate --strict; HostRouters against the CRD schema"
samples=$root/config/samples
out=$("$KUBERNETES_VALIDATE" --strict --kubernetes-version "$KUBE_VERSION" "$samples/demo-services.yaml" 2>&1) || {
  echo "$out"
  fail "kubernetes-validate rejected config/samples/demo-services.yaml"
}
echo "$out"
grep -qE '^(WARN|ERROR|FATAL)' <<<"$out" && fail "kubernetes-validate could not validate config/samples/demo-services.yaml"
"$HELM" template "$release" "$chart" --include-crds --namespace "$namespace" \
  --kube-version "$KUBE_VERSION" >"$work/rendered.yaml"
"$PYTHON" - "$work/rendered.yaml" "$samples"/*.yaml <<'PY' || fail "a HostRouter sample does not match the CRD schema"
import sys

import jsonschema
import yaml

crd = next(d for d in yaml.safe_load_all(open(sys.argv[1]))
           if d and d.get("kind") == "CustomResourceDefinition" and d["metadata"]["name"] == "hostrouters.hostrouter.io")
versions = {v["name"]: v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]}


def no_unknown_fields(schema):
    # The API server prunes (drops) unknown fields; reject them here instead, so a typo in a
    # sample is an error rather than a silently ignored setting.
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        for v in schema.values():
            no_unknown_fields(v)
    elif isinstance(schema, list):
        for v in schema:
            no_unknown_fields(v)


failed = False
count = 0
for path in sys.argv[2:]:
    for d in yaml.safe_load_all(open(path)):
        if not d or d.get("kind") != "HostRouter":
            continue
        count += 1
        group, _, version = d["apiVersion"].partition("/")
        where = f"{path.rsplit('/', 1)[-1]}: {d['metadata'].get('namespace')}/{d['metadata']['name']}"
        if group != "hostrouter.io" or version not in versions:
            print(f"ERROR {where}: apiVersion {d['apiVersion']} is not served by the CRD")
            failed = True
            continue
        schema = versions[version]["properties"]["spec"]
        no_unknown_fields(schema)
        errs = list(jsonschema.Draft7Validator(schema).iter_errors(d.get("spec")))
        for e in errs:
            print(f"ERROR {where}: spec.{'.'.join(map(str, e.path))}: {e.message}")
        failed |= bool(errs)
        if not errs:
            print(f"INFO {where} passed against the CRD schema ({version})")
if count == 0:
    print("ERROR no HostRouter in config/samples")
    failed = True
sys.exit(1 if failed else 0)
PY

# ---------------------------------------------------------------------------------------------
# The schema must reject wrong values. helm 4 reports "at '/replicaCount': got string, want
# integer"; helm 3 reported "replicaCount: Invalid type. Expected: integer, given: string".
expect_rejected() {
  local label=$1 pattern=$2
  shift 2
  step "helm template ($label) must be rejected by values.schema.json"
  local rc=0
  "$HELM" template "$release" "$chart" --namespace "$namespace" --kube-version "$KUBE_VERSION" \
    "$@" >"$work/rejected.out" 2>"$work/rejected.err" || rc=$?
  if [[ $rc -eq 0 ]]; then
    fail "helm accepted $label; values.schema.json must reject it"
  fi
  if ! grep -qE "$pattern" "$work/rejected.err"; then
    cat "$work/rejected.err" >&2
    fail "helm rejected $label, but not with the schema message /$pattern/"
  fi
  echo "rejected as expected: $(grep -E "$pattern" "$work/rejected.err" | head -n 1 | sed 's/^[- ]*//')"
}

wrong_type="replicaCount.*(got string, want integer|Invalid type. Expected: integer, given: string)"
expect_rejected "hack/testdata/bad-values.yaml" "$wrong_type" -f "$testdata/bad-values.yaml"
expect_rejected "--set replicaCount=two" "$wrong_type" --set replicaCount=two
expect_rejected "--set replicaCount=-1" "replicaCount.*(minimum|greater than or equal)" --set replicaCount=-1
expect_rejected "--set replicaCount=2 --set leaderElection.enabled=false" \
  "replicaCount.*(maximum|less than or equal)" --set replicaCount=2 --set leaderElection.enabled=false
expect_rejected "--set leaderElection.leaseDuration=15" "leaseDuration.*(got number, want string|Invalid type|does not match pattern)" \
  --set leaderElection.leaseDuration=15
expect_rejected "--set leaderElection.leaseDuration=2500ms" "leaseDuration.*(does not match pattern|pattern)" \
  --set leaderElection.leaseDuration=2500ms
expect_rejected "--set grafanaDashboard.namespace=Monitoring" "namespace.*(does not match pattern|pattern)" \
  --set grafanaDashboard.enabled=true --set grafanaDashboard.namespace=Monitoring

echo "chart-check: OK"
