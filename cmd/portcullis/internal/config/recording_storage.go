package config

import (
	"net/url"
	"strings"
	"time"

	"github.com/portcullis/portcullis/bastion/recording/s3store"
)

// RecordingStorageSection (bastion.recording_storage) maps to
// s3store.Config: closed session recordings are also kept in an
// S3-compatible bucket (AWS S3, MinIO, Ceph RGW, versitygw, …).
//
//	endpoint     https://host[:port] (http:// only to a loopback address)
//	bucket       the bucket (it must exist; serve checks at start-up)
//	prefix       folder in the bucket (default: the top)
//	region       default us-east-1
//	access_key_file / access_key_env, secret_key_file / secret_key_env
//	ca_file      CA certificates for the endpoint (default: system roots)
//	keep_local   how long the local copy stays after a verified upload:
//	             absent = until retention.recordings, 0s = removed at once
type RecordingStorageSection struct {
	Endpoint  string    `yaml:"endpoint,required"`
	Bucket    string    `yaml:"bucket,required"`
	Prefix    string    `yaml:"prefix"`
	Region    string    `yaml:"region"`
	AccessKey SecretRef `yaml:"access_key,required"`
	SecretKey SecretRef `yaml:"secret_key,required"`
	CAFile    string    `yaml:"ca_file"`
	// A pointer: absent (keep until retention) differs from 0s (remove
	// at once). Negative durations are refused by the decoder.
	KeepLocal *Duration `yaml:"keep_local"`
}

// recordingStorage builds the bucket's configuration (nil without the
// section) and maps its Validate messages onto the file's keys.
func (b *builder) recordingStorage(s *RecordingStorageSection) *s3store.Config {
	if s == nil {
		return nil
	}
	const base = "bastion.recording_storage"
	sc := &s3store.Config{
		Endpoint:  s.Endpoint,
		Bucket:    s.Bucket,
		Prefix:    s.Prefix,
		Region:    s.Region,
		AccessKey: b.textSecret(s.AccessKey),
		SecretKey: b.textSecret(s.SecretKey),
		KeepLocal: s3store.KeepLocalUntilRetention,
	}
	if s.KeepLocal != nil {
		sc.KeepLocal = time.Duration(*s.KeepLocal)
	}
	if s.CAFile != "" {
		if u, err := url.Parse(s.Endpoint); err == nil && u.Scheme == "http" {
			b.errAt(base+".ca_file", "only with an https endpoint")
		}
		sc.RootCAs, sc.CAFile = b.certPool(base+".ca_file", s.CAFile)
	}
	secretPath := func(ref SecretRef, key string) string {
		if ref.IsSet() {
			return ref.Path + sourceSuffix(ref)
		}
		return base + "." + key
	}
	b.fieldErrors(base, sc.Validate(), func(p string) string {
		switch strings.TrimPrefix(p, base+".") {
		case "access_key":
			return secretPath(s.AccessKey, "access_key")
		case "secret_key":
			return secretPath(s.SecretKey, "secret_key")
		}
		return p
	})
	return sc
}
