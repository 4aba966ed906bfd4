//go:build ringkv_broken

package httpapi

import "os"

// Deliberately broken change streams, for tests of the fault-injection
// harness only; compiled in with -tags ringkv_broken and chosen with
// RINGKV_BROKEN:
//
//	watch-drop    every brokenWatchEvery-th change is left out of a stream
//	              (its cursor still moves past it)
//	watch-repeat  every brokenWatchEvery-th change is sent twice
var (
	brokenWatchDrop   = os.Getenv("RINGKV_BROKEN") == "watch-drop"
	brokenWatchRepeat = os.Getenv("RINGKV_BROKEN") == "watch-repeat"
)
