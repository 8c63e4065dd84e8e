# syntax=docker/dockerfile:1
#
# HostRouter operator image: a static (musl) `hostrouter` binary on distroless.
#
#   docker build -t ghcr.io/hostrouter/hostrouter:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#
# The builder is pinned to the Rust release the project is developed with; the crate's MSRV is
# lower (rust-version in Cargo.toml).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGET=x86_64-unknown-linux-musl
# musl-tools provides musl-gcc for the C and assembly parts of `ring` (rustls' crypto provider).
# The crate uses rustls, so no OpenSSL is needed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
WORKDIR /src

# 1. Dependencies only, with stub sources, so this layer stays cached until Cargo.toml,
#    Cargo.lock or e2e/Cargo.toml change. The workspace has members "." and "e2e": both
#    manifests are needed for `--locked`, but only the `hostrouter` binary is built.
COPY Cargo.toml Cargo.lock ./
COPY e2e/Cargo.toml e2e/Cargo.toml
RUN mkdir -p src e2e/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs e2e/src/lib.rs \
 && cargo build --release --locked --target "${TARGET}" --bin hostrouter \
 && rm -rf src

# 2. The operator itself. Touch the sources so cargo rebuilds the crate over the stub even if the
#    copied files carry older modification times.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target "${TARGET}" --bin hostrouter \
 && cp "target/${TARGET}/release/hostrouter" /hostrouter \
 && /hostrouter --help >/dev/null

# Static binary, no shell, no package manager; "nonroot" is uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="hostrouter" \
      org.opencontainers.image.description="Kubernetes operator that routes every Service of the selected namespaces by Host header through a Gloo-programmed Envoy edge" \
      org.opencontainers.image.source="https://github.com/hostrouter/hostrouter" \
      org.opencontainers.image.url="https://github.com/hostrouter/hostrouter" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=builder /hostrouter /hostrouter
USER 65532:65532
# /metrics, /healthz and /readyz (--http-address, default 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/hostrouter"]
CMD ["run"]
