package raftnode

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter bridges hashicorp/raft's hclog.Logger onto slog, so that one
// structured logger carries every line.
type hclogAdapter struct {
	l     *slog.Logger
	name  string
	level hclog.Level
	args  []interface{}
}

func newHCLog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{l: l.With("component", name), name: name, level: hclog.Info}
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...interface{}) {
	if level < a.level && level != hclog.NoLevel {
		return
	}
	a.l.Log(context.Background(), toSlog(level), msg, append(a.args, args...)...)
}
func (a *hclogAdapter) Trace(msg string, args ...interface{}) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...interface{}) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...interface{})  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...interface{})  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...interface{}) { a.Log(hclog.Error, msg, args...) }
func (a *hclogAdapter) IsTrace() bool                         { return a.level <= hclog.Trace }
func (a *hclogAdapter) IsDebug() bool                         { return a.level <= hclog.Debug }
func (a *hclogAdapter) IsInfo() bool                          { return a.level <= hclog.Info }
func (a *hclogAdapter) IsWarn() bool                          { return a.level <= hclog.Warn }
func (a *hclogAdapter) IsError() bool                         { return a.level <= hclog.Error }
func (a *hclogAdapter) ImpliedArgs() []interface{}            { return a.args }
func (a *hclogAdapter) With(args ...interface{}) hclog.Logger {
	c := *a
	c.args = append(append([]interface{}{}, a.args...), args...)
	return &c
}
func (a *hclogAdapter) Name() string { return a.name }
func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	c.name = a.name + "." + name
	c.l = a.l.With("sub", name)
	return &c
}
func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}
func (a *hclogAdapter) SetLevel(level hclog.Level) { a.level = level }
func (a *hclogAdapter) GetLevel() hclog.Level      { return a.level }
func (a *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(a.l.Handler(), slog.LevelInfo)
}
func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return a.StandardLogger(nil).Writer()
}
