// Package e2e holds end-to-end tests: real ringkvd and ringkv binaries,
// built once per run, as separate processes on 127.0.0.1.
package e2e
