#!/usr/bin/env bash
# `make demo`: the reference scenario on this machine, left running in the background.
#
#   1. the dev cluster (etcd, kube-apiserver, kube-controller-manager; Gloo's CRDs and ours),
#      with a real node (containerd, kubelet, kube-proxy, kube-scheduler) where one can start
#      here; `dev-cluster up` says why not otherwise (HOSTROUTER_DEMO_NODE=0: no node)
#   2. config/samples/demo-services.yaml (Service default/petstore and the "shop" examples)
#   3. `dev-cluster demo-up`: Gloo v1.22.1 out of cluster in gloo-system and the sample
#      HostRouter my-cool-proxy; with the node, the operator from the chart, the petstore and
#      Envoy run as Pods (PodSecurity restricted) and Envoy answers on its Service's ClusterIP;
#      without, the operator, the petstore (on 198.51.100.7, added to lo) and Envoy (from the
#      generated Deployment and ConfigMap) run as local processes, Envoy on 127.0.0.1
#   4. what was generated, and a request through Envoy → Gloo's config → the petstore
#
#   5. with BACKEND=gateway-api (on a node): the lab's cluster DNS, Envoy Gateway from its chart,
#      and config/samples/hostrouter_gateway_api.yaml (the same Services on the Gateway API
#      backend), and a second curl through its Gateway
#
# `make demo-down` stops every process this started (by recorded pid) and removes the address.
# Expects the toolchain environment that `make demo` exports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dev_cluster() { cargo run --quiet -p hostrouter-e2e --bin dev-cluster -- "$@"; }
kubectl=${KUBECTL:-kubectl}
run() {
	echo
	echo "+ $*"
	"$@"
}

dev_cluster up
KUBECONFIG=$(dev_cluster kubeconfig)
export KUBECONFIG
k() { "$kubectl" "$@" 2> >(grep -v 'Warning: v1 Endpoints is deprecated' >&2); }

run k apply -f config/samples/demo-services.yaml
echo
echo "+ dev-cluster demo-up"
dev_cluster demo-up

run k get hostrouters -A
run k get proxies.gloo.solo.io -A
run k -n default get configmap/my-cool-proxy-envoy-bootstrap deployment/my-cool-proxy service/my-cool-proxy service/petstore endpoints/petstore
run k -n default get hostrouter my-cool-proxy -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}){"\n"}{end}'
if node=$(dev_cluster node); then
	run k get pods -A -o wide
else
	echo "(EnvoyAvailable/Ready stay False: $node; the Deployment's Envoy runs as a local process instead)"
fi

url=$(dev_cluster demo-url)
echo
echo "+ curl -sS -H 'Host: default-petstore-8080' $url/api/pets"
curl -sS --fail-with-body -H 'Host: default-petstore-8080' "$url/api/pets"
echo

# BACKEND=gateway-api: the same Services through the Gateway API backend and Envoy Gateway.
if gateway_url=$(dev_cluster demo-url gateway); then
	run k get gateways,httproutes -A
	run k -n default get hostrouter my-gateway -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}){"\n"}{end}'
	echo
	echo "+ curl -sS -H 'Host: default-petstore-8080' $gateway_url/api/pets   # through Envoy Gateway"
	curl -sS --fail-with-body -H 'Host: default-petstore-8080' "$gateway_url/api/pets"
	echo
fi

echo
echo "Everything keeps running (make demo-status). Use the cluster with:"
echo "  export KUBECONFIG=$KUBECONFIG"
echo "  curl -H 'Host: default-petstore-8080' $url/api/pets"
echo "Stop it all with: make demo-down"
