package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/rs/cors"
)

// Cross-origin requests. A page served from another origin (a dashboard,
// a browser's EventSource on /v1/watch/) may call the API only when the
// node names that origin (--cors-origins); otherwise the browser refuses
// it. Tokens travel in headers, never in cookies, so credentials are not
// allowed: a page must hold the token itself, as any client does.

// corsRequestHeaders are the request headers a page may send.
var corsRequestHeaders = []string{"Authorization", hdrToken, "Content-Type", "Last-Event-ID"}

// corsExposedHeaders are the answer headers a page may read.
var corsExposedHeaders = []string{hdrKVIndex, hdrKVCursor, hdrGroup, hdrRaftIndex, hdrRaftTerm, hdrServedBy,
	"X-Ring-Epoch", "X-Merkle-Root", "X-Backup-Root", "X-Backup-Groups", "Retry-After"}

// ValidateOrigins checks a list of CORS origins: "*" (any origin), or
// scheme://host[:port] with http or https, where the host may start with
// "*." for its subdomains. A bare host or a path is refused: a browser
// sends neither, so such an entry would match nothing.
func ValidateOrigins(origins []string) error {
	for _, o := range origins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(strings.Replace(o, "*.", "wildcard.", 1))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("CORS origin %q: want * or scheme://host[:port], as a browser sends it (https://app.example.com, http://localhost:3000, https://*.example.com)", o)
		}
		if strings.Count(o, "*") > 1 || (strings.Contains(o, "*") && !strings.Contains(o, "://*.")) {
			return fmt.Errorf("CORS origin %q: a * may only start the host, as in https://*.example.com", o)
		}
	}
	return nil
}

// withCORS answers the origins in origins (none: h as it is).
func withCORS(origins []string, h http.Handler) http.Handler {
	if len(origins) == 0 {
		return h
	}
	trimmed := make([]string, len(origins))
	for i, o := range origins {
		trimmed[i] = strings.TrimSuffix(o, "/")
	}
	return cors.New(cors.Options{
		AllowedOrigins: trimmed,
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete},
		AllowedHeaders: corsRequestHeaders,
		ExposedHeaders: corsExposedHeaders,
		MaxAge:         600,
	}).Handler(h)
}
