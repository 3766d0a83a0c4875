// Command go-nexus is a small workspace manager in Go, in the shape of Nexus ADR-003,
// that records the events of ADR-004 through Tally's Go package: workspace_created,
// workspace_destroyed, task_completed, command_executed and error_occurred. It writes
// the same store as the Rust example (app "nexus"), so `tally --app nexus stats` shows
// its usage.
//
//	go-nexus [--home DIR] workspace create NAME [--template empty|go|rust]
//	go-nexus [--home DIR] workspace destroy NAME
//	go-nexus [--home DIR] task done NAME [--workspace NAME]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	tally "github.com/tally-telemetry/tally/sdks/go"
)

const version = "1.4.2"

const usage = `go-nexus: a workspace manager

usage:
  go-nexus [--home DIR] workspace create NAME [--template empty|go|rust]
  go-nexus [--home DIR] workspace destroy NAME
  go-nexus [--home DIR] task done NAME [--workspace NAME]

Workspaces live in --home (default $NEXUS_HOME, or ~/.nexus).
Usage telemetry stays on this machine: see it with 'tally --app nexus stats',
turn it off with 'tally --app nexus off' or DO_NOT_TRACK=1.
`

// usageError is a command line that cannot be run; it exits with status 2.
type usageError struct{ message string }

func (e usageError) Error() string { return e.message }

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "go-nexus: %v\n", err)
		var bad usageError
		if errors.As(err, &bad) {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// command is one parsed command line: its path for telemetry and the work to do.
type command struct {
	path      string
	workspace string
	task      string
	do        func(*tally.Telemetry, string) (string, error)
}

func run(args []string, out io.Writer) error {
	global := flag.NewFlagSet("go-nexus", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	home := global.String("home", os.Getenv("NEXUS_HOME"), "where workspaces live")
	if err := global.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	cmd, err := parse(global.Args())
	if err != nil {
		return err
	}
	if *home == "" {
		userHome, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("no home directory: set NEXUS_HOME or pass --home")
		}
		*home = filepath.Join(userHome, ".nexus")
	}

	// Telemetry never stops the program: a bad option is a bug reported on stderr,
	// and the work goes on without recording (a nil *Telemetry records nothing).
	tel, err := tally.Open("nexus", version)
	if err != nil {
		fmt.Fprintf(os.Stderr, "go-nexus: telemetry unavailable: %v\n", err)
	}
	defer tel.Close()
	guard := tel.Command(cmd.path)
	if cmd.workspace != "" {
		guard.Workspace(cmd.workspace)
	}
	if cmd.task != "" {
		guard.Target("task", cmd.task)
	}
	message, err := cmd.do(tel, *home)
	if err != nil {
		guard.Failure(category(err), err)
		return err
	}
	guard.Success()
	fmt.Fprintln(out, message)
	return nil
}

func parse(args []string) (command, error) {
	if len(args) < 2 {
		return command{}, usageError{"expected a command"}
	}
	switch args[0] + " " + args[1] {
	case "workspace create":
		flags := flag.NewFlagSet("workspace create", flag.ContinueOnError)
		flags.SetOutput(io.Discard)
		template := flags.String("template", "empty", "what to put in it: empty, go or rust")
		name, err := oneName(flags, args[2:])
		if err != nil {
			return command{}, err
		}
		if _, ok := templates[*template]; !ok {
			return command{}, usageError{fmt.Sprintf("--template: must be one of empty, go, rust (got %q)", *template)}
		}
		return command{path: "workspace create", workspace: name, do: func(t *tally.Telemetry, home string) (string, error) {
			return createWorkspace(t, home, name, *template)
		}}, nil
	case "workspace destroy":
		flags := flag.NewFlagSet("workspace destroy", flag.ContinueOnError)
		flags.SetOutput(io.Discard)
		name, err := oneName(flags, args[2:])
		if err != nil {
			return command{}, err
		}
		return command{path: "workspace destroy", workspace: name, do: func(t *tally.Telemetry, home string) (string, error) {
			return destroyWorkspace(t, home, name)
		}}, nil
	case "task done":
		flags := flag.NewFlagSet("task done", flag.ContinueOnError)
		flags.SetOutput(io.Discard)
		workspace := flags.String("workspace", "", "the workspace the task belongs to")
		name, err := oneName(flags, args[2:])
		if err != nil {
			return command{}, err
		}
		return command{path: "task done", workspace: *workspace, task: name, do: func(t *tally.Telemetry, home string) (string, error) {
			return completeTask(t, home, name, *workspace)
		}}, nil
	}
	return command{}, usageError{fmt.Sprintf("unknown command %q", args[0]+" "+args[1])}
}

// oneName parses flags around exactly one positional name.
func oneName(flags *flag.FlagSet, args []string) (string, error) {
	var names []string
	for len(args) > 0 {
		if err := flags.Parse(args); err != nil {
			return "", usageError{err.Error()}
		}
		args = flags.Args()
		if len(args) > 0 {
			names = append(names, args[0])
			args = args[1:]
		}
	}
	if len(names) != 1 {
		return "", usageError{fmt.Sprintf("%s: expected one name, got %d", flags.Name(), len(names))}
	}
	return names[0], nil
}
