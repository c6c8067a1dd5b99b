# Kubecord's images, from one build stage:
#
#   docker build -t kubecord:dev .                          # kubecord <service> (the default target)
#   docker build --target worker -t kubecord-ping:dev .     # the example worker (examples/ping)
#   docker build --build-arg VERSION=v0.1.0 -t kubecord:v0.1.0 .
#
# Both final images are FROM scratch: a static binary, CA certificates (to
# reach Discord over HTTPS), a writable /tmp for when no volume is mounted
# there, and a non-root user. kubecord-probe is the docker-compose health
# check, since scratch has no shell or curl (see deploy/probe).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
# Dependencies first, in their own layer, so that a source change does not
# download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=
RUN go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/kubecord ./cmd/kubecord \
 && go build -trimpath -ldflags="-s -w" -o /out/ping ./examples/ping \
 && cd deploy && go build -trimpath -ldflags="-s -w" -o /out/kubecord-probe ./probe \
 && mkdir -p /out/tmp && chmod 1777 /out/tmp

# The example worker: answers !ping and /ping through the REST service. It is
# configured from KUBECORD_GATEWAYS, KUBECORD_REST_ADDR, KUBECORD_STATE_ADDR,
# KUBECORD_GROUP and KUBECORD_AUTH_SECRET.
FROM scratch AS worker
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/tmp /tmp
COPY --from=build /out/ping /ping
USER 65532:65532
ENTRYPOINT ["/ping"]

# kubecord: one binary runs every service ("kubecord gateway", "kubecord rest",
# "kubecord state", ...). Last, so that it is what a plain `docker build` makes.
FROM scratch AS kubecord
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/tmp /tmp
COPY --from=build /out/kubecord /kubecord
COPY --from=build /out/kubecord-probe /kubecord-probe
USER 65532:65532
# gRPC ports of gateway, rest and state, the REST passthrough, and their
# metrics ports (/metrics, /healthz, /readyz). Each service binds loopback
# unless given --listen 0.0.0.0:PORT and --metrics-listen 0.0.0.0:PORT.
EXPOSE 7001 7002 7003 7080 9001 9002 9003
ENTRYPOINT ["/kubecord"]
