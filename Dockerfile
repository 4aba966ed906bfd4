# A ringkv node: the static ringkvd and ringkv binaries and nothing else.
# `make image` builds them with CGO_ENABLED=0 into build/ and uses build/ as
# the context, since no base image can be pulled here. With a registry, a
# one-stage build works too:
#   FROM golang:1.26 AS build
#   WORKDIR /src
#   COPY . .
#   RUN CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /out/ ./cmd/ringkvd ./cmd/ringkv
#   FROM scratch
#   COPY --from=build /out/ /
FROM scratch
COPY ringkvd ringkv /
VOLUME /data
EXPOSE 7070 7071
ENTRYPOINT ["/ringkvd", "--data-dir", "/data", "--http-addr", "0.0.0.0:7070", "--raft-addr", "0.0.0.0:7071"]
