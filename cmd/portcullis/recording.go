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
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
)

// Recordings are read from files the bastion wrote; they are untrusted
// input (a session's output is whatever the target sent), which the
// recording reader bounds and the printers below sanitise, except where
// replaying the terminal output is the point (play, asciicast). They are
// encrypted and hash-chained: the reader authenticates each chunk before
// anything of it is printed, so a modified file shows at most what came
// before the damage, and every command exits 1 on a wrong key, tampering
// or an incomplete recording (--allow-incomplete accepts the last, which a
// killed bastion leaves behind).

const recordingUsage = `Usage:
  portcullis recording info (--key FILE | --config FILE) [--json] [--allow-incomplete] RECORDING
  portcullis recording export (--key FILE | --config FILE) --format asciicast [-o FILE] [--input] [--channel N] [--allow-incomplete] RECORDING
  portcullis play (--key FILE | --config FILE) [--speed X] [--max-idle D] [--channel N] [--allow-incomplete] RECORDING
`

// keyFlags are the ways a recording command gets the recording key.
type keyFlags struct {
	key, config     *string
	allowIncomplete *bool
}

func addKeyFlags(fs *flag.FlagSet) *keyFlags {
	return &keyFlags{
		key:             fs.String("key", "", "the recording key `FILE` (the bastion's recording_key_file: 32 bytes, hex or base64)"),
		config:          fs.String("config", "", "read the recording key from the configuration `FILE` (bastion.recording_key_file|_env)"),
		allowIncomplete: fs.Bool("allow-incomplete", false, "exit 0 for a recording without its end (the bastion was killed): shown up to its last whole chunk"),
	}
}

// load returns the key; ok is false after a usage error was printed.
func (k *keyFlags) load(fs *flag.FlagSet, stderr io.Writer) (*recording.Key, int, bool) {
	switch {
	case *k.key != "" && *k.config != "":
		return nil, usageError(fs, stderr, "give only one of --key and --config"), false
	case *k.key != "":
		key, err := readRecordingKey(*k.key)
		if err != nil {
			return nil, fail(stderr, fs.Name(), err), false
		}
		return key, 0, true
	case *k.config != "":
		cfg, _, err := config.Load(*k.config, config.Options{})
		if err != nil {
			return nil, fail(stderr, fs.Name(), err), false
		}
		if cfg.Bastion == nil || cfg.Bastion.RecordingKey == nil {
			return nil, fail(stderr, fs.Name(), fmt.Errorf("%s has no bastion section (and so no recording key)", *k.config)), false
		}
		return cfg.Bastion.RecordingKey, 0, true
	}
	return nil, usageError(fs, stderr, "recordings are encrypted: give --key FILE (the bastion's recording_key_file) or --config FILE"), false
}

// readRecordingKey reads a 32-byte key file (raw, hex or base64).
func readRecordingKey(path string) (*recording.Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, err
	}
	raw, err := keys.ParseSymmetric(b)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %v", path, err)
	}
	return recording.NewKey(raw)
}

// recordingFailure reports a read error with what it means and returns
// the exit status. An incomplete recording is a warning with
// --allow-incomplete. prefix precedes the message ("\r\n" after terminal
// output).
func recordingFailure(stderr io.Writer, cmd, prefix string, err error, allowIncomplete bool) int {
	var hint string
	switch {
	case errors.Is(err, recording.ErrTruncated):
		if allowIncomplete {
			fmt.Fprintf(stderr, "%sportcullis %s: warning: %v (the bastion stopped without closing it, or the file was cut); shown up to there\r\n", prefix, cmd, err)
			return exitOK
		}
		hint = "the bastion stopped without closing it, or the file was cut; what came before is authentic and was shown (--allow-incomplete accepts this)"
	case errors.Is(err, recording.ErrTampered):
		hint = "the file was modified after it was written; nothing from the damaged part on was shown"
	case errors.Is(err, recording.ErrWrongKey):
		hint = "use the key the bastion had when it wrote the recording, or rotate with portcullis admin rotate-key"
	}
	if hint != "" {
		fmt.Fprintf(stderr, "%sportcullis %s: %v\r\n  (%s)\r\n", prefix, cmd, err, hint)
	} else {
		fmt.Fprintf(stderr, "%sportcullis %s: %v\r\n", prefix, cmd, err)
	}
	return exitFail
}

// cmdPlay replays a recording's output in the terminal with its timing.
func cmdPlay(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("play", "portcullis play (--key FILE | --config FILE) [--speed X] [--max-idle D] [--channel N] [--allow-incomplete] RECORDING", stderr)
	kf := addKeyFlags(fs)
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
	key, code, ok := kf.load(fs, stderr)
	if !ok {
		return code
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(stderr, "play", err)
	}
	defer f.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = recording.Play(ctx, stdout, f, key, recording.PlayOptions{Speed: *speed, MaxIdle: *maxIdle, Channel: uint32(*channel)})
	switch {
	case ctx.Err() != nil:
		fmt.Fprint(stderr, "\r\nportcullis play: stopped\r\n")
		return exitOK
	case err != nil:
		return recordingFailure(stderr, "play", "\r\n", err, *kf.allowIncomplete)
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
	fs := newFlagSet("recording export", "portcullis recording export (--key FILE | --config FILE) --format asciicast [-o FILE] [--input] [--channel N] [--allow-incomplete] RECORDING", stderr)
	kf := addKeyFlags(fs)
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
	key, code, ok := kf.load(fs, stderr)
	if !ok {
		return code
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(stderr, "recording export", err)
	}
	defer f.Close()
	opts := recording.AsciicastOptions{Channel: uint32(*channel), Input: *input}
	// An incomplete recording's file is still written (what it holds is
	// authentic); a tampered one's is not.
	var incomplete error
	export := func(w io.Writer) error {
		err := recording.ExportAsciicast(w, f, key, opts)
		if errors.Is(err, recording.ErrTruncated) {
			incomplete = err
			return nil
		}
		return err
	}
	if *out == "" {
		err = export(stdout)
	} else {
		err = writeFileAtomic(*out, export)
	}
	if err == nil {
		err = incomplete
	}
	if err != nil {
		return recordingFailure(stderr, "recording export", "", err, *kf.allowIncomplete)
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
