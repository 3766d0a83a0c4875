package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// repoBinary finds a binary of the Rust workspace: the environment variable, or the
// repository's debug build.
func repoBinary(t *testing.T, env, name string) string {
	t.Helper()
	for _, candidate := range []string{os.Getenv(env), "../../target/debug/" + name, "../../target/release/" + name} {
		if candidate == "" {
			continue
		}
		if path, err := filepath.Abs(candidate); err == nil {
			if _, err := os.Stat(path); err == nil {
				return path
			}
		}
	}
	message := name + " is missing: cargo build -p " + map[string]string{"tally": "tally-cli", "nexus": "nexus"}[name] + " (or set " + env + ")"
	if os.Getenv("CI") != "" {
		t.Fatal(message)
	}
	t.Skip(message)
	return ""
}

// session is one user's machine: a nexus home and a telemetry store.
type session struct {
	t       *testing.T
	dir     string
	program string
}

func (s session) run(wantOK bool, args ...string) string {
	s.t.Helper()
	cmd := exec.Command(s.program, args...)
	cmd.Env = append(os.Environ(),
		"NEXUS_HOME="+filepath.Join(s.dir, "home"),
		"NEXUS_TELEMETRY_DIR="+filepath.Join(s.dir, "telemetry"),
		"NEXUS_TELEMETRY_CONFIG="+filepath.Join(s.dir, "telemetry.toml"),
		"NEXUS_TELEMETRY=enhanced",
		"DO_NOT_TRACK=",
	)
	out, err := cmd.CombinedOutput()
	if (err == nil) != wantOK {
		s.t.Fatalf("%s %v: %v\n%s", filepath.Base(s.program), args, err, out)
	}
	return string(out)
}

// stats is what `tally --app nexus stats --json` shows, less what differs run to run.
type stats struct {
	CommandsRun      int `json:"commands_run"`
	Errors           int `json:"errors"`
	Events           int `json:"events"`
	Sessions         int `json:"sessions"`
	TasksCompleted   int `json:"tasks_completed"`
	WorkspaceCreated int `json:"workspaces_created"`
	TopCommands      []struct {
		Command  string `json:"command"`
		Runs     int    `json:"runs"`
		Failures int    `json:"failures"`
	} `json:"top_commands"`
}

func (s session) stats(tallyBin string) stats {
	s.t.Helper()
	out, err := exec.Command(tallyBin, "--app", "nexus", "--dir", filepath.Join(s.dir, "telemetry"), "stats", "--json").Output()
	if err != nil {
		s.t.Fatalf("tally stats: %v", err)
	}
	var got stats
	if err := json.Unmarshal(out, &got); err != nil {
		s.t.Fatalf("tally stats --json: %v\n%s", err, out)
	}
	return got
}

// script is the same user session for either program.
func script(s session) {
	s.run(true, "workspace", "create", "acme", "--template", "rust")
	s.run(true, "task", "done", "write-docs", "--workspace", "acme")
	s.run(true, "task", "done", "release")
	s.run(false, "workspace", "create", "acme")
	s.run(false, "task", "done", "x", "--workspace", "missing")
	s.run(true, "workspace", "destroy", "acme")
}

func TestStatsShowTheGoExampleLikeTheRustOne(t *testing.T) {
	tallyBin := repoBinary(t, "TALLY_BIN", "tally")
	rustNexus := repoBinary(t, "NEXUS_BIN", "nexus")
	goNexus := filepath.Join(t.TempDir(), "go-nexus")
	if out, err := exec.Command("go", "build", "-o", goNexus, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	goSession := session{t: t, dir: t.TempDir(), program: goNexus}
	script(goSession)
	rustSession := session{t: t, dir: t.TempDir(), program: rustNexus}
	script(rustSession)

	fromGo, fromRust := goSession.stats(tallyBin), rustSession.stats(tallyBin)
	if fromGo.CommandsRun != 6 || fromGo.WorkspaceCreated != 1 || fromGo.TasksCompleted != 2 || fromGo.Errors != 2 || fromGo.Sessions != 6 {
		t.Errorf("go-nexus stats: %+v", fromGo)
	}
	if !reflect.DeepEqual(fromGo, fromRust) {
		t.Errorf("stats differ:\n  go:   %+v\n  rust: %+v", fromGo, fromRust)
	}
}

func TestCommandsWorkAndFailWithTheirCategory(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "go-nexus")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	s := session{t: t, dir: dir, program: bin}
	if out := s.run(true, "workspace", "create", "acme", "--template", "go"); !strings.Contains(out, "created workspace acme") {
		t.Errorf("create: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "home", "workspaces", "acme", "go.mod")); err != nil {
		t.Errorf("the go template was not written: %v", err)
	}
	if out := s.run(false, "workspace", "create", "../x"); !strings.Contains(out, "invalid name") {
		t.Errorf("bad name: %s", out)
	}
	if out := s.run(false, "workspace", "create"); !strings.Contains(out, "expected one name") {
		t.Errorf("no name: %s", out)
	}
	for _, file := range []string{"telemetry.db", "telemetry.db-wal", "telemetry.db-shm"} {
		data, _ := os.ReadFile(filepath.Join(dir, "telemetry", file))
		if strings.Contains(string(data), "acme") {
			t.Errorf("%s holds the workspace name in clear", file)
		}
	}
}
