package raftnode

// The log kept after a snapshot holds at most half as many bytes as the
// group's live data (and at least trailingBytesFloor): a follower further
// behind is sent the snapshot, which is then at most twice the size of the
// entries it missed, and the group's disk use stays within about 1.5x its
// live data (the state file, which is also the snapshot's data, plus this
// tail). --trailing-logs bounds it in entries.
const (
	trailingBytesFloor = 1 << 20
	trailingLiveShare  = 2       // the tail holds at most live/trailingLiveShare bytes
	maxTrailingSizes   = 1 << 16 // entry sizes remembered per group
)

// boundTrailingLogs sets how many entries raft keeps when the snapshot
// being written truncates the log: raft reads the setting when it
// truncates, after the snapshot is written, on the same goroutine.
func (r *replica) boundTrailingLogs(liveBytes int64) {
	limit := max(liveBytes/trailingLiveShare, trailingBytesFloor)
	n := r.logs.TrailingWithin(limit, r.node.cfg.TrailingLogs)
	rc := r.raft.ReloadableConfig()
	if rc.TrailingLogs == n {
		return
	}
	rc.TrailingLogs = n
	if err := r.raft.ReloadConfig(rc); err != nil {
		r.node.log.Warn("bounding the log kept after a snapshot", "group", uint32(r.id), "err", err)
	}
}
