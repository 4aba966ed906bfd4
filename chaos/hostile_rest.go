package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ringkv/ringkv/client"
)

// refused checks that a request was answered with status and code.
func refused(err error, status int, code string) (string, error) {
	var e *client.Error
	if !errors.As(err, &e) {
		if err == nil {
			return "accepted", fmt.Errorf("accepted; want %d %s", status, code)
		}
		return err.Error(), fmt.Errorf("%v; want %d %s", err, status, code)
	}
	got := fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	if e.Status != status || e.Code != code {
		return got, fmt.Errorf("answered %d %s; want %d %s", e.Status, e.Code, status, code)
	}
	return got, nil
}

// restCase sends one REST request that every node must refuse.
func restCase(name, method, path string, body interface{}, status int, code string) hostileCase {
	return hostileCase{name: name, run: func(ctx context.Context, h *hostile) (string, string, error) {
		sent := method + " " + path
		if body != nil {
			sent += " " + string(mustJSON(body))
		}
		var got []string
		for _, c := range h.nodes {
			err := c.DoJSON(ctx, method, path, body, nil)
			g, ferr := refused(err, status, code)
			got = append(got, g)
			if ferr != nil {
				return sent, strings.Join(got, "; "), fmt.Errorf("%s: %w", c.Addr(), ferr)
			}
		}
		return sent, got[0], nil
	}}
}

func mustJSON(v interface{}) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
