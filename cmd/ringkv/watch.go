package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/client"
)

// watchCmd is ringkv watch PREFIX.
func watchCmd(a *app) *cobra.Command {
	var o client.WatchOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "watch [PREFIX]",
		Short: "Print the changes under a prefix as they are committed, until Ctrl-C",
		Long: `watch prints every change under PREFIX (every key without one) as it is
committed, in order for each key, across every group: one line per change,
or one JSON object with --json. A stream that breaks is opened again from
its last position, through another node with --endpoints.

--since CURSOR resumes right after the change whose cursor it is (a JSON
line's "cursor"; the last one is printed on standard error when watch
ends); --initial first prints every key under PREFIX as a put.`,
		Args: args(0, 1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			prefix := ""
			if len(pos) == 1 {
				prefix = pos[0]
			}
			if o.Initial && o.Since != "" {
				return errors.New("--initial starts from the current state; it does not go with --since")
			}
			return a.long(cmd, func(ctx context.Context, c *client.Client, out io.Writer) error {
				return printWatch(ctx, c.Watch(ctx, prefix, o), out, cmd.ErrOrStderr(), asJSON)
			})
		},
	}
	cmd.Flags().StringVar(&o.Since, "since", "", "resume right after the change with this cursor")
	cmd.Flags().BoolVar(&o.Initial, "initial", false, "first print every key under the prefix as a put")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per change: the event and its cursor")
	return cmd
}

// watchLine is a change as --json prints it.
type watchLine struct {
	api.WatchEvent
	Cursor string `json:"cursor"`
}

// printWatch prints events until the watch ends, then says on errOut
// where to resume; an end other than Ctrl-C is an error.
func printWatch(ctx context.Context, events <-chan client.WatchEvent, out, errOut io.Writer, asJSON bool) error {
	enc := json.NewEncoder(out)
	last := ""
	for ev := range events {
		if ev.Err != nil {
			if last != "" {
				fmt.Fprintf(errOut, "resume with: --since %s\n", last)
			}
			if ctx.Err() != nil {
				return nil
			}
			return ev.Err
		}
		last = ev.Cursor
		if asJSON {
			if err := enc.Encode(watchLine{WatchEvent: ev.WatchEvent, Cursor: ev.Cursor}); err != nil {
				return err
			}
			continue
		}
		key := ev.Key
		if ev.KeyBase64 != nil {
			key = strconv.Quote(string(ev.KeyBase64))
		}
		line := fmt.Sprintf("%s %s", ev.Type, key)
		if ev.Type == api.EventPut {
			v := string(ev.Value)
			if !utf8.ValidString(v) || strconv.Quote(v) != `"`+v+`"` {
				v = strconv.Quote(v)
			}
			line += " " + v
		}
		if _, err := fmt.Fprintf(out, "%s\t(index %d, group %d)\n", line, ev.Index, ev.Group); err != nil {
			return err
		}
	}
	return nil
}
