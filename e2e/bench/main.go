// Command bench measures Portcullis against real peers on this machine, in
// one run, and prints ratios: `make bench` runs it. It is a program, not a
// test: timings on a shared machine are reported, never asserted.
//
// HTTP: a small upstream (1 KiB responses), nginx as a plain TLS-terminating
// reverse proxy with keep-alive to the upstream (same certificate as the
// gateway), and `portcullis serve` with a logged-in session are each driven
// by the same load generator (wrk) at 1 and 64 connections.
//
// SSH (ssh.go): the stock OpenSSH client to a private sshd directly,
// through ProxyJump and through the bastion with recording on.
//
// Risk (risk.go): the gateway's proxied-request throughput with risk
// accounting on vs `risk: {disabled: true}`, alternating runs of the same
// wrk load (metric risk_on_over_off_rps, the median ratio).
//
// Audit (audit.go): the audit trail's durable throughput, parallel
// emitters into a FileLog with fsync group commit every 10 ms (metric
// audit_events_per_s), and offline verify speed.
//
// `-only http`, `-only ssh`, `-only risk` or `-only audit` runs one part.
//
// Figures are merged into the JSON file named by BENCH_OUT (default
// e2e/bench/results.json) as {"metrics": {name: number}}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/e2e/harness"
)

func main() {
	dur := flag.Duration("d", 10*time.Second, "duration of each load run")
	warm := flag.Duration("warmup", 2*time.Second, "warm-up before each measured run")
	out := flag.String("out", envOr("BENCH_OUT", filepath.Join(harness.RepoRoot(), "e2e", "bench", "results.json")), "JSON results file (merged)")
	only := flag.String("only", "", `run only the "http", "ssh", "risk" or "audit" benchmarks (default: all)`)
	riskReps := flag.Int("risk-reps", 10, "pairs of alternating risk on/off runs")
	riskDur := flag.Duration("risk-d", 5*time.Second, "duration of each risk on/off run")
	flag.Parse()
	if *only != "" && *only != "http" && *only != "ssh" && *only != "risk" && *only != "audit" {
		fmt.Fprintf(os.Stderr, "bench: -only must be http, ssh, risk or audit, not %q\n", *only)
		os.Exit(2)
	}
	if *riskReps < 1 {
		fmt.Fprintln(os.Stderr, "bench: -risk-reps must be at least 1")
		os.Exit(2)
	}
	want := func(part string) bool { return *only == "" || *only == part }

	env := newRunner()
	defer env.cleanup()
	metrics := map[string]float64{}
	if want("http") {
		rows, err := benchHTTP(context.Background(), env, *dur, *warm, metrics)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			env.cleanup()
			os.Exit(1)
		}
		printTable(rows)
	}
	if want("ssh") {
		if err := benchSSH(context.Background(), env, metrics); err != nil {
			fmt.Fprintln(os.Stderr, "bench: ssh:", err)
			env.cleanup()
			os.Exit(1)
		}
	}
	if want("risk") {
		if err := benchRisk(context.Background(), env, *riskDur, *warm, *riskReps, metrics); err != nil {
			fmt.Fprintln(os.Stderr, "bench: risk:", err)
			env.cleanup()
			os.Exit(1)
		}
	}
	if want("audit") {
		if err := benchAudit(env, *dur, *warm, metrics); err != nil {
			fmt.Fprintln(os.Stderr, "bench: audit:", err)
			env.cleanup()
			os.Exit(1)
		}
	}
	printRatios(metrics)
	if err := mergeJSON(*out, metrics); err != nil {
		fmt.Fprintln(os.Stderr, "bench: write results:", err)
		env.cleanup()
		os.Exit(1)
	}
	fmt.Printf("\nwrote %s\n", *out)
}

type row struct {
	Name  string
	Conns int
	L     load
}

func printTable(rows []row) {
	tw := tabwriter.NewWriter(os.Stdout, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "peer\tconns\treq/s\tp50\tp99\terrors\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%v\t%v\t%d\t\n", r.Name, r.Conns, r.L.RPS,
			r.L.P50.Round(time.Microsecond), r.L.P99.Round(time.Microsecond), r.L.Errors)
	}
	tw.Flush()
}

func printRatios(m map[string]float64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Println()
	for _, k := range keys {
		fmt.Printf("%-40s %12.3f\n", k, m[k])
	}
}

// mergeJSON adds metrics to the file, keeping figures other benchmarks wrote.
func mergeJSON(path string, metrics map[string]float64) error {
	doc := struct {
		Metrics map[string]float64 `json:"metrics"`
	}{Metrics: map[string]float64{}}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s exists but is not a results file: %w", path, err)
		}
		if doc.Metrics == nil {
			doc.Metrics = map[string]float64{}
		}
	}
	for k, v := range metrics {
		doc.Metrics[k] = v
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
