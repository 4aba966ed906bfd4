// Package chaos checks ringkv the way Jepsen checks etcd: concurrent
// clients record every invocation and response, faults are injected, and
// each key's history is checked for linearizability with porcupine against
// a model of a key-value register with compare-and-swap.
//
// An operation whose outcome is unknown (a timeout, a cut connection, a 504)
// is recorded as such: the checker may place its effect anywhere after its
// call, or nowhere. An operation the server refused (4xx, 503) is recorded as
// having had no effect, which holds ringkv to its promise that a refused
// write changed nothing.
package chaos
