package audit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The crash test re-executes the test binary as a child that writes
// events in a loop and prints "acked N" each time Sync has returned for
// events 0..N-1; the parent SIGKILLs it mid-stream, several times over
// the same directory.
const (
	crashDirEnv   = "AUDIT_CRASH_CHILD_DIR"
	crashRoundEnv = "AUDIT_CRASH_CHILD_ROUND"
)

// TestCrashChild is the child process (skipped in a normal run).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashRecovery")
	}
	round := os.Getenv(crashRoundEnv)
	l, err := OpenFile(FileConfig{Dir: dir, Instance: "crash", CheckpointEvery: 50}, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		// Sizes vary so that batches, and a kill inside a write, do not
		// fall on the same boundaries every time.
		l.Emit(ctx, Event{Type: TypeAdmin, Reason: round + "-" + strconv.Itoa(i), Attrs: map[string]string{"pad": strings.Repeat("x", i%300)}})
		if i%37 == 36 {
			if err := l.Sync(ctx); err != nil {
				fmt.Println("sync:", err)
				os.Exit(3)
			}
			fmt.Printf("acked %d\n", i+1)
		}
	}
}

// TestCrashRecovery: SIGKILL the writer while events stream in, three
// times; every reopen continues the chain, the trail verifies, and every
// event acknowledged by Sync before the kill is there exactly once.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	const rounds = 3
	killAfter := [rounds]int{40, 23, 57} // acks before each kill
	acked := make([]int, rounds)
	for r := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRoundEnv+"="+strconv.Itoa(r))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Hang guard only (no timing assertion): a child that stops
		// acknowledging is killed and the test fails below.
		guard := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "acked "); ok {
				acked[r], _ = strconv.Atoi(v)
				if n++; n == killAfter[r] {
					cmd.Process.Kill() // SIGKILL: no Close, no final checkpoint or head
					break
				}
				continue
			}
			t.Errorf("child: %s", line)
		}
		guard.Stop()
		cmd.Wait()
		if n < killAfter[r] {
			t.Fatalf("round %d: child stopped after %d acks", r, n)
		}
		// Between kills the trail verifies as it is (its unsigned tail,
		// if any, is only a note).
		rep, err := Verify(dir, nil, VerifyOptions{})
		if err != nil || !rep.OK() {
			t.Fatalf("round %d: after the kill: %v\n%s", r, err, rep)
		}
		if r == 1 {
			// A kill inside write(2) can leave half a line: make sure one
			// round ends that way.
			f, err := os.OpenFile(filepath.Join(dir, FileName("crash")), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(`{"time":"2026-01-01T00:00:00Z","instance":"crash","type":"adm`)
			f.Close()
		}
	}

	l, err := OpenFile(FileConfig{Dir: dir, Instance: "crash"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(context.Background(), Event{Type: TypeAdmin, Reason: "after"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir)
	seen := map[string]int{}
	recoveries := 0
	for _, e := range readLines(t, l.Path()) {
		seen[e.Reason]++
		if e.Type == TypeRecovery {
			recoveries++
		}
	}
	for r := range rounds {
		for i := range acked[r] {
			if k := fmt.Sprintf("%d-%d", r, i); seen[k] != 1 {
				t.Fatalf("acknowledged event %s present %d times", k, seen[k])
			}
		}
	}
	if seen["after"] != 1 || recoveries < 1 {
		t.Fatalf("event after the crashes: %d; torn lines cut: %d", seen["after"], recoveries)
	}
	t.Logf("%d rounds, acked %v, %d records, %d torn lines cut; %s", rounds, acked, rep.Chains[0].Records, recoveries, rep.Chains[0].Notes)
}
