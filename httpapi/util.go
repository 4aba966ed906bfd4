package httpapi

import (
	"bytes"
	"errors"
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

// readBody reads a request body of at most limit bytes, chunked or not;
// what names it in a 413.
func readBody(w http.ResponseWriter, r *http.Request, what string, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		// Refused before a byte is read: a client that sent
		// "Expect: 100-continue" is never invited to send it, and the
		// connection closes rather than drain it.
		w.Header().Set("Connection", "close")
		return nil, &errTooLarge{what: what, size: r.ContentLength, limit: limit}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, &errTooLarge{what: what, size: r.ContentLength, limit: limit}
		}
		return nil, badRequest("reading body: " + err.Error())
	}
	return b, nil
}
