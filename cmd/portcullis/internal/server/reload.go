package server

import (
	"reflect"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
)

// reloadRisk swaps the risk engine's settings for cfg's (counts, history
// and locks survive). Load has already validated them, but should the
// engine still refuse them the settings in force stay: a bad risk section
// must never leave the instance without detection. The outcome is noted
// on the reload's audit event ev (as a code: no settings or secrets).
func (in *Instance) reloadRisk(cfg *config.Config, ev *audit.Event) {
	if in.Risk == nil {
		return
	}
	in.reloadGeo(cfg, ev)
	if reflect.DeepEqual(in.Risk.Config(), cfg.Risk.WithDefaults()) {
		return
	}
	if err := in.Risk.SetConfig(cfg.Risk); err != nil {
		ev.Attrs["risk"] = "invalid-risk-config-kept-previous"
		in.log.Error("risk settings refused on reload; keeping the ones in force", "err", err)
		return
	}
	ev.Attrs["risk"] = "reloaded"
	in.log.Info("risk settings reloaded")
}

// restartSections names the sections whose settings differ between old and
// new, other than the policy, risk and access (which reload applies). Secrets are compared
// but never printed.
func restartSections(old, cur *config.Config) []string {
	var out []string
	for _, s := range []struct {
		name     string
		old, cur any
	}{
		{"instance", old.Instance, cur.Instance},
		{"data_dir", old.DataDir, cur.DataDir},
		{"admin_socket", old.AdminSocket, cur.AdminSocket},
		{"log", old.Log, cur.Log},
		{"gateway", old.Gateway, cur.Gateway},
		{"identity", old.Identity, cur.Identity},
		{"mfa", old.MFA, cur.MFA},
		{"session", old.Session, cur.Session},
		{"session.assertion_key", true, old.AssertionKey != nil && old.AssertionKey.Equal(cur.AssertionKey)},
		{"store", storeView(old.Store), storeView(cur.Store)},
		{"audit", old.Audit, cur.Audit},
		{"audit.sinks", sinksView(old.AuditSinks), sinksView(cur.AuditSinks)},
		{"retention", old.Retention, cur.Retention},
		{"reviews", old.Reviews, cur.Reviews},
		{"bastion", bastionView(old), bastionView(cur)},
		{"bastion.recording_storage", recordingStorageView(old.RecordingStorage), recordingStorageView(cur.RecordingStorage)},
	} {
		if !reflect.DeepEqual(s.old, s.cur) {
			out = append(out, s.name)
		}
	}
	return out
}

// storeView drops the *tls.Config (rebuilt on every load, so never equal
// by pointer) from the comparison.
func storeView(s config.StoreConfig) config.StoreConfig {
	s.Redis.TLS = nil
	return s
}

// bastionView is the bastion configuration with keys replaced by their
// public halves (signers are compared by key, not by object).
func bastionView(c *config.Config) any {
	if c.Bastion == nil {
		return nil
	}
	b := *c.Bastion
	pub := func(s ssh.Signer) string {
		if s == nil {
			return ""
		}
		return string(s.PublicKey().Marshal())
	}
	var hostKeys []string
	for _, k := range b.HostKeys {
		hostKeys = append(hostKeys, pub(k))
	}
	up := pub(b.UpstreamCA)
	var userCAs []string
	for _, k := range b.UserCAKeys {
		userCAs = append(userCAs, string(k.Marshal()))
	}
	b.HostKeys, b.UpstreamCA, b.UserCAKeys = nil, nil, nil
	return []any{b, hostKeys, up, userCAs, pub(c.SSHUserCA)}
}
