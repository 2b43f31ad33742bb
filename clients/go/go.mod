module github.com/advantage-service/advantage-service/clients/go

// The versions Debian 12 packages (golang-google-grpc-dev, golang-google-protobuf-dev); the offline
// build (./go-offline.sh) uses those packages in GOPATH mode and ignores this file.
go 1.19

require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
