package authz

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// jsonPolicy mirrors the policy section of the YAML config (snake_case keys)
// so the golden inputs read like real configs.
type jsonPolicy struct {
	AllowedCIDRs []string     `json:"allowed_cidrs"`
	Apps         []jsonApp    `json:"apps"`
	Targets      []jsonTarget `json:"targets"`
	Roles        []jsonRole   `json:"roles"`
}

type jsonApp struct {
	Name         string   `json:"name"`
	AllowedCIDRs []string `json:"allowed_cidrs"`
	Public       bool     `json:"public"`
}

type jsonTarget struct {
	Name         string            `json:"name"`
	Labels       map[string]string `json:"labels"`
	AllowedCIDRs []string          `json:"allowed_cidrs"`
}

type jsonRole struct {
	Name          string     `json:"name"`
	Groups        []string   `json:"groups"`
	Users         []string   `json:"users"`
	AllowedCIDRs  []string   `json:"allowed_cidrs"`
	MaxSessionTTL string     `json:"max_session_ttl"`
	RequireMFA    *bool      `json:"require_mfa"`
	Admin         bool       `json:"admin"`
	PortForwards  []string   `json:"port_forwards"`
	Allow         []jsonRule `json:"allow"`
	Deny          []jsonRule `json:"deny"`
}

type jsonRule struct {
	Apps         []string          `json:"apps"`
	PathPrefixes []string          `json:"path_prefixes"`
	Methods      []string          `json:"methods"`
	Logins       []string          `json:"logins"`
	Targets      []string          `json:"targets"`
	TargetLabels map[string]string `json:"target_labels"`
}

func (j jsonPolicy) config(t *testing.T) PolicyConfig {
	t.Helper()
	cfg := PolicyConfig{AllowedCIDRs: j.AllowedCIDRs}
	for _, a := range j.Apps {
		cfg.Apps = append(cfg.Apps, AppConfig(a))
	}
	for _, tg := range j.Targets {
		cfg.Targets = append(cfg.Targets, TargetConfig(tg))
	}
	for _, r := range j.Roles {
		var ttl time.Duration
		if r.MaxSessionTTL != "" {
			var err error
			if ttl, err = time.ParseDuration(r.MaxSessionTTL); err != nil {
				t.Fatalf("role %s: %v", r.Name, err)
			}
		}
		cfg.Roles = append(cfg.Roles, RoleConfig{
			Name: r.Name, Groups: r.Groups, Users: r.Users, AllowedCIDRs: r.AllowedCIDRs,
			MaxSessionTTL: ttl, RequireMFA: r.RequireMFA, Admin: r.Admin, PortForwards: r.PortForwards,
			Allow: rulesOf(r.Allow), Deny: rulesOf(r.Deny),
		})
	}
	return cfg
}

func rulesOf(js []jsonRule) []Rule {
	var out []Rule
	for _, r := range js {
		out = append(out, Rule(r))
	}
	return out
}

// jsonRequest is one golden request. Omitted fields take the defaults in
// request(): an MFA-verified user "alice" authenticated an hour ago, GET
// from 10.1.2.3.
type jsonRequest struct {
	Name    string   `json:"name"`
	Kind    string   `json:"kind"` // http (default) | ssh | none
	User    *string  `json:"user"`
	Roles   []string `json:"roles"`
	MFA     *bool    `json:"mfa"`
	AuthAge string   `json:"auth_age"` // "zero" = zero AuthTime
	IP      *string  `json:"ip"`
	App     string   `json:"app"`
	Method  *string  `json:"method"`
	RawPath *string  `json:"raw_path"` // run through NormalizePath first
	Path    string   `json:"path"`     // used verbatim
	Target  string   `json:"target"`
	Login   string   `json:"login"`
}

type goldenInput struct {
	Now      time.Time     `json:"now"`
	Policy   jsonPolicy    `json:"policy"`
	Requests []jsonRequest `json:"requests"`
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func (j jsonRequest) request(t *testing.T, now time.Time) (*Request, error) {
	t.Helper()
	req := &Request{
		Subject: Subject{UserID: "alice", Roles: j.Roles, MFA: true, AuthTime: now.Add(-time.Hour)},
		App:     j.App, Method: "GET", Path: j.Path, Target: j.Target, Login: j.Login,
	}
	switch j.Kind {
	case "", "http":
		req.Kind = KindHTTP
	case "ssh":
		req.Kind = KindSSH
	case "none":
	default:
		t.Fatalf("%s: bad kind %q", j.Name, j.Kind)
	}
	if j.User != nil {
		req.Subject.UserID = *j.User
	}
	if j.MFA != nil {
		req.Subject.MFA = *j.MFA
	}
	switch j.AuthAge {
	case "":
	case "zero":
		req.Subject.AuthTime = time.Time{}
	default:
		age, err := time.ParseDuration(j.AuthAge)
		if err != nil {
			t.Fatalf("%s: %v", j.Name, err)
		}
		req.Subject.AuthTime = now.Add(-age)
	}
	ip := "10.1.2.3"
	if j.IP != nil {
		ip = *j.IP
	}
	if ip != "" {
		req.SourceIP = netip.MustParseAddr(ip)
	}
	if j.Method != nil {
		req.Method = *j.Method
	}
	if j.RawPath != nil {
		p, err := NormalizePath(*j.RawPath)
		if err != nil {
			return nil, err
		}
		req.Path = p
	}
	return req, nil
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./authz -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("%s:%d\n got: %s\nwant: %s", path, i+1, g, w)
			}
		}
		t.Fatalf("%s differs (if the change is intended, run go test ./authz -update and review the diff)", path)
	}
}

func TestGoldenDecisions(t *testing.T) {
	var in goldenInput
	readJSON(t, "policy.json", &in)
	p, err := Compile(in.Policy.config(t))
	if err != nil {
		t.Fatalf("golden policy does not compile: %v", err)
	}
	var out bytes.Buffer
	seen := map[string]bool{}
	for _, jr := range in.Requests {
		if seen[jr.Name] {
			t.Fatalf("duplicate request name %q", jr.Name)
		}
		seen[jr.Name] = true
		req, err := jr.request(t, in.Now)
		if err != nil {
			fmt.Fprintf(&out, "%-44s 400 %v\n", jr.Name, err)
			continue
		}
		d := p.Evaluate(req, in.Now)
		fmt.Fprintf(&out, "%-44s allow=%-5v reason=%s", jr.Name, d.Allow, d.Reason)
		if d.Role != "" {
			fmt.Fprintf(&out, " role=%s", d.Role)
		}
		if d.Rule != "" {
			fmt.Fprintf(&out, " rule=%s", d.Rule)
		}
		out.WriteByte('\n')
	}
	checkGolden(t, "decisions.golden", out.Bytes())
}

func TestGoldenCompileErrors(t *testing.T) {
	var cases []struct {
		Name   string     `json:"name"`
		Policy jsonPolicy `json:"policy"`
	}
	readJSON(t, "compile_errors.json", &cases)
	var out bytes.Buffer
	for _, c := range cases {
		p, err := Compile(c.Policy.config(t))
		if err == nil || p != nil {
			t.Errorf("%s: Compile succeeded, want errors", c.Name)
			continue
		}
		fmt.Fprintf(&out, "== %s\n", c.Name)
		for _, e := range Flatten(err) {
			if _, ok := e.(*FieldError); !ok {
				t.Errorf("%s: %T is not a *FieldError: %v", c.Name, e, e)
			}
			fmt.Fprintf(&out, "%s\n", e)
		}
	}
	checkGolden(t, "compile_errors.golden", out.Bytes())
}
