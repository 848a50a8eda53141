package config

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestDeployExamples loads every example configuration shipped in deploy/
// through the real loader. The examples name secret files that only exist
// on a real server, so the test uses FakeSecrets (what `portcullis config
// check --no-secrets FILE` does): everything but the secrets' contents is
// validated — structure, types, paths, CIDRs, package validation and the
// policy compilation.
//
// Convention: deploy/portcullis*.yaml are Portcullis configuration files;
// the Kubernetes ConfigMap carries one more under data["portcullis.yaml"].
func TestDeployExamples(t *testing.T) {
	root := filepath.Join("..", "..", "..", "..", "deploy")
	files, err := filepath.Glob(filepath.Join(root, "portcullis*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("expected the example configs in %s, found %v (%v)", root, files, err)
	}
	opts := Options{FakeSecrets: true, LookupEnv: func(string) (string, bool) { return "", false }}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, _, err := Load(f, opts); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
	t.Run("k8s/configmap.yaml", func(t *testing.T) {
		cmPath := filepath.Join(root, "k8s", "configmap.yaml")
		data, err := os.ReadFile(cmPath)
		if err != nil {
			t.Fatal(err)
		}
		var cm struct {
			Data map[string]string `yaml:"data"`
		}
		if err := yaml.Unmarshal(data, &cm); err != nil {
			t.Fatal(err)
		}
		embedded := cm.Data["portcullis.yaml"]
		if embedded == "" {
			t.Fatal("ConfigMap has no portcullis.yaml")
		}
		if _, _, err := Parse(cmPath+"#portcullis.yaml", []byte(embedded), opts); err != nil {
			t.Errorf("%v", err)
		}
	})
}
