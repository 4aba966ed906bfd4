package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// FormatVersion is the checkpoint format version this package writes.
const FormatVersion = 2

// HeaderSize is the encoded size of a Header.
const HeaderSize = 8 + 4 + 4 + 8 + 8 + 8 + 8 + 32 + 4

// DigestSize is the size of the trailer.
const DigestSize = sha256.Size

var magic = [8]byte{'R', 'K', 'V', 'C', 'K', 'P', 'T', 0}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors returned when decoding a checkpoint.
var (
	// ErrBadMagic means the stream is not a ringkv checkpoint.
	ErrBadMagic = errors.New("snapshot: not a ringkv checkpoint")
	// ErrVersion means the checkpoint was written by an unknown format version.
	ErrVersion = errors.New("snapshot: unsupported checkpoint version")
	// ErrCorrupt means a checksum did not match or the stream was truncated.
	ErrCorrupt = errors.New("snapshot: checkpoint corrupt")
	// ErrSize means the image written does not match the header's size.
	ErrSize = errors.New("snapshot: image size does not match header")
)

// Header describes a checkpoint's image.
type Header struct {
	Version uint32
	Group   uint32
	Index   uint64
	Term    uint64
	Keys    uint64
	Size    uint64
	// Root is the Merkle root of the image's entries (see Tree).
	Root Digest
}

// MarshalBinary encodes h, stamping the current FormatVersion.
func (h Header) MarshalBinary() ([]byte, error) {
	b := make([]byte, HeaderSize)
	copy(b, magic[:])
	binary.BigEndian.PutUint32(b[8:], FormatVersion)
	binary.BigEndian.PutUint32(b[12:], h.Group)
	binary.BigEndian.PutUint64(b[16:], h.Index)
	binary.BigEndian.PutUint64(b[24:], h.Term)
	binary.BigEndian.PutUint64(b[32:], h.Keys)
	binary.BigEndian.PutUint64(b[40:], h.Size)
	copy(b[48:80], h.Root[:])
	binary.BigEndian.PutUint32(b[80:], crc32.Checksum(b[:80], castagnoli))
	return b, nil
}

// UnmarshalBinary decodes a header, checking magic, version and CRC.
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) < HeaderSize {
		return fmt.Errorf("%w: header is %d bytes, want %d", ErrCorrupt, len(b), HeaderSize)
	}
	if !bytes.Equal(b[:8], magic[:]) {
		return ErrBadMagic
	}
	if got, want := crc32.Checksum(b[:80], castagnoli), binary.BigEndian.Uint32(b[80:]); got != want {
		return fmt.Errorf("%w: header checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	v := binary.BigEndian.Uint32(b[8:])
	if v != FormatVersion {
		return fmt.Errorf("%w: %d", ErrVersion, v)
	}
	*h = Header{
		Version: v,
		Group:   binary.BigEndian.Uint32(b[12:]),
		Index:   binary.BigEndian.Uint64(b[16:]),
		Term:    binary.BigEndian.Uint64(b[24:]),
		Keys:    binary.BigEndian.Uint64(b[32:]),
		Size:    binary.BigEndian.Uint64(b[40:]),
	}
	copy(h.Root[:], b[48:80])
	return nil
}

// Writer writes one checkpoint. It is not safe for concurrent use.
type Writer struct {
	w       io.Writer
	h       Header
	digest  hash.Hash
	written uint64
}

// NewWriter writes h's header to w and returns a Writer for exactly h.Size
// bytes of image.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	b, _ := h.MarshalBinary()
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	return &Writer{w: w, h: h, digest: sha256.New()}, nil
}

// Write appends image bytes.
func (cw *Writer) Write(p []byte) (int, error) {
	if cw.written+uint64(len(p)) > cw.h.Size {
		return 0, fmt.Errorf("%w: more than %d bytes", ErrSize, cw.h.Size)
	}
	n, err := cw.w.Write(p)
	cw.digest.Write(p[:n])
	cw.written += uint64(n)
	return n, err
}

// Close writes the trailer. It fails if fewer than Size bytes were written.
// It does not close the underlying writer.
func (cw *Writer) Close() error {
	if cw.written != cw.h.Size {
		return fmt.Errorf("%w: wrote %d of %d bytes", ErrSize, cw.written, cw.h.Size)
	}
	_, err := cw.w.Write(cw.digest.Sum(nil))
	return err
}

// Reader reads one checkpoint's image, verifying its digest at the end.
type Reader struct {
	r      io.Reader
	h      Header
	digest hash.Hash
	left   uint64
	done   bool
}

// NewReader reads and checks a checkpoint header from r.
func NewReader(r io.Reader) (*Reader, error) {
	b := make([]byte, HeaderSize)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: short header", ErrCorrupt)
		}
		return nil, err
	}
	var h Header
	if err := h.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return &Reader{r: r, h: h, digest: sha256.New(), left: h.Size}, nil
}

// Header returns the checkpoint's header.
func (cr *Reader) Header() Header { return cr.h }

// Read returns image bytes. At the end of the image it reads the trailer and
// returns io.EOF only if the digest matches, ErrCorrupt otherwise.
func (cr *Reader) Read(p []byte) (int, error) {
	if cr.left == 0 {
		if !cr.done {
			if err := cr.finish(); err != nil {
				return 0, err
			}
		}
		return 0, io.EOF
	}
	if uint64(len(p)) > cr.left {
		p = p[:cr.left]
	}
	n, err := cr.r.Read(p)
	cr.digest.Write(p[:n])
	cr.left -= uint64(n)
	if errors.Is(err, io.EOF) {
		if cr.left > 0 {
			return n, fmt.Errorf("%w: image truncated, %d bytes missing", ErrCorrupt, cr.left)
		}
		err = nil
	}
	return n, err
}

func (cr *Reader) finish() error {
	var sum [DigestSize]byte
	if _, err := io.ReadFull(cr.r, sum[:]); err != nil {
		return fmt.Errorf("%w: missing digest", ErrCorrupt)
	}
	if !bytes.Equal(sum[:], cr.digest.Sum(nil)) {
		return fmt.Errorf("%w: image digest mismatch", ErrCorrupt)
	}
	cr.done = true
	return nil
}
