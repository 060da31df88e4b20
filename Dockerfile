# syntax=docker/dockerfile:1
# mesh-registry container image: build with `docker build -t mesh-registry:0.1.0 .`
# (helm/mesh-registry runs it). Multi-stage: a Rust toolchain builds the release binary, and the
# final image is distroless (glibc and libgcc, no shell, no package manager) running as the
# non-root user 65532.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The whole workspace: the manifest names the bench and test targets, and the migrations are
# embedded into the binary at compile time.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin mesh-registry \
 && install -D -m 0755 target/release/mesh-registry /out/mesh-registry

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/mesh-registry /usr/local/bin/mesh-registry
USER 65532:65532
# PORT (the public API) and MCP_MESH_ADMIN_PORT as the chart sets them.
EXPOSE 8000 9000
# `mesh-registry` and `mesh-registry serve` are the same command; the operator CLI
# (`mesh-registry registry drain ...`) is the same binary, which is what the chart's preStop runs.
ENTRYPOINT ["/usr/local/bin/mesh-registry"]
CMD ["serve"]
