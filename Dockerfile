# syntax=docker/dockerfile:1
#
# binlog-kinesis container image: build with
#   docker build -t binlog-kinesis:0.1.0 .
# The runtime image is distroless (glibc, CA certificates, no shell, no package manager) and
# runs as the unprivileged user 65532. The binary is PID 1 and receives SIGTERM directly: it
# drains, writes its checkpoint and exits 0 (keep shutdown.drain_timeout_ms below the
# orchestrator's stop timeout). Every setting comes from BINLOG_KINESIS__SECTION__KEY
# environment variables; see README.md and ecs-task.json.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The registry and target caches only speed up rebuilds; the binary is copied out of them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin binlog-kinesis \
    && install -D -m 0755 target/release/binlog-kinesis /out/binlog-kinesis \
    && install -d -m 0700 /out/state

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/binlog-kinesis /usr/local/bin/binlog-kinesis
# Where the file checkpoint goes by default; mount a volume (EFS on Fargate) here, or use
# BINLOG_KINESIS__CHECKPOINT__URL=s3://bucket/key.
COPY --from=build --chown=65532:65532 /out/state /var/lib/binlog-kinesis
USER 65532:65532
ENV BINLOG_KINESIS__LOG__FORMAT=json
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/binlog-kinesis", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/binlog-kinesis"]
CMD ["run"]
