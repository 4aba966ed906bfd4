package raftnode

// SetListPage makes lists ask groups for pages of at most entries keys and
// bytes bytes, so that tests page through little data; it returns the
// undo.
func SetListPage(entries, bytes int) (undo func()) {
	e, b := listPageEntries, listPageBytes
	listPageEntries, listPageBytes = entries, bytes
	return func() { listPageEntries, listPageBytes = e, b }
}
