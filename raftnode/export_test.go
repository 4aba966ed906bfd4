package raftnode

// SetListPage makes lists ask groups for pages of at most entries keys and
// bytes bytes, so that tests page through little data; it returns the
// undo.
func SetListPage(entries, bytes int) (undo func()) {
	e, b := listPageEntries.Swap(int64(entries)), listPageBytes.Swap(int64(bytes))
	return func() { listPageEntries.Store(e); listPageBytes.Store(b) }
}

// SetScanBounds sets the most a scan page answers and the most an unpaged
// scan answers before it is refused; it returns the undo.
func SetScanBounds(page, unpaged int) (undo func()) {
	p, u := maxScanPage.Swap(int64(page)), maxUnpagedScan.Swap(int64(unpaged))
	return func() { maxScanPage.Store(p); maxUnpagedScan.Store(u) }
}

// StateMarkSize is the size of a data group's snapshot: a mark, no data.
const StateMarkSize = stateMarkSize
