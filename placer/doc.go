// Package placer is the replica placement driver: while its node leads
// the metadata group, it records the move the placement rule
// (layout.NextMove) names, steps the group's leader through it (non-voter,
// catch up, promote, hand leadership off, remove the source), undoes a
// move whose destination stopped answering or being eligible, and evicts
// a node that has finished leaving. It reaches the cluster through the
// Cluster interface, which the core node implements; the steps themselves
// run in the core, on the group's leader.
package placer
