package main

import (
	"fmt"
	"io"

	"github.com/portcullis/portcullis/bastion/recording"
)

const rotateKeyUsage = "portcullis admin rotate-key --old-key FILE --new-key FILE --dir RECORDING-DIR"

// adminRotateKey re-wraps every recording's data key from the old
// recording key to the new one, in place (recording.RekeyDir). It works
// on the files directly, not through the server: run it as the user that
// owns the recordings. It is safe while the bastion writes (only the
// header's key slots change) and after a crash (run it again). It is not
// recorded in the audit trail: the trail belongs to the running server
// and this command does not open it; its summary is the record.
//
// The order of a rotation: generate the new key, run this, switch
// bastion.recording_key_file to the new key and restart or reload, then
// run this again for the recordings created in between. Keep the old key
// until the second run reports nothing left under it.
func adminRotateKey(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin rotate-key", rotateKeyUsage, stderr)
	oldFile := fs.String("old-key", "", "the current recording key `FILE`")
	newFile := fs.String("new-key", "", "the new recording key `FILE` (32 bytes: openssl rand -hex 32)")
	dir := fs.String("dir", "", "the recording `DIR`ectory (the bastion's recording_dir)")
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	switch {
	case len(pos) != 0:
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	case *oldFile == "" || *newFile == "" || *dir == "":
		return usageError(fs, stderr, "--old-key, --new-key and --dir are required")
	}
	oldKey, err := readRecordingKey(*oldFile)
	if err != nil {
		return fail(stderr, "admin rotate-key", fmt.Errorf("--old-key: %w", err))
	}
	newKey, err := readRecordingKey(*newFile)
	if err != nil {
		return fail(stderr, "admin rotate-key", fmt.Errorf("--new-key: %w", err))
	}
	if oldKey.ID() == newKey.ID() {
		return usageError(fs, stderr, "--old-key and --new-key are the same key (%s)", oldKey.ID())
	}
	entries, err := recording.RekeyDir(*dir, oldKey, newKey)
	if err != nil {
		return fail(stderr, "admin rotate-key", err)
	}
	var rekeyed, already, failed int
	for _, e := range entries {
		switch {
		case e.Err != nil:
			failed++
			fmt.Fprintf(stderr, "portcullis admin rotate-key: %s: %v\n", e.Path, e.Err)
		case e.Rekey == recording.Rekeyed:
			rekeyed++
		case e.Rekey == recording.AlreadyNewKey:
			already++
		}
	}
	fmt.Fprintf(stdout, "key %s -> %s in %s: %d rekeyed, %d already under the new key, %d failed\n",
		oldKey.ID(), newKey.ID(), *dir, rekeyed, already, failed)
	if failed > 0 {
		return exitFail
	}
	return exitOK
}
