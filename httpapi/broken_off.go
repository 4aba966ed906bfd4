//go:build !ringkv_broken

package httpapi

// Release builds cannot break their change streams (see broken_on.go).
const (
	brokenWatchDrop   = false
	brokenWatchRepeat = false
)
