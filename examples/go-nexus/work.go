package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	tally "github.com/tally-telemetry/tally/sdks/go"
)

// nexusError is a failed command with the fixed category telemetry records for it.
type nexusError struct {
	category string
	message  string
	cause    error
}

func (e *nexusError) Error() string {
	if e.cause != nil {
		return e.message + ": " + e.cause.Error()
	}
	return e.message
}

func (e *nexusError) Unwrap() error { return e.cause }

func category(err error) string {
	var nexus *nexusError
	if errors.As(err, &nexus) {
		return nexus.category
	}
	return "io"
}

func ioError(action, path string, err error) error {
	category := "io"
	if errors.Is(err, fs.ErrPermission) {
		category = "permission"
	}
	return &nexusError{category: category, message: action + " " + path, cause: err}
}

// templates are the files each template creates.
var templates = map[string]map[string]string{
	"empty": {},
	"go":    {"go.mod": "module app\n\ngo 1.21\n", "main.go": "package main\n\nfunc main() {}\n"},
	"rust":  {"Cargo.toml": "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2024\"\n", "src/main.rs": "fn main() {}\n"},
}

func checkName(name string) error {
	ok := name != "" && len(name) <= 100 && name[0] != '.'
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			ok = false
		}
	}
	if !ok {
		return &nexusError{category: "invalid_name", message: fmt.Sprintf("invalid name %q: use letters, digits, '.', '_' and '-', not starting with '.'", name)}
	}
	return nil
}

func workspaceDir(home, name string) string { return filepath.Join(home, "workspaces", name) }

func createWorkspace(t *tally.Telemetry, home, name, template string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	dir := workspaceDir(home, name)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", ioError("create", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", &nexusError{category: "already_exists", message: fmt.Sprintf("workspace %q already exists", name)}
		}
		return "", ioError("create", dir, err)
	}
	files := templates[template]
	for file, contents := range files {
		path := filepath.Join(dir, file)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", ioError("create", filepath.Dir(path), err)
		}
		if err := os.WriteFile(path, []byte(contents), 0o644); err != nil {
			return "", ioError("write", path, err)
		}
	}
	manifest := filepath.Join(dir, "nexus.toml")
	if err := os.WriteFile(manifest, []byte(fmt.Sprintf("template = %q\n", template)), 0o644); err != nil {
		return "", ioError("write", manifest, err)
	}
	t.Track("workspace", "workspace_created", tally.Command("workspace create"), tally.Workspace(name),
		tally.Prop("template", template), tally.Prop("files_count", len(files)+1))
	return fmt.Sprintf("created workspace %s at %s", name, dir), nil
}

func destroyWorkspace(t *tally.Telemetry, home, name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	dir := workspaceDir(home, name)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return "", &nexusError{category: "not_found", message: fmt.Sprintf("workspace %q does not exist", name)}
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", ioError("remove", dir, err)
	}
	t.Track("workspace", "workspace_destroyed", tally.Command("workspace destroy"), tally.Workspace(name))
	return "destroyed workspace " + name, nil
}

func completeTask(t *tally.Telemetry, home, name, workspace string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	dir := home
	if workspace != "" {
		if err := checkName(workspace); err != nil {
			return "", err
		}
		dir = workspaceDir(home, workspace)
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			return "", &nexusError{category: "not_found", message: fmt.Sprintf("workspace %q does not exist", workspace)}
		}
	} else if err := os.MkdirAll(home, 0o755); err != nil {
		return "", ioError("create", home, err)
	}
	log := filepath.Join(dir, "tasks.done")
	file, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return "", ioError("open", log, err)
	}
	_, err = fmt.Fprintln(file, name)
	if closeErr := file.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return "", ioError("write", log, err)
	}
	fields := []tally.Field{tally.Command("task done"), tally.Target("task", name)}
	if workspace != "" {
		fields = append(fields, tally.Workspace(workspace))
	}
	t.Track("task", "task_completed", fields...)
	return fmt.Sprintf("task %s done", name), nil
}
