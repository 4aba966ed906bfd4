// Package store is ringkv's per-group state machine: a deterministic,
// index-aware key-value store on bbolt.
//
// Every mutation arrives as an encoded Command at an explicit Raft index, so
// the store needs no Raft to be tested. Applying is deterministic: no clock,
// no randomness, and results depend only on the prior state, the index and
// the command. The last applied index is written in the same bbolt
// transaction as the data it covers, and entries at or below it are skipped,
// so replaying a log tail after a restart (or after a crash between the data
// commit and Raft's bookkeeping) never applies a command twice.
//
// Each key keeps its create index and modify index (the Raft index of the
// entry that last wrote it); compare-and-swap compares against the modify
// index, and a CAS outcome is a value in the Result, not an error.
//
// Concurrency: Apply, ApplyBatch, Snapshot and Restore are called from one
// goroutine (Raft's FSM goroutine). Get, Scan, AppliedIndex and Changed may
// be called from any goroutine at any time.
package store
