# The controller image: the governor binary and the shipped policy bundles
# (loaded with --bundles=/policies). Build: docker build -t governor:latest .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/governor ./cmd/governor

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/governor /governor
COPY policies /policies
USER 65532:65532
ENTRYPOINT ["/governor"]
