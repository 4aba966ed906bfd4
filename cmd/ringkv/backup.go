package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
)

func backupCmd(a *app) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "backup -o FILE",
		Short: "Write a backup of every group to FILE, with a progress bar and a summary",
		Long: `backup writes a consistent backup of every group to FILE: each group's
checkpoint and Merkle tree, and a manifest with their checksums and roots.
backup verify checks a backup without restoring it.`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("backup: --output (-o) FILE is required\nusage: %s", cmd.UseLine())
			}
			return a.long(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				return writeBackup(ctx, c, file, out)
			})
		},
	}
	cmd.Flags().StringVarP(&file, "output", "o", "", "the file to write (written to FILE.partial first, renamed when complete)")
	var against string
	verify := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a backup without restoring it; compare it with a live cluster",
		Long: `backup verify checks every file of the backup against its manifest and
recomputes every group's Merkle root from its checkpoint; a damaged backup
is located to its groups, key ranges and keys. With --against it compares
each group with the live cluster's tree and names what changed since.`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			var live *client.Client
			if against != "" {
				copts, err := a.options()
				if err != nil {
					return err
				}
				live = client.New(against, copts...)
				defer live.Close()
			}
			return backupVerify(cmd.Context(), pos[0], live, cmd.OutOrStdout())
		},
	}
	verify.Flags().StringVar(&against, "against", "", "URL of a node of a live cluster to compare each group with")
	cmd.AddCommand(verify)
	return cmd
}

// writeBackup streams a backup of every group into file and prints its
// summary.
func writeBackup(ctx context.Context, c *client.Client, file string, out io.Writer) error {
	body, size, err := c.Backup(ctx)
	if err != nil {
		return err
	}
	defer body.Close()
	tmp := file + ".partial"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	p := newProgress("backup", size)
	_, err = io.Copy(f, io.TeeReader(body, p))
	p.done()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(file)); err == nil {
		d.Sync()
		d.Close()
	}
	rf, err := os.Open(file)
	if err != nil {
		return err
	}
	defer rf.Close()
	ar, err := snapshot.NewArchiveReader(rf)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	m := ar.Manifest
	fmt.Fprintf(out, "backup written to %s (%d bytes), ring epoch %d, taken %s\n", file, p.n, m.RingEpoch, m.Created.Format(time.RFC3339))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tINDEX\tTERM\tKEYS\tBYTES\tMERKLE ROOT")
	var keys uint64
	for _, g := range m.Groups {
		keys += g.Keys
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%s\n", g.ID, g.Index, g.Term, g.Keys, g.Checkpoint.Size, short(g.Root))
	}
	tw.Flush()
	fmt.Fprintf(out, "%d groups, %d keys, backup root %s\n", len(m.Groups), keys, m.Root)
	return nil
}

// progress shows a transfer: a progress bar on a terminal
// (schollz/progressbar; a spinner when the size is unknown), or one line
// at the end otherwise.
type progress struct {
	what string
	n    int64
	bar  *progressbar.ProgressBar
}

func newProgress(what string, total int64) *progress {
	p := &progress{what: what}
	if isTerminal(os.Stderr) {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }))
	}
	return p
}

// isTerminal reports whether f is a terminal, where progress lines go.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.bar != nil {
		p.bar.Add64(int64(len(b)))
	}
	return len(b), nil
}

func (p *progress) done() {
	if p.bar != nil {
		p.bar.Finish()
		return
	}
	fmt.Fprintf(os.Stderr, "%s: %s transferred\n", p.what, human(p.n))
}

// human is a byte count in binary units (KiB, MiB, ...).
func human(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// backupVerify checks an archive without restoring it: every file against
// the manifest, every checkpoint's digest, every Merkle root recomputed
// from the checkpoint's entries; with against, each group is compared with
// the live cluster's tree.
func backupVerify(ctx context.Context, file string, live *client.Client, out io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	ar, err := snapshot.NewArchiveReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	m := ar.Manifest
	dir, err := os.MkdirTemp("", "ringkv-verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	specs := map[string]snapshot.File{}
	for _, g := range m.Groups {
		specs[g.Checkpoint.Name], specs[g.Tree.Name] = g.Checkpoint, g.Tree
	}
	paths := map[string]string{}
	fileErr := map[string]string{}
	for {
		name, rd, err := ar.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		spec, ok := specs[name]
		if !ok {
			return fmt.Errorf("%s: holds %q, which the manifest does not list", file, name)
		}
		p := filepath.Join(dir, strconv.Itoa(len(paths)))
		h := sha256.New()
		wf, err := os.Create(p)
		if err != nil {
			return err
		}
		n, err := io.Copy(io.MultiWriter(wf, h), rd)
		wf.Close()
		if err != nil {
			return fmt.Errorf("%s: reading %s: %w", file, name, err)
		}
		paths[name] = p
		if n != spec.Size || hex.EncodeToString(h.Sum(nil)) != spec.SHA256 {
			fileErr[name] = fmt.Sprintf("%s: %d bytes, sha256 %s; manifest: %d bytes, %s", name, n, short(hex.EncodeToString(h.Sum(nil))), spec.Size, short(spec.SHA256))
		}
	}
	bad := false
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tINDEX\tKEYS\tMERKLE ROOT\tBACKUP\tLIVE")
	var details []string
	for _, g := range m.Groups {
		state, notes := checkGroup(g, paths, fileErr, dir)
		if len(notes) > 0 {
			bad = true
		}
		details = append(details, notes...)
		liveState := ""
		if live != nil {
			ls, lnotes := compareLive(ctx, live, g, paths[g.Tree.Name], paths[g.Checkpoint.Name], dir)
			liveState = ls
			details = append(details, lnotes...)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\n", g.ID, g.Index, g.Keys, short(g.Root), state, liveState)
	}
	tw.Flush()
	for _, d := range details {
		fmt.Fprintln(out, d)
	}
	if bad {
		return errors.New("backup is damaged")
	}
	fmt.Fprintf(out, "backup %s is intact: %d groups, every checksum and Merkle root recomputed; root %s\n", file, len(m.Groups), m.Root)
	return nil
}

// checkGroup checks one group's files; it returns "ok" or "DAMAGED" and
// the details naming what and where.
func checkGroup(g snapshot.ManifestGroup, paths map[string]string, fileErr map[string]string, dir string) (string, []string) {
	var notes []string
	prefix := fmt.Sprintf("group %d: ", g.ID)
	for _, name := range []string{g.Checkpoint.Name, g.Tree.Name} {
		if _, ok := paths[name]; !ok {
			notes = append(notes, prefix+name+" missing from the archive")
		} else if e, ok := fileErr[name]; ok {
			notes = append(notes, prefix+"checksum mismatch: "+e)
		}
	}
	archived, terr := readTree(paths[g.Tree.Name])
	if terr == nil && hex.EncodeToString(rootOf(archived)) != g.Root {
		terr = errors.New("tree root differs from the manifest")
	}
	if terr != nil {
		notes = append(notes, prefix+"archived Merkle tree unusable: "+terr.Error())
		archived = nil
	}
	cf, err := os.Open(paths[g.Checkpoint.Name])
	if err != nil {
		return "DAMAGED", append(notes, prefix+"checkpoint missing")
	}
	defer cf.Close()
	img, err := store.OpenImage(cf, dir)
	if err != nil {
		return "DAMAGED", append(notes, prefix+"checkpoint unreadable, every key range of the group is suspect: "+err.Error())
	}
	defer img.Close()
	if img.DigestErr != nil {
		notes = append(notes, prefix+"checkpoint digest: "+img.DigestErr.Error())
	}
	if img.Header.Group != g.ID {
		// A checkpoint moved under another group's name (the manifest
		// made to match it) would restore one group's keys into another.
		notes = append(notes, fmt.Sprintf("%sthe checkpoint is one of group %d", prefix, img.Header.Group))
	}
	sum, err := img.Summarize()
	if err != nil {
		return "DAMAGED", append(notes, prefix+"checkpoint entries unreadable, every key range of the group is suspect: "+err.Error())
	}
	if hex.EncodeToString(rootOf(sum.Tree)) == g.Root && sum.Counted == g.Keys && len(notes) > 0 {
		notes = append(notes, prefix+"its entries still give the manifest's root: the damage is outside the live data")
	}
	if hex.EncodeToString(rootOf(sum.Tree)) != g.Root || sum.Counted != g.Keys {
		notes = append(notes, fmt.Sprintf("%sentries give root %s and %d keys; manifest: %s and %d keys", prefix, short(hex.EncodeToString(rootOf(sum.Tree))), sum.Counted, short(g.Root), g.Keys))
		if archived != nil {
			notes = append(notes, describeDiff(prefix+"damaged", sum.Tree, archived, img)...)
		}
	}
	if len(notes) > 0 {
		return "DAMAGED", notes
	}
	return "ok", nil
}

func readTree(path string) (*snapshot.Tree, error) {
	if path == "" {
		return nil, errors.New("missing")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t snapshot.Tree
	if err := t.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return &t, nil
}

func rootOf(t *snapshot.Tree) []byte {
	r := t.Root()
	return r[:]
}

// describeDiff names the leaves (key-hash ranges) where a and b differ,
// and the keys img holds in them when they are few.
func describeDiff(what string, a, b *snapshot.Tree, img *store.Image) []string {
	leaves, hashes, err := snapshot.DiffLevels(a, b)
	if err != nil {
		return []string{what + ": " + err.Error()}
	}
	notes := []string{fmt.Sprintf("%s: %d key range(s) differ (%d hashes compared):", what, len(leaves), hashes)}
	for i, l := range leaves {
		if i == 16 {
			notes = append(notes, fmt.Sprintf("  ... and %d more", len(leaves)-16))
			break
		}
		lo, hi := a.LeafRange(l)
		notes = append(notes, fmt.Sprintf("  leaf %d: key hashes %016x-%016x", l, lo, hi))
	}
	if img != nil && len(leaves) > 0 && len(leaves) <= 16 {
		es, err := img.LeafEntries(a.Depth(), leaves)
		if err == nil {
			for i, e := range es {
				if i == 32 {
					notes = append(notes, "  ...")
					break
				}
				notes = append(notes, fmt.Sprintf("  key %q (modify index %d)", e.Key, e.ModifyIndex))
			}
		}
	}
	return notes
}

// compareLive compares a group of the backup with the live cluster's tree.
func compareLive(ctx context.Context, live *client.Client, g snapshot.ManifestGroup, treePath, ckptPath, dir string) (string, []string) {
	prefix := fmt.Sprintf("group %d vs live", g.ID)
	archived, err := readTree(treePath)
	if err != nil {
		return "?", []string{prefix + ": archived tree unusable: " + err.Error()}
	}
	lt, err := live.GroupTree(ctx, uint32(g.ID))
	if err != nil {
		return "?", []string{prefix + ": " + err.Error()}
	}
	t, err := snapshot.NewTree(lt.Depth)
	if err != nil || len(lt.Leaves) != t.Leaves() {
		return "?", []string{prefix + ": malformed tree from the cluster"}
	}
	for i, l := range lt.Leaves {
		var d snapshot.Digest
		copy(d[:], l)
		t.SetLeaf(i, d)
	}
	if t.Root() == archived.Root() {
		return fmt.Sprintf("equal at %d", lt.Index), nil
	}
	var img *store.Image
	if f, err := os.Open(ckptPath); err == nil {
		if img, err = store.OpenImage(f, dir); err == nil {
			defer img.Close()
		}
		f.Close()
	}
	return fmt.Sprintf("changed at %d", lt.Index), describeDiff(prefix+fmt.Sprintf(": changed since the backup (live index %d); backup's keys in those ranges", lt.Index), archived, t, img)
}

func restoreCmd(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Load a backup into a cluster, all or nothing, and prove it holds the backup's data",
		Long: `restore loads a backup into the cluster. With the backup's ring it installs
every group's checkpoint; otherwise it writes the keys onto this cluster's
ring. Either way it proves the cluster then holds exactly the backup's data
(every Merkle root, or a digest of every key and value). A cluster that
holds keys needs --force.`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			return a.long(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				return restore(ctx, c, pos[0], force, out)
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "restore into a cluster that holds keys (checkpoint mode replaces them, rehash mode merges)")
	return cmd
}

// restore sends the archive in file and prints the restore's proof.
func restore(ctx context.Context, c *client.Client, file string, force bool, out io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	p := newProgress("restore", st.Size())
	rep, err := c.Restore(ctx, io.TeeReader(f, p), force)
	p.done()
	if err != nil {
		return err
	}
	switch rep.Mode {
	case "checkpoint":
		fmt.Fprintf(out, "restored %d keys group by group (same ring as the backup)\n", rep.Keys)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tKEYS\tBACKUP ROOT\tROOT NOW\tINDEX\tEQUAL")
		for _, g := range rep.Groups {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%s\n", g.Group, g.Keys, short(g.BackupRoot), short(g.Root), g.Index, yesNo(g.Agree))
		}
		tw.Flush()
	default:
		fmt.Fprintf(out, "restored %d keys re-hashed onto this cluster's ring\n", rep.Keys)
		fmt.Fprintf(out, "keys and values in the backup:  %d, digest %s\n", rep.Keys, rep.BackupDigest)
		fmt.Fprintf(out, "keys and values in the cluster: %d, digest %s\n", rep.ClusterKeys, rep.ClusterDigest)
	}
	if !rep.Identical {
		return errors.New("the restored data does not match the backup")
	}
	fmt.Fprintln(out, "proved: the cluster holds exactly the backup's data")
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}
