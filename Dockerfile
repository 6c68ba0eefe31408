# Two stages: compile the single executable, then run it on a slim Debian as UID 1000.
# Build: docker build -t otedge .   Run: docker run -p 8080:8080 -v otedge-data:/data otedge
FROM denoland/deno:debian-2.9.6 AS build
WORKDIR /src
COPY deno.json deno.lock ./
COPY main.ts ./
COPY src ./src
COPY config ./config
COPY scripts ./scripts
RUN deno task build

FROM debian:bookworm-slim
RUN useradd --uid 1000 --create-home otedge && mkdir -p /data /etc/otedge && chown otedge /data
COPY --from=build /src/dist/otedge /usr/local/bin/otedge
COPY config/config.yaml /etc/otedge/config.yaml
USER 1000
ENV CONNECTOR_DATA_DIR=/data CONNECTOR_HTTP_HOST=0.0.0.0
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD ["/usr/local/bin/otedge", "--version"]
ENTRYPOINT ["/usr/local/bin/otedge"]
CMD ["run", "--config", "/etc/otedge/config.yaml"]
