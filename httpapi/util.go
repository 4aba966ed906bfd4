package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func parseQuery(r *http.Request) (url.Values, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("query string is not valid: " + err.Error())
	}
	return v, nil
}
