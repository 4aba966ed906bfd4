package httpapi

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/ringkv/ringkv/backup"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/snapshot"
)

// bulkTimeout bounds a backup, a restore or a checkpoint transfer; their
// connections get it instead of the server's short read and write timeouts.
const bulkTimeout = 30 * time.Minute

func bulk(w http.ResponseWriter, r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithDeadline(r.Context(), extendDeadlines(w))
}

// extendDeadlines lifts the server's read and write timeouts for this
// connection to bulkTimeout from now, and returns that deadline.
func extendDeadlines(w http.ResponseWriter) time.Time {
	rc := http.NewResponseController(w)
	dl := time.Now().Add(bulkTimeout)
	_ = rc.SetReadDeadline(dl)
	_ = rc.SetWriteDeadline(dl)
	return dl
}

// backup answers GET /v1/backup with a backup archive of every group. The
// archive is assembled in a temporary file first, so its length is known
// and a failure is answered as an error rather than a truncated stream.
func (a *API) backup(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := bulk(w, r)
	defer cancel()
	f, err := os.CreateTemp(a.cfg.TempDir, "backup-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	m, err := a.b.Backup(ctx, a.cfg.TempDir, f)
	if err != nil {
		return err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-tar")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="ringkv-%s.tar"`, m.Created.Format("20060102T150405Z")))
	h.Set("X-Backup-Root", m.Root)
	h.Set("X-Backup-Groups", strconv.Itoa(len(m.Groups)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		if _, err := io.Copy(w, f); err != nil {
			a.log.Warn("backup: sending the archive", "err", err)
		}
	}
	return nil
}

// restore answers POST /v1/restore: the body is a backup archive.
func (a *API) restore(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := bulk(w, r)
	defer cancel()
	force, err := boolParam(r, "force")
	if err != nil {
		return err
	}
	rep, err := a.b.Restore(ctx, a.cfg.TempDir, r.Body, backup.Options{Force: force})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func boolParam(r *http.Request, name string) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, badRequest(name + ": want true or false")
	}
	return b, nil
}

func groupParam(r *http.Request) (base.GroupID, error) {
	id, err := strconv.ParseUint(mux.Vars(r)["id"], 10, 32)
	if err != nil || id == 0 || id > uint64(layout.MaxGroupID) {
		return 0, badRequest(fmt.Sprintf("group id %q: want an integer from 1 to %d", mux.Vars(r)["id"], layout.MaxGroupID))
	}
	return base.GroupID(id), nil
}

// checkpoint answers the internal GET of a group leader's checkpoint.
func (a *API) checkpoint(w http.ResponseWriter, r *http.Request) error {
	g, err := groupParam(r)
	if err != nil {
		return err
	}
	var minIndex uint64
	if s := r.URL.Query().Get("min_index"); s != "" {
		if minIndex, err = strconv.ParseUint(s, 10, 64); err != nil {
			return badRequest("min_index: want a non-negative integer")
		}
	}
	ctx, cancel := bulk(w, r)
	defer cancel()
	err = a.b.ServeCheckpoint(ctx, g, minIndex, func(h snapshot.Header) io.Writer {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatUint(uint64(snapshot.HeaderSize)+h.Size+snapshot.DigestSize, 10))
		w.Header().Set("X-Raft-Index", strconv.FormatUint(h.Index, 10))
		w.Header().Set("X-Merkle-Root", hex.EncodeToString(h.Root[:]))
		w.WriteHeader(http.StatusOK)
		return w
	})
	if err != nil && w.Header().Get("X-Raft-Index") == "" {
		return err
	}
	if err != nil {
		a.log.Warn("checkpoint: sending", "group", uint32(g), "err", err)
	}
	return nil
}

// restoreGroup answers the internal POST of a checkpoint for the group
// leader to restore through Raft.
func (a *API) restoreGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := groupParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	term, err := strconv.ParseUint(q.Get("fence_term"), 10, 64)
	if err != nil || term == 0 {
		return fmt.Errorf("%w: fence_term must be the restore's metadata term", base.ErrBadRequest)
	}
	ctx, cancel := bulk(w, r)
	defer cancel()
	idx, err := a.b.RestoreCheckpoint(ctx, g, r.Body, raftnode.RestoreFence{ID: q.Get("restore"), Term: term})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{"group": g, "index": idx})
	return nil
}

// tree answers GET /v1/groups/{id}/merkle: the group's Merkle tree at a
// verification index.
func (a *API) tree(w http.ResponseWriter, r *http.Request) error {
	g, err := groupParam(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	t, err := a.b.Tree(ctx, g)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}
