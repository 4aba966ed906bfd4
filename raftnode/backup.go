package raftnode

import (
	"context"
	"io"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/backup"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/verify"
)

// Backup writes a backup archive of every group to w: see backup.Backup.
// Temporary files go under dir.
func (n *Node) Backup(ctx context.Context, dir string, w io.Writer) (snapshot.Manifest, error) {
	return backup.Backup(ctx, backupCluster{n}, dir, w)
}

// Restore loads a backup archive read from r into the cluster, all or
// nothing: see backup.Restore. Temporary files go under dir.
func (n *Node) Restore(ctx context.Context, dir string, r io.Reader, o backup.Options) (backup.RestoreReport, error) {
	return backup.Restore(ctx, backupCluster{n}, dir, r, o)
}

// backupCluster is the node as the backup and restore driver sees it.
type backupCluster struct{ n *Node }

var _ backup.Run = (*restoreRun)(nil)

func (c backupCluster) Layout() *layout.Layout { return c.n.Layout() }

func (c backupCluster) FetchCheckpoint(ctx context.Context, g base.GroupID, start func() (io.Writer, error)) error {
	return c.n.fetchCheckpoint(ctx, g, 0, start)
}

func (c backupCluster) BeginRestore(ctx context.Context, cancel context.CancelFunc) (backup.Run, error) {
	run, err := c.n.beginRestore(ctx, cancel)
	if err != nil {
		return nil, err
	}
	return run, nil
}

func (c backupCluster) Verify(ctx context.Context, g base.GroupID, o verify.Options) (api.GroupVerification, error) {
	return c.n.Verify(ctx, g, o)
}

func (c backupCluster) List(ctx context.Context, after []byte, limit int, keysOnly bool) ([]protocol.KV, error) {
	return c.n.List(ctx, ListOptions{After: after, Limit: limit, KeysOnly: keysOnly})
}

func (c backupCluster) BeforeInstall(g base.GroupID) error {
	if hook := c.n.cfg.Knobs.OnRestoreInstall; hook != nil {
		return hook(g)
	}
	return nil
}

func (c backupCluster) Stopping() <-chan struct{} { return c.n.ctx.Done() }
