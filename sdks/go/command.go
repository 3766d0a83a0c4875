package tally

/*
#include <stdlib.h>
#include "tally.h"
*/
import "C"

import "sync/atomic"

// CommandGuard times one command; finish it with Success or Failure. A guard never
// finished is recorded as abandoned when the Telemetry closes.
type CommandGuard struct {
	t   *Telemetry
	id  atomic.Uint64
	err error
}

// Command starts timing the command at path ("workspace create"), never its arguments.
// A bad path or a closed Telemetry is reported by the guard's Success or Failure.
func (t *Telemetry) Command(path string) *CommandGuard {
	g := &CommandGuard{t: t}
	var cs cStrings
	defer cs.free()
	cPath, err := cs.add("command", path)
	if err != nil {
		g.err = err
		return g
	}
	var id C.uint64_t
	g.err = call(func() C.TallyStatus { return C.tally_command_start(t.id(), cPath, &id) })
	g.id.Store(uint64(id))
	return g
}

// Workspace sets the workspace the command works on, by the name the user gave it
// (stored only as a keyed hash).
func (g *CommandGuard) Workspace(name string) error {
	if g.err != nil {
		return g.err
	}
	var cs cStrings
	defer cs.free()
	cName, err := cs.add("workspace", name)
	if err != nil {
		return err
	}
	return call(func() C.TallyStatus {
		return C.tally_command_workspace(g.t.id(), C.uint64_t(g.id.Load()), cName)
	})
}

// Target sets what the command works on (kind "task" and its user-given name, stored
// only as a keyed hash), recorded on the error event if the command fails.
func (g *CommandGuard) Target(kind, name string) error {
	if g.err != nil {
		return g.err
	}
	var cs cStrings
	defer cs.free()
	cKind, err := cs.add("target_type", kind)
	if err != nil {
		return err
	}
	cName, err := cs.add("target", name)
	if err != nil {
		return err
	}
	return call(func() C.TallyStatus {
		return C.tally_command_target(g.t.id(), C.uint64_t(g.id.Load()), cKind, cName)
	})
}

// Success records the command as succeeded, with how long it took.
func (g *CommandGuard) Success() error {
	if g.err != nil {
		return g.err
	}
	return call(func() C.TallyStatus {
		return C.tally_command_success(g.t.id(), C.uint64_t(g.id.Load()))
	})
}

// Failure records the command as failed with category, a fixed word such as "io" or
// "not_found"; the message of cause, if given, is kept (redacted) at level full only.
// It also records error_occurred.
func (g *CommandGuard) Failure(category string, cause ...error) error {
	if g.err != nil {
		return g.err
	}
	var cs cStrings
	defer cs.free()
	cCategory, err := cs.add("category", category)
	if err != nil {
		return err
	}
	var cMessage *C.char
	if len(cause) > 0 && cause[0] != nil {
		if cMessage, err = cs.add("message", cause[0].Error()); err != nil {
			return err
		}
	}
	return call(func() C.TallyStatus {
		return C.tally_command_failure(g.t.id(), C.uint64_t(g.id.Load()), cCategory, cMessage)
	})
}
