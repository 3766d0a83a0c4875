// Command bench measures the wall time of `go-nexus task done` with telemetry on
// against off, in the same run (see docs/BENCHMARKS.md): what Tally adds to each
// command of a Go program.
//
//	cargo build --release -p tally-ffi
//	cd examples/go-nexus && go run ./bench [-runs 1000]
//
// It builds go-nexus, then runs it as a user would, a fresh process each time, with
// NEXUS_HOME, NEXUS_TELEMETRY_DIR and NEXUS_TELEMETRY_CONFIG in a temporary directory.
// Warm-up runs first create the store. On and off runs alternate (on-off, then off-on)
// so that drift in the machine's load falls on both alike; "off" sets
// NEXUS_TELEMETRY=off. Each run is timed from spawn to exit.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"
)

const warmUpRuns = 20

func main() {
	runs := flag.Int("runs", 1000, "timed runs of each kind")
	flag.Parse()
	dir, err := os.MkdirTemp("", "go-nexus-bench")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "go-nexus")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fail(fmt.Errorf("go build: %v\n%s", err, out))
	}
	run := func(on bool) float64 {
		cmd := exec.Command(bin, "task", "done", "bench-task")
		cmd.Env = append(os.Environ(),
			"NEXUS_HOME="+filepath.Join(dir, "home"),
			"NEXUS_TELEMETRY_DIR="+filepath.Join(dir, "telemetry"),
			"NEXUS_TELEMETRY_CONFIG="+filepath.Join(dir, "telemetry.toml"),
			"DO_NOT_TRACK=", "NEXUS_TELEMETRY_DEBUG=")
		if on {
			cmd.Env = append(cmd.Env, "NEXUS_TELEMETRY=")
		} else {
			cmd.Env = append(cmd.Env, "NEXUS_TELEMETRY=off")
		}
		start := time.Now()
		if err := cmd.Run(); err != nil {
			fail(fmt.Errorf("go-nexus: %v", err))
		}
		return float64(time.Since(start).Nanoseconds()) / 1e6
	}
	for i := 0; i < warmUpRuns; i++ {
		run(true)
		run(false)
	}
	on, off, paired := make([]float64, 0, *runs), make([]float64, 0, *runs), make([]float64, 0, *runs)
	for i := 0; i < *runs; i++ {
		var a, b float64
		if i%2 == 0 {
			a = run(true)
			b = run(false)
		} else {
			b = run(false)
			a = run(true)
		}
		on, off, paired = append(on, a), append(off, b), append(paired, a-b)
	}
	if _, err := os.Stat(filepath.Join(dir, "telemetry", "telemetry.db")); err != nil {
		fail(fmt.Errorf("no store was written: %v", err))
	}

	sOn, sOff, sPaired := describe(on), describe(off), describe(paired)
	fmt.Printf("go-nexus task done: %d runs each, on and off alternating, after %d warm-up runs each\n\n", *runs, warmUpRuns)
	fmt.Println("| telemetry | median ms | mean ms | p10 ms | p90 ms | min ms | stdev ms |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, row := range []struct {
		name string
		s    stats
	}{{"off", sOff}, {"on", sOn}} {
		fmt.Printf("| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", row.name, row.s.median, row.s.mean, row.s.p10, row.s.p90, row.s.min, row.s.stdev)
	}
	halfWidth := 1.96 * sPaired.stdev / math.Sqrt(float64(*runs))
	fmt.Printf("\nratio on/off: median %.3fx, mean %.3fx\n", sOn.median/sOff.median, sOn.mean/sOff.mean)
	fmt.Printf("on - off: median %+.3f ms, mean %+.3f ms; paired: median %+.3f ms, mean %+.3f ms +/- %.3f ms (95%%)\n",
		sOn.median-sOff.median, sOn.mean-sOff.mean, sPaired.median, sPaired.mean, halfWidth)
	verdict := "NOT met"
	if sOn.median-sOff.median <= 1.5 {
		verdict = "met"
	}
	fmt.Printf("target: <= +1.5 ms per command at the median: %s\n", verdict)
}

type stats struct{ median, mean, p10, p90, min, stdev float64 }

func describe(samples []float64) stats {
	sorted := append([]float64(nil), samples...)
	sort.Float64s(sorted)
	n := len(sorted)
	at := func(q float64) float64 { return sorted[int(math.Round(float64(n-1)*q))] }
	mean := 0.0
	for _, x := range sorted {
		mean += x
	}
	mean /= float64(n)
	variance := 0.0
	for _, x := range sorted {
		variance += (x - mean) * (x - mean)
	}
	variance /= math.Max(float64(n-1), 1)
	return stats{median: at(0.5), mean: mean, p10: at(0.1), p90: at(0.9), min: sorted[0], stdev: math.Sqrt(variance)}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
