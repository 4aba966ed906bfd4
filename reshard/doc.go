// Package reshard is the ring-change driver (the mover): while its node
// leads the metadata group, it carries the change the metadata group
// records out, transfer by transfer (copy while the source serves, fence
// the source, copy what changed, compare digests, flip, drop the source's
// copies), recording every phase so that a new leader carries on from
// there, or undoes an aborted change. It reaches the cluster through the
// Cluster interface, which the core node implements; the scans, fences,
// ingests and drops run in the core, on each group's leader.
package reshard
