package config

import (
	"testing"

	"gopkg.in/yaml.v3"
)

func TestSuggest(t *testing.T) {
	keys := []string{"access_host", "routes", "tls", "trusted_proxies", "hsts_max_age"}
	tests := []struct{ got, want string }{
		{"acess_host", "access_host"},
		{"ACCESS_HOST", "access_host"},
		{"tsl", "tls"},
		{"route", "routes"},
		{"trusted_proxy", "trusted_proxies"},
		{"colour", ""},
		{"", ""},
		{string(make([]byte, 5000)), ""},
	}
	for _, tc := range tests {
		if got := suggest(tc.got, keys); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.got, got, tc.want)
		}
	}
}

func TestLooksSecret(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"client_secret", true}, {"password", true}, {"cookie_key", true}, {"api_token", true},
		{"private", true}, {"sentinel_password", true}, {"SECRET", true},
		{"key_prefix", false}, {"key_file", false}, {"client_secret_env", false}, {"monkey_business", false},
		{"issuer", false}, {"", false},
	}
	for _, tc := range tests {
		if got := looksSecret(tc.key); got != tc.want {
			t.Errorf("looksSecret(%q) = %v, want %v", tc.key, got, tc.want)
		}
	}
}

func TestLineOf(t *testing.T) {
	src := `gateway:
  routes:
    - name: a
      host: a.example.com
    - name: b
      upstream: x
session:
  cookie_key_env: K
policy:
  roles:
    - name: engineer
      deny:
        - apps: [x]
`
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	tests := []struct {
		path string
		want int
	}{
		{"gateway", 1},
		{"gateway.routes[1].upstream", 6},
		{"gateway.routes[1].host", 5},          // absent key: its list item
		{"gateway.routes[7].host", 2},          // absent item: the list
		{"session.cookie_key", 8},              // secret written as _env
		{"session.cookie_key_file", 8},         // package names the _file form
		{"policy.roles[engineer].deny[0]", 13}, // authz rule names
		{"policy.roles[0].deny[0].apps[0]", 13},
		{"nope.deeper", 0},
		{"gateway.routes[x", 2},
		{"", 0},
	}
	for _, tc := range tests {
		if got := lineOf(root, tc.path); got != tc.want {
			t.Errorf("lineOf(%q) = %d, want %d", tc.path, got, tc.want)
		}
	}
}

func TestCheckCIDR(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.0.0.0/8", ""},
		{"::/0", ""},
		{"10.0.0.1", `"10.0.0.1" is an address, not a CIDR (did you mean 10.0.0.1/32?)`},
		{"fd00::1", `"fd00::1" is an address, not a CIDR (did you mean fd00::1/128?)`},
		{"10.1.0.0/8", `CIDR "10.1.0.0/8" has host bits set (did you mean 10.0.0.0/8?)`},
		{"10.0.0.0/33", `invalid CIDR "10.0.0.0/33" (expected e.g. 10.0.0.0/8 or fd00::/8)`},
		{"", `invalid CIDR "" (expected e.g. 10.0.0.0/8 or fd00::/8)`},
	}
	for _, tc := range tests {
		if got := checkCIDR(tc.in); got != tc.want {
			t.Errorf("checkCIDR(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDocumentMarkers(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"leading marker", "---\na: 1\n", true},
		{"end marker", "a: 1\n...\n", true},
		{"stray trailing marker", "a: 1\n---\n", true},
		{"trailing empty documents", "a: 1\n---\n---\n# c\n", true},
		{"second document", "a: 1\n---\nb: 2\n", false},
		{"third document", "a: 1\n---\n---\nb: 2\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &diags{file: "x.yaml"}
			root := parse([]byte(tc.in), d)
			if (root != nil) != tc.ok || (len(d.list) == 0) != tc.ok {
				t.Fatalf("root %v, diagnostics %v", root != nil, d.list)
			}
		})
	}
}
