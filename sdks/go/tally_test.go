package tally_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tally "github.com/tally-telemetry/tally/sdks/go"
)

const app = "gotest"

// isolate gives the test its own config file and no inherited consent settings.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("GOTEST_TELEMETRY_CONFIG", filepath.Join(dir, "telemetry.toml"))
	t.Setenv("DO_NOT_TRACK", "")
	t.Setenv("GOTEST_TELEMETRY", "")
	return filepath.Join(dir, "store")
}

// tallyBinary finds the tally command that reads the store back: TALLY_BIN, or the
// repository's own build.
func tallyBinary(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("TALLY_BIN"), "../../target/debug/tally", "../../target/release/tally"}
	for _, candidate := range candidates {
		if candidate == "" {
			continue
		}
		if _, err := os.Stat(candidate); err == nil {
			return candidate
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("the tally binary is missing: cargo build -p tally-cli (or set TALLY_BIN)")
	}
	t.Skip("the tally binary is missing: cargo build -p tally-cli (or set TALLY_BIN)")
	return ""
}

type exported struct {
	Type          string         `json:"type"`
	Name          string         `json:"name"`
	Command       string         `json:"command"`
	SessionID     string         `json:"session_id"`
	Workspace     string         `json:"workspace"`
	TargetID      string         `json:"target_id"`
	Success       *bool          `json:"success"`
	ErrorCategory string         `json:"error_category"`
	Props         map[string]any `json:"props"`
	AppVersion    string         `json:"app_version"`
}

// events reads the store back with `tally export`, as any user could.
func events(t *testing.T, store string) []exported {
	t.Helper()
	out, err := exec.Command(tallyBinary(t), "--app", app, "--dir", store, "export", "--format", "ndjson").Output()
	if err != nil {
		t.Fatalf("tally export: %v", err)
	}
	var all []exported
	scanner := bufio.NewScanner(bytes.NewReader(out))
	scanner.Buffer(nil, 1<<20)
	for scanner.Scan() {
		var e exported
		if err := json.Unmarshal(scanner.Bytes(), &e); err != nil {
			t.Fatalf("export line %q: %v", scanner.Text(), err)
		}
		all = append(all, e)
	}
	return all
}

func count(all []exported, name string) int {
	n := 0
	for _, e := range all {
		if e.Name == name {
			n++
		}
	}
	return n
}

func open(t *testing.T, store string) *tally.Telemetry {
	t.Helper()
	// A generous timeout: the tests check what lands, not how fast (a loaded machine
	// may take more than the default 100 ms to create a store).
	tel, err := tally.Open(app, "0.9.1", tally.WithDir(store), tally.WithFirstRunNotice(false),
		tally.WithShutdownTimeout(30*time.Second))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return tel
}

func TestEventsLandWithCommandsAndHashedNames(t *testing.T) {
	store := isolate(t)
	t.Setenv("GOTEST_TELEMETRY", "enhanced")
	tel := open(t, store)
	if !tel.Enabled() {
		t.Fatal("telemetry should be on")
	}
	cmd := tel.Command("workspace create")
	if err := cmd.Workspace("acme"); err != nil {
		t.Fatal(err)
	}
	err := tel.Track("workspace", "workspace_created",
		tally.Command("workspace create"), tally.Workspace("acme"), tally.Prop("template", "go"), tally.Prop("files_count", 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Success(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Success(); !errors.Is(err, tally.ErrClosed) {
		t.Fatalf("finishing twice: got %v, want ErrClosed", err)
	}
	failed := tel.Command("task done")
	failed.Target("task", "write docs")
	if err := failed.Failure("not_found", errors.New("no task named write docs")); err != nil {
		t.Fatal(err)
	}
	if err := tel.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tel.Close(); err != nil {
		t.Fatalf("closing twice: %v", err)
	}

	all := events(t, store)
	if count(all, "session_started") != 1 || count(all, "session_ended") != 1 {
		t.Errorf("want one session started and ended, got %+v", all)
	}
	if count(all, "command_executed") != 2 || count(all, "error_occurred") != 1 {
		t.Errorf("want 2 commands and 1 error, got %+v", all)
	}
	for _, e := range all {
		if e.AppVersion != "0.9.1" {
			t.Errorf("app_version %q", e.AppVersion)
		}
		if e.Name == "workspace_created" {
			if !strings.HasPrefix(e.Workspace, "h1:") || e.Props["template"] != "go" || e.Props["files_count"] != 2.0 {
				t.Errorf("workspace_created as stored: %+v", e)
			}
		}
		if e.Name == "error_occurred" && (e.ErrorCategory != "not_found" || !strings.HasPrefix(e.TargetID, "h1:")) {
			t.Errorf("error_occurred as stored: %+v", e)
		}
	}
}

func TestDoNotTrackCreatesNoFile(t *testing.T) {
	store := isolate(t)
	t.Setenv("DO_NOT_TRACK", "1")
	tel := open(t, store)
	if tel.Enabled() {
		t.Error("DO_NOT_TRACK=1 should turn telemetry off")
	}
	if err := tel.Track("task", "task_completed", tally.Command("task done")); err != nil {
		t.Errorf("Track with telemetry off: %v", err)
	}
	cmd := tel.Command("task done")
	if err := cmd.Success(); err != nil {
		t.Errorf("a command with telemetry off: %v", err)
	}
	if err := tel.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(store); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("DO_NOT_TRACK created %s (%v)", store, err)
	}
}

func TestCanaryWorkspaceNeverInTheStoreBytes(t *testing.T) {
	const canary = "canary-go-workspace-91c2"
	store := isolate(t)
	t.Setenv("GOTEST_TELEMETRY", "full")
	tel := open(t, store)
	cmd := tel.Command("workspace create")
	cmd.Workspace(canary)
	cmd.Target("workspace", canary)
	tel.Track("workspace", "workspace_created", tally.Workspace(canary), tally.Target("workspace", canary),
		tally.ErrorMessage("could not write /home/u/"+canary+"/x"))
	cmd.Failure("io", errors.New("open "+canary+": permission denied"))
	if err := tel.Flush(); err != nil {
		t.Fatal(err)
	}
	// Read while the store is still open (WAL not yet checkpointed), then after close.
	check := func(when string) {
		for _, file := range []string{"telemetry.db", "telemetry.db-wal", "telemetry.db-shm"} {
			data, err := os.ReadFile(filepath.Join(store, file))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			if bytes.Contains(data, []byte(canary)) {
				t.Errorf("%s: %s holds the workspace name in clear", when, file)
			}
		}
	}
	check("open")
	tel.Close()
	check("closed")
	if n := count(events(t, store), "workspace_created"); n != 1 {
		t.Errorf("workspace_created stored %d times", n)
	}
}

func TestManyGoroutinesShareOneHandle(t *testing.T) {
	store := isolate(t)
	tel := open(t, store)
	const goroutines, each = 16, 40
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				cmd := tel.Command("task done")
				if err := tel.Track("task", "task_completed", tally.Command("task done")); err != nil {
					errs <- err
				}
				if err := cmd.Success(); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := tel.Close(); err != nil {
		t.Fatal(err)
	}
	all := events(t, store)
	if got := count(all, "task_completed"); got != goroutines*each {
		t.Errorf("task_completed: %d stored, want %d", got, goroutines*each)
	}
	if got := count(all, "command_executed"); got != goroutines*each {
		t.Errorf("command_executed: %d stored, want %d", got, goroutines*each)
	}
}

func TestBadInputIsAnErrorNamingTheField(t *testing.T) {
	store := isolate(t)
	if _, err := tally.Open("Not An App", "1.0.0"); !errors.Is(err, tally.ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "app: must be") {
		t.Errorf("bad app name: %v", err)
	}
	if _, err := tally.Open(app, "1.0.0", tally.WithSource("desktop")); !errors.Is(err, tally.ErrInvalidArgument) {
		t.Errorf("bad source: %v", err)
	}
	tel := open(t, store)
	defer tel.Close()
	cases := []struct {
		what string
		err  error
		want string
	}{
		{"bad type", tel.Track("Task", "task_completed"), "type: must be 1 to"},
		{"nested prop", tel.Track("task", "task_completed", tally.Prop("a", map[string]int{"b": 1})), "props are flat"},
		{"NUL byte", tel.Track("task", "task\x00completed"), "name: must not contain a NUL byte"},
		{"invalid UTF-8", tel.Track("task", "task_\xffcompleted"), "name: must be valid UTF-8"},
		{"bad category", tel.Command("task done").Failure("Not Found"), "error_category: must be"},
		{"bad command", tel.Command("").Success(), "command: must be"},
	}
	for _, c := range cases {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.what, c.err, c.want)
		}
	}
	tel.Close()
	if err := tel.Track("task", "task_completed"); !errors.Is(err, tally.ErrClosed) {
		t.Errorf("Track after Close: got %v, want ErrClosed", err)
	}
	var none *tally.Telemetry
	if none.Enabled() || !errors.Is(none.Track("task", "task_completed"), tally.ErrClosed) || none.Close() != nil {
		t.Error("a nil *Telemetry should record nothing and not panic")
	}
}
