// Package acl decides who may read, write and operate.
//
// A policy is a list of key-prefix rules (deny, read or write; write
// implies read) and an operator level (none, read or write). A token names
// policies; a request carries a token's secret. The rules of all of a
// token's policies are merged: for a key, the longest prefix that matches
// it decides, and where policies give the same prefix different access,
// the more permissive wins (as Consul's key_prefix rules do). A key no rule
// matches is denied. A management token may do everything.
//
// The package is pure logic on values: the cluster layout holds policies
// and tokens (replicated through the metadata group, secrets only as
// hashes), and the HTTP layer compiles an Authorizer per token and asks it
// per request. Standard library only.
package acl
