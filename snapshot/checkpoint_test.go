package snapshot

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func mustCheckpoint(t testing.TB, h Header, image []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	h.Size = uint64(len(image))
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(image); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	image := bytes.Repeat([]byte("ringkv"), 1000)
	raw := mustCheckpoint(t, Header{Group: 3, Index: 42, Term: 7, Keys: 9}, image)
	r, err := NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, image) {
		t.Fatal("image differs after round trip")
	}
	h := r.Header()
	if h.Group != 3 || h.Index != 42 || h.Term != 7 || h.Keys != 9 || h.Size != uint64(len(image)) || h.Version != FormatVersion {
		t.Errorf("Header() = %+v", h)
	}
}

func TestDamageIsDetected(t *testing.T) {
	image := bytes.Repeat([]byte{0xab}, 4096)
	raw := mustCheckpoint(t, Header{Group: 1, Index: 5}, image)
	tests := []struct {
		name string
		mod  func([]byte) []byte
		want error
	}{
		{"flipped image byte", func(b []byte) []byte { b[HeaderSize+100] ^= 1; return b }, ErrCorrupt},
		{"flipped header byte", func(b []byte) []byte { b[20] ^= 1; return b }, ErrCorrupt},
		{"truncated image", func(b []byte) []byte { return b[:HeaderSize+10] }, ErrCorrupt},
		{"missing digest", func(b []byte) []byte { return b[:len(b)-5] }, ErrCorrupt},
		{"not a checkpoint", func(b []byte) []byte { b[0] = 'X'; return b }, ErrBadMagic},
		{"empty", func(b []byte) []byte { return nil }, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mod(append([]byte(nil), raw...))
			r, err := NewReader(bytes.NewReader(b))
			if err == nil {
				_, err = io.ReadAll(r)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriterRefusesWrongSize(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Header{Size: 4})
	if _, err := w.Write([]byte("12345")); !errors.Is(err, ErrSize) {
		t.Errorf("oversize Write = %v, want ErrSize", err)
	}
	w.Write([]byte("12"))
	if err := w.Close(); !errors.Is(err, ErrSize) {
		t.Errorf("short Close = %v, want ErrSize", err)
	}
}

func FuzzReader(f *testing.F) {
	f.Add(mustCheckpoint(f, Header{Group: 1, Index: 2}, []byte("abc")))
	f.Add([]byte("RKVCKPT\x00garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		got, err := io.ReadAll(r)
		if err == nil && uint64(len(got)) != r.Header().Size {
			t.Fatalf("accepted image of %d bytes, header says %d", len(got), r.Header().Size)
		}
	})
}
