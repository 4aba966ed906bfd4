package api

import "github.com/ringkv/ringkv/base"

// RingChangeStarted answers a ring change (POST /v1/ring/groups, DELETE
// /v1/ring/groups/{id}, PUT /v1/ring/groups/{id}/weight, DELETE
// /v1/ring/migration): the change started, in words with the group id the
// cluster chose, and the ring as it is now (its Migration names the epoch
// the change leads to).
type RingChangeStarted struct {
	Started string `json:"started"`
	RingInfo
}

// SnapshotResult reports a forced snapshot of one replica of the answering
// node (POST /v1/snapshot answers {"groups": [...]}).
type SnapshotResult struct {
	Group base.GroupID `json:"group"`
	Index uint64       `json:"index,omitempty"`
	Taken bool         `json:"taken"`
	Note  string       `json:"note,omitempty"`
}

// Snapshots is the answer of POST /v1/snapshot.
type Snapshots struct {
	Groups []SnapshotResult `json:"groups"`
}

// RestoredGroup reports one group restored from its checkpoint.
type RestoredGroup struct {
	Group base.GroupID `json:"group"`
	Keys  uint64       `json:"keys"`
	// BackupRoot is the root in the archive; Root the group's root when
	// verified after the restore, at Index.
	BackupRoot string `json:"backup_root"`
	Root       string `json:"root"`
	Index      uint64 `json:"index"`
	Agree      bool   `json:"agree"`
}

// RestoreReport says what a restore did and proves it (POST /v1/restore).
type RestoreReport struct {
	// Mode is "checkpoint" when the target's ring matched the backup's and
	// every group's state was installed as it was, or "rehash" when the
	// keys were written onto the target's ring one by one.
	Mode   string          `json:"mode"`
	Keys   uint64          `json:"keys"`
	Groups []RestoredGroup `json:"groups,omitempty"`
	// BackupDigest and ClusterDigest (rehash mode) cover the set of keys
	// and values: in the archive, and read back from the cluster after.
	BackupDigest  string `json:"backup_digest,omitempty"`
	ClusterDigest string `json:"cluster_digest,omitempty"`
	ClusterKeys   uint64 `json:"cluster_keys,omitempty"`
	// Identical is the proof: every root agrees (checkpoint mode) or the
	// digests and counts match (rehash mode).
	Identical bool `json:"identical"`
}
