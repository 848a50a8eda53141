package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// load is one load-generator run's result.
type load struct {
	RPS      float64
	P50, P99 time.Duration
	Errors   int // non-2xx/3xx responses plus socket errors
	Requests int
}

// runWrk drives url with wrk (a C load generator, so the generator is the
// same for every peer and cheap on CPU): keep-alive, conns connections,
// for dur. Extra headers (e.g. the session cookie) go with every request.
func runWrk(ctx context.Context, url string, conns int, dur time.Duration, headers ...string) (load, error) {
	threads := 2
	if conns < threads {
		threads = conns
	}
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", int(dur.Seconds())), "--latency", "--timeout", "5s"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	if err != nil {
		return load{}, fmt.Errorf("wrk %v: %v\n%s", args, err, out)
	}
	return parseWrk(string(out))
}

// parseWrk reads wrk's text report.
func parseWrk(out string) (load, error) {
	var l load
	var inDist bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 0:
		case f[0] == "Latency" && len(f) >= 2 && f[1] == "Distribution":
			inDist = true
		case inDist && (f[0] == "50%" || f[0] == "99%") && len(f) == 2:
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return l, err
			}
			if f[0] == "50%" {
				l.P50 = d
			} else {
				l.P99 = d
			}
		case f[0] == "Requests/sec:" && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return l, err
			}
			l.RPS = v
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			l.Requests, _ = strconv.Atoi(f[0])
		case f[0] == "Non-2xx" && len(f) >= 5:
			n, _ := strconv.Atoi(f[len(f)-1])
			l.Errors += n
		case f[0] == "Socket" && f[1] == "errors:":
			// "Socket errors: connect 0, read 0, write 0, timeout 0"
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.Atoi(strings.TrimSuffix(f[i+1], ","))
				l.Errors += n
			}
		}
	}
	if l.RPS == 0 {
		return l, fmt.Errorf("wrk printed no Requests/sec:\n%s", out)
	}
	return l, nil
}

func parseWrkDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suf  string
		unit time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}} {
		if strings.HasSuffix(s, u.suf) {
			v, err := strconv.ParseFloat(strings.TrimSuffix(s, u.suf), 64)
			if err != nil {
				return 0, err
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("bad wrk duration %q", s)
}
