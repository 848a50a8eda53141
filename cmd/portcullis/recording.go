package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/bastion/recording"
)

// Recordings are read from files the bastion wrote; they are untrusted
// input (a session's output is whatever the target sent), which the
// recording reader bounds and the printers below sanitise, except where
// replaying the terminal output is the point (play, asciicast).

const recordingUsage = `Usage:
  portcullis recording info [--json] RECORDING
  portcullis recording export --format asciicast [-o FILE] [--input] [--channel N] RECORDING
  portcullis play [--speed X] [--max-idle D] [--channel N] RECORDING
`

// cmdPlay replays a recording's output in the terminal with its timing.
func cmdPlay(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("play", "portcullis play [--speed X] [--max-idle D] [--channel N] RECORDING", stderr)
	speed := fs.Float64("speed", 1, "playback speed factor (2 = twice as fast)")
	maxIdle := fs.Duration("max-idle", 0, "cap every pause at this long, e.g. 2s (0 = keep the original pauses)")
	channel := fs.Uint("channel", 0, "play only this channel (0 = all)")
	path, code, ok := oneRecording(fs, args, stderr)
	if !ok {
		return code
	}
	if *speed <= 0 || *speed > 1000 {
		return usageError(fs, stderr, "--speed must be above 0 and at most 1000")
	}
	if *maxIdle < 0 {
		return usageError(fs, stderr, "--max-idle must not be negative")
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(stderr, "play", err)
	}
	defer f.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = recording.Play(ctx, stdout, f, recording.PlayOptions{Speed: *speed, MaxIdle: *maxIdle, Channel: uint32(*channel)})
	switch {
	case ctx.Err() != nil:
		fmt.Fprint(stderr, "\r\nportcullis play: stopped\r\n")
		return exitOK
	case errors.Is(err, recording.ErrTruncated):
		fmt.Fprint(stderr, "\r\nportcullis play: warning: the recording is truncated (the bastion stopped without closing it); played up to its end\r\n")
		return exitOK
	case err != nil:
		return fail(stderr, "play", err)
	}
	return exitOK
}

// cmdRecording runs "recording info" and "recording export".
func cmdRecording(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, recordingUsage)
		return exitUsage
	}
	switch args[0] {
	case "info":
		return recordingInfo(args[1:], stdout, stderr)
	case "export":
		return recordingExport(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, recordingUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "portcullis recording: unknown command %q\n\n%s", args[0], recordingUsage)
		return exitUsage
	}
}

// recordingExport writes asciicast v2 (for `asciinema play`), to -o FILE
// or standard output.
func recordingExport(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("recording export", "portcullis recording export --format asciicast [-o FILE] [--input] [--channel N] RECORDING", stderr)
	format := fs.String("format", "asciicast", "output format (asciicast: asciicast v2, for asciinema play)")
	out := fs.String("o", "", "write to `FILE` (mode 0600) instead of standard output")
	input := fs.Bool("input", false, "include recorded keyboard input as \"i\" events (when input was recorded)")
	channel := fs.Uint("channel", 0, "export only this channel (0 = all)")
	path, code, ok := oneRecording(fs, args, stderr)
	if !ok {
		return code
	}
	if *format != "asciicast" {
		return usageError(fs, stderr, "unknown --format %q (supported: asciicast)", *format)
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(stderr, "recording export", err)
	}
	defer f.Close()
	opts := recording.AsciicastOptions{Channel: uint32(*channel), Input: *input}
	var truncated bool
	export := func(w io.Writer) error {
		err := recording.ExportAsciicast(w, f, opts)
		if errors.Is(err, recording.ErrTruncated) {
			truncated = true
			return nil
		}
		return err
	}
	if *out == "" {
		err = export(stdout)
	} else {
		err = writeFileAtomic(*out, export)
	}
	if err != nil {
		return fail(stderr, "recording export", err)
	}
	if truncated {
		fmt.Fprintln(stderr, "portcullis recording export: warning: the recording is truncated (the bastion stopped without closing it); exported up to its end")
	}
	return exitOK
}

// writeFileAtomic writes path (mode 0600) through a temporary file in the
// same directory, so a failed export never leaves half a file.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// oneRecording parses flags around exactly one RECORDING argument.
func oneRecording(fs *flag.FlagSet, args []string, stderr io.Writer) (string, int, bool) {
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return "", code, false
	}
	if len(pos) != 1 || pos[0] == "" {
		return "", usageError(fs, stderr, "expected exactly one RECORDING file"), false
	}
	return pos[0], 0, true
}

// offset formats a time offset into the session.
func offset(d time.Duration) string {
	return fmt.Sprintf("+%.3fs", d.Seconds())
}
