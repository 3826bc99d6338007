// Package server is Conclave's public gRPC face: KVService and ClusterService, the
// interceptors around them (panic recovery, request logging, Prometheus metrics, the
// request size limit), grpc.health.v1, reflection, and the /metrics HTTP endpoint.
//
// Handlers are thin, as in etcd's v3rpc: validate the request (validate.go), build a
// command or a read, call the Node, map any error through the one table in errors.go,
// and fill the response header. Bad input is rejected here and never reaches the raft
// log.
//
// The package must not hold state of its own beyond serving plumbing, must not decide
// anything the state machine decides, and imports cluster/ only for its error
// sentinels: the services talk to a node through the small Node interface declared here.
package server
