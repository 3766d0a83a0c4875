// Package tally records how a Go program is used into the program's local Tally store,
// through Tally's C ABI (crates/tally-ffi): the same settings, consent, levels, keyed
// hashing and store as the Rust SDK, so `tally --app APP stats` shows a Go program's
// usage like any other's.
//
// Build the C library first, from the repository root:
//
//	cargo build --release -p tally-ffi
//
// It is linked statically from target/release; nothing else is needed at run time.
//
//	t, err := tally.Open("nexus", "1.4.2")
//	if err != nil { ... }            // a bad app name or option; never "telemetry is off"
//	defer t.Close()
//	cmd := t.Command("workspace create")
//	cmd.Workspace(name)              // stored only as a keyed hash
//	t.Track("workspace", "workspace_created", tally.Workspace(name), tally.Prop("template", "go"))
//	cmd.Success()
//
// A *Telemetry is safe to use from many goroutines at once. Recording never blocks on
// the disk: events are buffered and written by a background thread, and Close waits
// for them at most the shutdown timeout (100 ms by default). When the user turned
// telemetry off (DO_NOT_TRACK, <APP>_TELEMETRY=off, `tally --app APP off`), Open
// succeeds and every call does nothing.
package tally

/*
#cgo CFLAGS: -I${SRCDIR}/../../crates/tally-ffi/include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -l:libtally_ffi.a -lpthread -ldl -lm
#include <stdlib.h>
#include "tally.h"
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// ABIVersion is the version of the C ABI this package was written against.
const ABIVersion = 1

// Code says what kind of failure an *Error is.
type Code int

// The failures the C ABI reports (TallyStatus in tally.h).
const (
	CodeNullArgument    Code = C.TALLY_STATUS_NULL_ARGUMENT
	CodeInvalidUTF8     Code = C.TALLY_STATUS_INVALID_UTF8
	CodeInvalidEvent    Code = C.TALLY_STATUS_INVALID_EVENT
	CodeInvalidArgument Code = C.TALLY_STATUS_INVALID_ARGUMENT
	CodeUnknownHandle   Code = C.TALLY_STATUS_UNKNOWN_HANDLE
	CodeTimeout         Code = C.TALLY_STATUS_TIMEOUT
	CodeInternal        Code = C.TALLY_STATUS_INTERNAL
)

// Error is a failure reported by Tally, with its message naming the field and the rule.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return "tally: " + e.Message }

// Is lets errors.Is match an *Error by its code: errors.Is(err, tally.ErrInvalidEvent).
func (e *Error) Is(target error) bool {
	var other *Error
	return errors.As(target, &other) && other.Message == "" && other.Code == e.Code
}

// Errors to compare with errors.Is.
var (
	// ErrInvalidEvent: an event breaks a rule (a name that is not an identifier,
	// nested props, an unknown field); nothing was recorded.
	ErrInvalidEvent = &Error{Code: CodeInvalidEvent}
	// ErrInvalidArgument: an app name or option is unusable.
	ErrInvalidArgument = &Error{Code: CodeInvalidArgument}
	// ErrClosed: the Telemetry was closed, or the command already finished.
	ErrClosed = &Error{Code: CodeUnknownHandle}
	// ErrTimeout: Flush did not finish within the shutdown timeout.
	ErrTimeout = &Error{Code: CodeTimeout}
)

// call runs one C function and reads its error on the same OS thread: the C ABI keeps
// the last error per thread, and a goroutine may otherwise move between the two.
func call(f func() C.TallyStatus) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	status := f()
	if status == C.TALLY_STATUS_OK {
		return nil
	}
	return &Error{Code: Code(status), Message: C.GoString(C.tally_last_error())}
}

// cString copies s for C; the caller frees it. Go strings may hold NUL bytes, which a C
// string cannot: such a string is refused rather than silently cut short.
func cString(field, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, &Error{Code: CodeInvalidArgument, Message: field + ": must not contain a NUL byte"}
	}
	return C.CString(s), nil
}

// cStrings copies several strings for C; free releases them all.
type cStrings []*C.char

func (cs *cStrings) add(field, s string) (*C.char, error) {
	p, err := cString(field, s)
	if err == nil {
		*cs = append(*cs, p)
	}
	return p, err
}

func (cs cStrings) free() {
	for _, p := range cs {
		C.free(unsafe.Pointer(p))
	}
}

// Telemetry records one run (one session) of an app. Safe for concurrent use.
type Telemetry struct {
	handle atomic.Uint64
}

type options struct {
	Dir               string  `json:"dir,omitempty"`
	Source            string  `json:"source,omitempty"`
	Enabled           *bool   `json:"enabled,omitempty"`
	FirstRunNotice    *bool   `json:"first_run_notice,omitempty"`
	OffCommand        string  `json:"off_command,omitempty"`
	ShutdownTimeoutMs *uint64 `json:"shutdown_timeout_ms,omitempty"`
}

// Option changes how Open sets up telemetry.
type Option func(*options)

// WithDir stores events in dir instead of the directory the config file and
// environment name.
func WithDir(dir string) Option { return func(o *options) { o.Dir = dir } }

// WithSource sets the kind of program: cli (the default), web, mobile, backend or
// extension.
func WithSource(source string) Option { return func(o *options) { o.Source = source } }

// WithEnabled(false) turns telemetry off for this run, as a host's own --no-telemetry
// flag would.
func WithEnabled(enabled bool) Option { return func(o *options) { o.Enabled = &enabled } }

// WithFirstRunNotice(false) stops Tally printing its first-run notice, for a host that
// shows its own.
func WithFirstRunNotice(show bool) Option { return func(o *options) { o.FirstRunNotice = &show } }

// WithOffCommand sets the command quoted in the first-run notice to turn telemetry off
// ("nexus telemetry off"; by default "tally --app APP off").
func WithOffCommand(command string) Option { return func(o *options) { o.OffCommand = command } }

// WithShutdownTimeout sets how long Flush and Close wait for the write (default 100 ms).
func WithShutdownTimeout(d time.Duration) Option {
	return func(o *options) {
		ms := uint64(d / time.Millisecond)
		o.ShutdownTimeoutMs = &ms
	}
}

// Open starts recording for app (lowercase letters, digits, '-' and '_') at version.
// It fails only on a bad app name or option; when the user turned telemetry off it
// returns a Telemetry that records nothing.
func Open(app, version string, opts ...Option) (*Telemetry, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	optionsJSON, err := json.Marshal(o)
	if err != nil {
		return nil, &Error{Code: CodeInvalidArgument, Message: err.Error()}
	}
	var cs cStrings
	defer cs.free()
	cApp, err := cs.add("app", app)
	if err != nil {
		return nil, err
	}
	cVersion, err := cs.add("version", version)
	if err != nil {
		return nil, err
	}
	cOptions, err := cs.add("options", string(optionsJSON))
	if err != nil {
		return nil, err
	}
	var handle C.uint64_t
	if err := call(func() C.TallyStatus { return C.tally_open(cApp, cVersion, cOptions, &handle) }); err != nil {
		return nil, err
	}
	t := &Telemetry{}
	t.handle.Store(uint64(handle))
	return t, nil
}

// id is the C handle; 0 (never a handle) for a nil *Telemetry, so that a nil one
// records nothing and its calls report ErrClosed instead of panicking.
func (t *Telemetry) id() C.uint64_t {
	if t == nil {
		return 0
	}
	return C.uint64_t(t.handle.Load())
}

// Enabled reports whether events are being recorded (false when the user turned
// telemetry off, or after Close).
func (t *Telemetry) Enabled() bool {
	var enabled C.bool
	if call(func() C.TallyStatus { return C.tally_enabled(t.id(), &enabled) }) != nil {
		return false
	}
	return bool(enabled)
}

// Field is an optional part of an event; see Track.
type Field func(map[string]any)

// Command is the subcommand path the event belongs to ("workspace create"), never its
// arguments.
func Command(path string) Field { return func(m map[string]any) { m["command"] = path } }

// Duration is how long the action took (stored in milliseconds).
func Duration(d time.Duration) Field {
	return func(m map[string]any) { m["duration_ms"] = uint64(d / time.Millisecond) }
}

// Success is whether the action succeeded.
func Success(ok bool) Field { return func(m map[string]any) { m["success"] = ok } }

// ErrorCategory is a fixed failure category ("io", "not_found"), never free text.
func ErrorCategory(category string) Field {
	return func(m map[string]any) { m["error_category"] = category }
}

// ErrorMessage is the raw error message: kept, redacted, at level full only.
func ErrorMessage(message string) Field {
	return func(m map[string]any) { m["error_message"] = message }
}

// Workspace is the workspace the event concerns, by the name the user gave it; it is
// stored only as a keyed hash.
func Workspace(name string) Field { return func(m map[string]any) { m["workspace"] = name } }

// Target is the thing the event concerns: its kind ("task") and its user-given name,
// stored only as a keyed hash.
func Target(kind, name string) Field {
	return func(m map[string]any) {
		m["target_type"] = kind
		m["target"] = name
	}
}

// Prop is a flat property: the value must be a string, a number or a bool.
func Prop(key string, value any) Field {
	return func(m map[string]any) {
		props, _ := m["props"].(map[string]any)
		if props == nil {
			props = map[string]any{}
			m["props"] = props
		}
		props[key] = value
	}
}

// Track records an event of category eventType ("workspace") named name
// ("workspace_created"). It never blocks on the disk. An event that breaks a rule is
// refused with an error matching ErrInvalidEvent that names the field and the rule.
func (t *Telemetry) Track(eventType, name string, fields ...Field) error {
	m := map[string]any{}
	for _, field := range fields {
		field(m)
	}
	fieldsJSON, err := json.Marshal(m)
	if err != nil {
		return &Error{Code: CodeInvalidEvent, Message: fmt.Sprintf("props: %v", err)}
	}
	var cs cStrings
	defer cs.free()
	cType, err := cs.add("type", eventType)
	if err != nil {
		return err
	}
	cName, err := cs.add("name", name)
	if err != nil {
		return err
	}
	cFields, err := cs.add("fields", string(fieldsJSON))
	if err != nil {
		return err
	}
	return call(func() C.TallyStatus { return C.tally_record(t.id(), cType, cName, cFields) })
}

// Flush writes what is buffered, waiting at most the shutdown timeout; an error
// matching ErrTimeout means the events stay buffered and are written later.
func (t *Telemetry) Flush() error {
	return call(func() C.TallyStatus { return C.tally_flush(t.id()) })
}

// Close ends the run: unfinished commands are recorded as abandoned, and what is
// buffered is written within the shutdown timeout. Closing twice is harmless.
func (t *Telemetry) Close() error {
	if t == nil {
		return nil
	}
	handle := t.handle.Swap(0)
	if handle == 0 {
		return nil
	}
	return call(func() C.TallyStatus { return C.tally_close(C.uint64_t(handle)) })
}
