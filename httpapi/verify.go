package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/verify"
)

func (a *API) verifyAll(w http.ResponseWriter, r *http.Request) error {
	return a.verify(w, r, func(ctx context.Context, o verify.Options) ([]api.GroupVerification, error) {
		return a.b.VerifyAll(ctx, o)
	})
}

func (a *API) verifyGroup(w http.ResponseWriter, r *http.Request) error {
	id, err := groupParam(r)
	if err != nil {
		return err
	}
	return a.verify(w, r, func(ctx context.Context, o verify.Options) ([]api.GroupVerification, error) {
		v, err := a.b.Verify(ctx, id, o)
		return []api.GroupVerification{v}, err
	})
}

// verify reads the options, runs fn under the verification's deadline and
// answers whether every group agrees.
func (a *API) verify(w http.ResponseWriter, r *http.Request, fn func(context.Context, verify.Options) ([]api.GroupVerification, error)) error {
	o, err := verifyOptions(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), verifyTimeout(o))
	defer cancel()
	if o.Deep {
		extendDeadlines(w) // a deep verification reads all the data
	}
	vs, err := fn(ctx, o)
	if err != nil {
		return err
	}
	body := api.Verification{Agree: true, Groups: vs}
	for _, v := range vs {
		body.Agree = body.Agree && v.Agree
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// verifyOptions reads ?repair=false, which reports a divergent replica
// without reinstalling it, and ?deep=false, which compares only the trees
// kept alongside the data instead of recomputing every root from it.
func verifyOptions(r *http.Request) (verify.Options, error) {
	o := verify.Options{Deep: true}
	for _, p := range []struct {
		name string
		dst  *bool
		neg  bool
	}{{"repair", &o.NoRepair, true}, {"deep", &o.Deep, false}} {
		if r.URL.Query().Get(p.name) == "" {
			continue
		}
		v, err := boolParam(r, p.name)
		if err != nil {
			return o, err
		}
		*p.dst = v != p.neg
	}
	return o, nil
}

// verifyTimeout bounds a verification: a deep one reads all the data.
func verifyTimeout(o verify.Options) time.Duration {
	if o.Deep {
		return 10 * time.Minute
	}
	return 60 * time.Second
}

func (a *API) snapshot(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	res, err := a.b.SnapshotAll(ctx)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.Snapshots{Groups: res})
	return nil
}
