#!/usr/bin/env bash
# `make demo`: the reference scenario on this machine, left running in the background.
#
#   1. the dev cluster (etcd, kube-apiserver, kube-controller-manager; Gloo's CRDs and ours)
#   2. config/samples/demo-services.yaml (Service default/petstore and the "shop" examples)
#   3. `dev-cluster demo-up`: Gloo v1.22.1 out of cluster in gloo-system (Settings and the
#      `gloo` Service first), the operator, the petstore backend on 198.51.100.7 (an address it
#      adds to lo: the API server refuses 127.0.0.1 in Endpoints) with Endpoints for
#      default/petstore, the sample HostRouter my-cool-proxy (listener bound to 127.0.0.1), and
#      Envoy run from the generated Deployment and ConfigMap
#   4. what was generated, and a request through Envoy → Gloo's config → the petstore
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
echo "(EnvoyAvailable/Ready stay False: the Deployment has no kubelet to run it; its Envoy runs as a local process instead)"

port=$(k -n default get hostrouter my-cool-proxy -o jsonpath='{.spec.listener.port}')
echo
echo "+ curl -sS -H 'Host: default-petstore-8080' http://127.0.0.1:$port/api/pets"
curl -sS --fail-with-body -H 'Host: default-petstore-8080' "http://127.0.0.1:$port/api/pets"
echo

echo
echo "Everything keeps running (make demo-status). Use the cluster with:"
echo "  export KUBECONFIG=$KUBECONFIG"
echo "  curl -H 'Host: default-petstore-8080' http://127.0.0.1:$port/api/pets"
echo "Stop it all with: make demo-down"
