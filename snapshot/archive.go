package snapshot

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"
)

// A backup archive is a tar stream: manifest.json first, then for every
// group its checkpoint (groups/<id>.ckpt) and its Merkle tree
// (groups/<id>.tree, see Tree.MarshalBinary). The manifest names every
// file with its size and SHA-256, so damage is found before anything is
// restored, and the trees let a verifier name the key ranges a damaged or
// changed checkpoint covers.

// ManifestName is the manifest's file name inside an archive.
const ManifestName = "manifest.json"

// ArchiveFormat is the manifest format this package writes.
const ArchiveFormat = 1

// ErrBadArchive is returned for an archive that cannot be read as a backup.
var ErrBadArchive = errors.New("snapshot: malformed backup archive")

// Manifest describes a backup archive.
type Manifest struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
	// RingEpoch and Ring are the ring layout the backup was taken under
	// (Ring as the cluster serialises it).
	RingEpoch uint64          `json:"ring_epoch"`
	Ring      json.RawMessage `json:"ring,omitempty"`
	Groups    []ManifestGroup `json:"groups"`
	// Root covers every group's id and root; see ComputeRoot.
	Root string `json:"root"`
}

// ManifestGroup is one group's entry in a manifest.
type ManifestGroup struct {
	ID         uint32 `json:"id"`
	Index      uint64 `json:"index"`
	Term       uint64 `json:"term"`
	Keys       uint64 `json:"keys"`
	Root       string `json:"root"`
	TreeDepth  int    `json:"tree_depth"`
	Checkpoint File   `json:"checkpoint"`
	Tree       File   `json:"tree"`
}

// File is one file of an archive.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ComputeRoot is the root over all group roots: SHA-256 of, for each group
// in id order, its id (4 bytes big-endian) and its 32-byte root.
func (m *Manifest) ComputeRoot() (string, error) {
	gs := append([]ManifestGroup(nil), m.Groups...)
	sort.Slice(gs, func(i, j int) bool { return gs[i].ID < gs[j].ID })
	h := sha256.New()
	for _, g := range gs {
		root, err := hex.DecodeString(g.Root)
		if err != nil || len(root) != sha256.Size {
			return "", fmt.Errorf("%w: group %d root %q", ErrBadArchive, g.ID, g.Root)
		}
		var id [4]byte
		binary.BigEndian.PutUint32(id[:], g.ID)
		h.Write(id[:])
		h.Write(root)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Validate checks a manifest read from an archive.
func (m *Manifest) Validate() error {
	if m.Format != ArchiveFormat {
		return fmt.Errorf("%w: manifest format %d (want %d)", ErrBadArchive, m.Format, ArchiveFormat)
	}
	if len(m.Groups) == 0 {
		return fmt.Errorf("%w: no groups", ErrBadArchive)
	}
	seen := map[uint32]bool{}
	for _, g := range m.Groups {
		if seen[g.ID] {
			return fmt.Errorf("%w: group %d listed twice", ErrBadArchive, g.ID)
		}
		seen[g.ID] = true
		if g.Checkpoint.Name != CheckpointName(g.ID) || g.Tree.Name != TreeName(g.ID) {
			return fmt.Errorf("%w: group %d file names", ErrBadArchive, g.ID)
		}
	}
	root, err := m.ComputeRoot()
	if err != nil {
		return err
	}
	if root != m.Root {
		return fmt.Errorf("%w: manifest root %s, groups give %s", ErrBadArchive, m.Root, root)
	}
	return nil
}

// CheckpointName and TreeName are a group's file names in an archive.
func CheckpointName(g uint32) string { return fmt.Sprintf("groups/%d.ckpt", g) }

// TreeName is the name of group g's Merkle tree file.
func TreeName(g uint32) string { return fmt.Sprintf("groups/%d.tree", g) }

// ArchiveWriter writes a backup archive: the manifest, then the files it
// lists, in any order.
type ArchiveWriter struct {
	tw      *tar.Writer
	modTime time.Time
}

// NewArchiveWriter starts an archive on w with the manifest.
func NewArchiveWriter(w io.Writer, m *Manifest) (*ArchiveWriter, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	aw := &ArchiveWriter{tw: tar.NewWriter(w), modTime: m.Created}
	if err := aw.add(ManifestName, int64(len(b))); err != nil {
		return nil, err
	}
	if _, err := aw.tw.Write(b); err != nil {
		return nil, err
	}
	return aw, nil
}

func (aw *ArchiveWriter) add(name string, size int64) error {
	return aw.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: aw.modTime, Typeflag: tar.TypeReg, Format: tar.FormatPAX})
}

// AddFile writes one file of exactly size bytes read from r.
func (aw *ArchiveWriter) AddFile(name string, size int64, r io.Reader) error {
	if err := aw.add(name, size); err != nil {
		return err
	}
	n, err := io.Copy(aw.tw, io.LimitReader(r, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("snapshot: archive file %s: %d of %d bytes", name, n, size)
	}
	return nil
}

// Close ends the archive.
func (aw *ArchiveWriter) Close() error { return aw.tw.Close() }

// ArchiveReader reads a backup archive.
type ArchiveReader struct {
	tr       *tar.Reader
	Manifest Manifest
}

// maxManifest bounds the manifest's size.
const maxManifest = 16 << 20

// NewArchiveReader reads and validates the manifest at the start of r.
func NewArchiveReader(r io.Reader) (*ArchiveReader, error) {
	ar := &ArchiveReader{tr: tar.NewReader(r)}
	h, err := ar.tr.Next()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadArchive, err)
	}
	if h.Name != ManifestName || h.Size > maxManifest || h.Size < 0 {
		return nil, fmt.Errorf("%w: first file is %q, want %s", ErrBadArchive, h.Name, ManifestName)
	}
	b, err := io.ReadAll(io.LimitReader(ar.tr, h.Size))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrBadArchive, err)
	}
	if err := json.Unmarshal(b, &ar.Manifest); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrBadArchive, err)
	}
	if err := ar.Manifest.Validate(); err != nil {
		return nil, err
	}
	return ar, nil
}

// Next returns the next file's name and contents; io.EOF at the end.
func (ar *ArchiveReader) Next() (string, io.Reader, error) {
	h, err := ar.tr.Next()
	if errors.Is(err, io.EOF) {
		return "", nil, io.EOF
	}
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrBadArchive, err)
	}
	return h.Name, ar.tr, nil
}
