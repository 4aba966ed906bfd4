// Package api holds the wire types of ringkv's HTTP API that the server
// and the Go client share: one definition of each, so that the two cannot
// drift. It uses the standard library, base and ring (a plan lists ring ranges)
// only, as the client does.
package api
