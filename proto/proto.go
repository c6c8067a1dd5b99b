// Package proto holds Kubecord's protobuf contract: the .proto sources under kubecord/ (built by
// buf into gen/) and tests that check the contract's own conventions, which buf lint cannot
// express: snowflakes are fixed64, permissions uint64, timestamps google.protobuf.Timestamp,
// every typed event has its case in the Event envelope, inline fields are well formed, and every
// service and RPC is documented.
//
// Regenerate gen/ after editing a .proto file with:
//
//	go tool -modfile=tools/go.mod buf generate
package proto
