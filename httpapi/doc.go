// Package httpapi is ringkv's REST API: routes declared once (routes.go),
// handlers that parse, make one call to the Backend and respond, and one
// table mapping errors to statuses (errors.go). Values travel as raw bodies;
// everything else, errors included, is JSON.
package httpapi
