// Package bench is ringkv's closed-loop workload generator: a fixed number
// of clients, each sending its next request as soon as the last one is
// answered, against one or more nodes through package client. It records
// every latency in a log-linear histogram (about 1.6% precision from 1 µs
// to an hour) and reports throughput, errors and percentiles per
// operation. `ringkv bench` drives it.
package bench
