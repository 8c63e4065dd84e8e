#!/usr/bin/env bash
# `make demo`: brings up the local dev cluster (left running in the background) and
# shows that it serves. Placeholder: the demo scenario (install the chart, create a
# HostRouter, send requests through Envoy) goes after the cluster checks.
# Expects the toolchain environment that `make demo` exports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dev_cluster() { cargo run --quiet -p hostrouter-e2e --bin dev-cluster -- "$@"; }

dev_cluster up
KUBECONFIG=$(dev_cluster kubeconfig)
export KUBECONFIG
kubectl=${KUBECTL:-kubectl}

echo
echo "+ kubectl get --raw /version"
"$kubectl" get --raw /version
echo
echo "+ kubectl get crds"
"$kubectl" get crds

echo
echo "The cluster keeps running. Use it with:"
echo "  export KUBECONFIG=$KUBECONFIG"
echo "Stop it with: make demo-down"
