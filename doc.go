// Package ringkv is a strongly consistent, horizontally partitioned
// key-value database. The code lives in the packages below this one: ring,
// store, snapshot, raftnode, httpapi, client and the commands under cmd/.
// This package holds only the test that keeps the dependency arrows honest.
package ringkv
