package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func testManifest(t testing.TB, files map[string][]byte) *Manifest {
	t.Helper()
	m := &Manifest{Format: ArchiveFormat, Created: time.Unix(1700000000, 0).UTC(), RingEpoch: 3, Ring: []byte(`{"epoch":3}`)}
	for _, id := range []uint32{1, 2} {
		root := sha256.Sum256([]byte{byte(id)})
		g := ManifestGroup{ID: id, Index: 10 * uint64(id), Keys: 5, Root: hex.EncodeToString(root[:]), TreeDepth: 4}
		for _, f := range []*File{&g.Checkpoint, &g.Tree} {
			name := CheckpointName(id)
			if f == &g.Tree {
				name = TreeName(id)
			}
			body := []byte(strings.Repeat(name, int(id)))
			sum := sha256.Sum256(body)
			*f = File{Name: name, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:])}
			files[name] = body
		}
		m.Groups = append(m.Groups, g)
	}
	var err error
	if m.Root, err = m.ComputeRoot(); err != nil {
		t.Fatal(err)
	}
	return m
}

func writeArchive(t testing.TB, m *Manifest, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	aw, err := NewArchiveWriter(&buf, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range m.Groups {
		for _, f := range []File{g.Checkpoint, g.Tree} {
			if err := aw.AddFile(f.Name, f.Size, bytes.NewReader(files[f.Name])); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestArchiveRoundTrip(t *testing.T) {
	files := map[string][]byte{}
	m := testManifest(t, files)
	ar, err := NewArchiveReader(bytes.NewReader(writeArchive(t, m, files)))
	if err != nil {
		t.Fatal(err)
	}
	if ar.Manifest.Root != m.Root || len(ar.Manifest.Groups) != 2 || ar.Manifest.Groups[1].Index != 20 {
		t.Fatalf("manifest read back as %+v", ar.Manifest)
	}
	got := map[string][]byte{}
	for {
		name, r, err := ar.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if got[name], err = io.ReadAll(r); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range files {
		if !bytes.Equal(got[name], body) {
			t.Fatalf("%s read back as %q, want %q", name, got[name], body)
		}
	}
}

func TestArchiveManifestIsChecked(t *testing.T) {
	for name, spoil := range map[string]func(m *Manifest){
		"root":      func(m *Manifest) { m.Root = strings.Repeat("0", 64) },
		"group":     func(m *Manifest) { m.Groups[0].Root = m.Groups[1].Root },
		"duplicate": func(m *Manifest) { m.Groups[1].ID = 1 },
		"format":    func(m *Manifest) { m.Format = 99 },
		"names":     func(m *Manifest) { m.Groups[0].Tree = m.Groups[0].Checkpoint },
		"empty":     func(m *Manifest) { m.Groups = nil },
	} {
		t.Run(name, func(t *testing.T) {
			files := map[string][]byte{}
			m := testManifest(t, files)
			spoil(m)
			_, err := NewArchiveReader(bytes.NewReader(writeArchive(t, m, files)))
			if !errors.Is(err, ErrBadArchive) {
				t.Fatalf("spoiled %s: got %v, want ErrBadArchive", name, err)
			}
		})
	}
	if _, err := NewArchiveReader(strings.NewReader("not a tar")); !errors.Is(err, ErrBadArchive) {
		t.Fatalf("garbage: got %v, want ErrBadArchive", err)
	}
}

func FuzzArchiveReader(f *testing.F) {
	files := map[string][]byte{}
	f.Add(writeArchive(f, testManifest(f, files), files))
	f.Add([]byte("manifest.json"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ar, err := NewArchiveReader(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrBadArchive) {
				t.Fatalf("error outside ErrBadArchive: %v", err)
			}
			return
		}
		if err := ar.Manifest.Validate(); err != nil {
			t.Fatalf("accepted an invalid manifest: %v", err)
		}
		for {
			_, r, err := ar.Next()
			if err != nil {
				return
			}
			io.Copy(io.Discard, r)
		}
	})
}
