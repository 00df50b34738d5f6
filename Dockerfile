# licd in a container: a static musl binary built in a Rust image, copied into an empty
# image. ring (through rustls) is the one dependency with C code; musl-tools compiles it.
#   docker build -t licd .
#   docker compose -f docs/deploy/compose.yaml up     (three nodes, see that file)
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin licd \
    && mkdir -p /out/data \
    && cp target/x86_64-unknown-linux-musl/release/licd /out/licd

FROM scratch
COPY --from=build /out/licd /licd
# The data directory, owned by the unprivileged user the node runs as.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV LICD_DATA_DIR=/data LICD_LOG_FORMAT=json
VOLUME /data
EXPOSE 7101
ENTRYPOINT ["/licd"]
CMD ["serve"]
