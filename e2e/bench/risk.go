package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/e2e/harness"
)

// riskConns is the load of the risk comparison: many connections, where
// per-request work on the hot path (usage accounting) shows most.
const riskConns = 64

// benchRisk measures the cost of risk accounting on the proxied-request
// path: two gateways that differ only in `risk: {disabled: true}`, in
// front of the same upstream, each with a logged-in session, driven in
// alternating runs (on, off, off, on, …: a drift of the machine's speed
// during the run hits both alike). Each pair of runs gives one on/off
// ratio; the metric is their median, with min and max as the spread.
// Many short pairs beat a few long ones on a shared machine: a burst of
// someone else's work spoils one pair, not the median.
func benchRisk(ctx context.Context, r *runner, dur, warm time.Duration, reps int, metrics map[string]float64) error {
	upAddr, stopUp, err := startUpstream()
	if err != nil {
		return err
	}
	r.Cleanup(stopUp)
	ca := harness.NewCA(r)
	certFile, keyFile := ca.Issue(r, "app.localhost", "access.localhost", "127.0.0.1")

	type gw struct {
		name, url, cookie string
		pid               int
		rps               []float64
		cpuPerReq         []float64 // gateway CPU µs per request
	}
	on, off := &gw{name: "risk on"}, &gw{name: "risk off"}
	for _, g := range []*gw{on, off} {
		extra := ""
		if g == off {
			extra = "risk:\n  disabled: true\n"
		}
		addr, cookie, err := startGateway(ctx, r, upAddr, certFile, keyFile, extra)
		if err != nil {
			return fmt.Errorf("%s: %w", g.name, err)
		}
		g.url, g.cookie = "https://"+addr+"/", cookie
		pid, _ := gatewayPIDs.Load(addr)
		g.pid = pid.(int)
	}
	// Besides throughput, each run measures the gateway process's own CPU
	// time per request: on a shared machine a neighbour's burst changes
	// how many requests a run gets through far more than what each one
	// costs, so this is the steadier of the two figures.
	run := func(g *gw, d time.Duration) (load, error) {
		cpu0, err := processCPU(g.pid)
		if err != nil {
			return load{}, err
		}
		l, err := runWrk(ctx, g.url, riskConns, d, "Host: app.localhost", "Cookie: "+g.cookie)
		if err == nil && l.Errors > 0 {
			err = fmt.Errorf("%s: %d errors (non-2xx or socket) in %d requests", g.name, l.Errors, l.Requests)
		}
		cpu1, cerr := processCPU(g.pid)
		if err == nil && cerr != nil {
			err = cerr
		}
		if err == nil && l.Requests > 0 {
			g.cpuPerReq = append(g.cpuPerReq, float64((cpu1-cpu0).Microseconds())/float64(l.Requests))
		}
		return l, err
	}
	// Warm both once; then the runs alternate back to back, so the two of
	// a pair see the same machine.
	for _, g := range []*gw{on, off} {
		if warm > 0 {
			if _, err := run(g, warm); err != nil {
				return err
			}
		}
	}
	// The warm-up runs' CPU figures are not part of the comparison.
	on.cpuPerReq, off.cpuPerReq = nil, nil
	var ratios, cpuRatios []float64
	for i := range reps {
		order := []*gw{on, off}
		if i%2 == 1 {
			order = []*gw{off, on}
		}
		for _, g := range order {
			l, err := run(g, dur)
			if err != nil {
				return err
			}
			g.rps = append(g.rps, l.RPS)
		}
		ratios = append(ratios, on.rps[i]/off.rps[i])
		// off/on: like the throughput ratio, 1 means no cost, lower is worse.
		cpuRatios = append(cpuRatios, off.cpuPerReq[i]/on.cpuPerReq[i])
	}

	tw := tabwriter.NewWriter(os.Stdout, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "rep\trisk on req/s\trisk off req/s\ton/off\ton CPU µs/req\toff CPU µs/req\toff/on\t\n")
	for i := range reps {
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.3f\t%.1f\t%.1f\t%.3f\t\n", i+1, on.rps[i], off.rps[i], ratios[i],
			on.cpuPerReq[i], off.cpuPerReq[i], cpuRatios[i])
	}
	tw.Flush()
	metrics["risk_on_over_off_rps"] = round(median(ratios), 3)
	metrics["risk_on_over_off_rps_min"] = round(slices.Min(ratios), 3)
	metrics["risk_on_over_off_rps_max"] = round(slices.Max(ratios), 3)
	metrics["risk_on_over_off_cpu_per_req"] = round(median(cpuRatios), 3)
	metrics["risk_on_over_off_cpu_per_req_min"] = round(slices.Min(cpuRatios), 3)
	metrics["risk_on_over_off_cpu_per_req_max"] = round(slices.Max(cpuRatios), 3)
	metrics["http_gateway_cpu_us_per_req_risk_on"] = round(median(on.cpuPerReq), 1)
	metrics["http_gateway_cpu_us_per_req_risk_off"] = round(median(off.cpuPerReq), 1)
	metrics[fmt.Sprintf("http_rps_gateway_risk_on_c%d", riskConns)] = round(median(on.rps), 1)
	metrics[fmt.Sprintf("http_rps_gateway_risk_off_c%d", riskConns)] = round(median(off.rps), 1)
	return nil
}
