package raftnode

// SetListPage makes lists ask groups for pages of at most entries keys and
// bytes bytes, so that tests page through little data; it returns the
// undo.
func SetListPage(entries, bytes int) (undo func()) {
	e, b := listPageEntries, listPageBytes
	listPageEntries, listPageBytes = entries, bytes
	return func() { listPageEntries, listPageBytes = e, b }
}

// SetScanBounds sets the most a scan page answers and the most an unpaged
// scan answers before it is refused; it returns the undo.
func SetScanBounds(page, unpaged int) (undo func()) {
	p, u := maxScanPage, maxUnpagedScan
	maxScanPage, maxUnpagedScan = page, unpaged
	return func() { maxScanPage, maxUnpagedScan = p, u }
}
