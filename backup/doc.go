// Package backup is the backup and restore driver. Backup takes a
// checkpoint of every group from its leader, checks each against its
// Merkle root and writes them, with their trees and a manifest, as one
// archive (package snapshot's format). Restore reads such an archive into
// a cluster, all or nothing, under the cluster's restore lock: it checks
// every file, fences every group, installs the checkpoints (same ring) or
// re-hashes every key onto the target's ring, proves the result, and on
// any failure puts every group back as it was. It reaches the cluster
// through the Cluster and Run interfaces, which the core node implements
// (the lock, the fences and the installs are the core's).
package backup
