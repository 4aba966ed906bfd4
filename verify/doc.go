// Package verify is the verification and repair driver: it puts a
// verification entry through a group's log so that every replica records
// its Merkle root at the same index, compares the roots, locates a
// divergent replica's differences subtree by subtree (naming the keys when
// they are few), and asks the divergent replica to reinstall its state
// from the leader. It reaches the cluster only through the Cluster
// interface, which the core node implements; the replica side (recording
// roots, serving trees, reinstalling) stays in the core.
package verify
