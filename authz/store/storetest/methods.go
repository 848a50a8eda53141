package storetest

import (
	"context"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// Method calls one store method with valid arguments and returns its
// error. Backends use Methods to check that every method fails closed
// (errors wrapping store.ErrUnavailable) when the backend cannot answer.
type Method struct {
	Name string
	Call func(ctx context.Context, s store.Store) error
}

// Methods lists every store.Store method except Close.
func Methods() []Method {
	exp := time.Now().Add(time.Hour)
	return []Method{
		{"Ping", func(ctx context.Context, s store.Store) error { return s.Ping(ctx) }},
		{"PutUser", func(ctx context.Context, s store.Store) error { return s.PutUser(ctx, "u", []byte("{}")) }},
		{"GetUser", func(ctx context.Context, s store.Store) error { _, err := s.GetUser(ctx, "u"); return err }},
		{"ListUsers", func(ctx context.Context, s store.Store) error { _, err := s.ListUsers(ctx); return err }},
		{"DeleteUser", func(ctx context.Context, s store.Store) error { return s.DeleteUser(ctx, "u") }},
		{"PutSession", func(ctx context.Context, s store.Store) error {
			return s.PutSession(ctx, store.Session{ID: "s", UserID: "u", ExpiresAt: exp})
		}},
		{"GetSession", func(ctx context.Context, s store.Store) error { _, err := s.GetSession(ctx, "s"); return err }},
		{"DeleteSession", func(ctx context.Context, s store.Store) error { return s.DeleteSession(ctx, "s") }},
		{"ListSessions(user)", func(ctx context.Context, s store.Store) error { _, err := s.ListSessions(ctx, "u"); return err }},
		{"ListSessions(all)", func(ctx context.Context, s store.Store) error { _, err := s.ListSessions(ctx, ""); return err }},
		{"GetEnrolment", func(ctx context.Context, s store.Store) error { _, err := s.GetEnrolment(ctx, "u"); return err }},
		{"PutEnrolment", func(ctx context.Context, s store.Store) error { return s.PutEnrolment(ctx, "u", []byte("b")) }},
		{"DeleteEnrolment", func(ctx context.Context, s store.Store) error { return s.DeleteEnrolment(ctx, "u") }},
		{"ClaimStep", func(ctx context.Context, s store.Store) error {
			_, err := s.ClaimStep(ctx, "u", 1, time.Minute)
			return err
		}},
		{"PutRecoveryCodes", func(ctx context.Context, s store.Store) error { return s.PutRecoveryCodes(ctx, "u", []string{"h"}) }},
		{"ConsumeRecoveryCode", func(ctx context.Context, s store.Store) error {
			_, err := s.ConsumeRecoveryCode(ctx, "u", "h")
			return err
		}},
		{"RecoveryCodesLeft", func(ctx context.Context, s store.Store) error { _, err := s.RecoveryCodesLeft(ctx, "u"); return err }},
		{"ListEnrolled", func(ctx context.Context, s store.Store) error { _, err := s.ListEnrolled(ctx); return err }},
		{"Incr", func(ctx context.Context, s store.Store) error { _, err := s.Incr(ctx, "c", 1, time.Minute); return err }},
		{"Count", func(ctx context.Context, s store.Store) error { _, err := s.Count(ctx, "c"); return err }},
		{"PutLock", func(ctx context.Context, s store.Store) error { return s.PutLock(ctx, store.Lock{Subject: "user:u"}) }},
		{"AddLock", func(ctx context.Context, s store.Store) error {
			_, err := s.AddLock(ctx, store.Lock{Subject: "user:u"})
			return err
		}},
		{"GetLock", func(ctx context.Context, s store.Store) error { _, err := s.GetLock(ctx, "user:u"); return err }},
		{"DeleteLock", func(ctx context.Context, s store.Store) error { return s.DeleteLock(ctx, "user:u") }},
		{"ListLocks", func(ctx context.Context, s store.Store) error { _, err := s.ListLocks(ctx); return err }},
		{"PutEphemeral", func(ctx context.Context, s store.Store) error {
			return s.PutEphemeral(ctx, "e", []byte("v"), time.Minute)
		}},
		{"GetEphemeral", func(ctx context.Context, s store.Store) error { _, err := s.GetEphemeral(ctx, "e"); return err }},
		{"TakeEphemeral", func(ctx context.Context, s store.Store) error { _, err := s.TakeEphemeral(ctx, "e"); return err }},
		{"DeleteEphemeral", func(ctx context.Context, s store.Store) error { return s.DeleteEphemeral(ctx, "e") }},
		{"PutPresence", func(ctx context.Context, s store.Store) error {
			return s.PutPresence(ctx, "k", "p", []byte("v"), time.Minute)
		}},
		{"DeletePresence", func(ctx context.Context, s store.Store) error { return s.DeletePresence(ctx, "k", "p") }},
		{"ListPresence", func(ctx context.Context, s store.Store) error { _, err := s.ListPresence(ctx, "k"); return err }},
		{"PutRecord", func(ctx context.Context, s store.Store) error { return s.PutRecord(ctx, "k", "r", []byte("v")) }},
		{"CreateRecord", func(ctx context.Context, s store.Store) error {
			_, err := s.CreateRecord(ctx, "k", "r", []byte("v"))
			return err
		}},
		{"GetRecord", func(ctx context.Context, s store.Store) error { _, err := s.GetRecord(ctx, "k", "r"); return err }},
		{"SwapRecord", func(ctx context.Context, s store.Store) error {
			_, err := s.SwapRecord(ctx, "k", "r", []byte("v"), []byte("w"))
			return err
		}},
		{"DeleteRecord", func(ctx context.Context, s store.Store) error { return s.DeleteRecord(ctx, "k", "r") }},
		{"ListRecords", func(ctx context.Context, s store.Store) error { _, err := s.ListRecords(ctx, "k"); return err }},
		{"Publish", func(ctx context.Context, s store.Store) error {
			return s.Publish(ctx, store.Event{Kind: store.EventSessionRevoked, Subject: "s"})
		}},
		{"Subscribe", func(ctx context.Context, s store.Store) error { _, err := s.Subscribe(ctx); return err }},
	}
}
