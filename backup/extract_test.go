package backup

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/snapshot"
)

// An archive member longer than the manifest says is refused while it
// streams: what reaches the disk stops one byte past the manifest's size,
// not at the member's end.
func TestExtractArchiveChecksSizesWhileStreaming(t *testing.T) {
	root := strings.Repeat("ab", 32)
	m := snapshot.Manifest{Format: snapshot.ArchiveFormat, Groups: []snapshot.ManifestGroup{{ID: 1, Root: root,
		Checkpoint: snapshot.File{Name: snapshot.CheckpointName(1), Size: 10},
		Tree:       snapshot.File{Name: snapshot.TreeName(1), Size: 10}}}}
	var err error
	if m.Root, err = m.ComputeRoot(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	aw, err := snapshot.NewArchiveWriter(&buf, &m)
	if err != nil {
		t.Fatal(err)
	}
	huge := int64(4 << 20)
	if err := aw.AddFile(snapshot.CheckpointName(1), huge, bytes.NewReader(make([]byte, huge))); err != nil {
		t.Fatal(err)
	}
	aw.Close()
	ar, err := snapshot.NewArchiveReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	files, err := extractArchive(ar, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "longer than the 10 bytes the manifest gives it") {
		t.Fatalf("extracting a member longer than its manifest entry: %v", err)
	}
	fi, serr := os.Stat(files[snapshot.CheckpointName(1)])
	if serr != nil || fi.Size() > 11 {
		t.Fatalf("the member reached the disk: %v, %d bytes", serr, fi.Size())
	}
}
