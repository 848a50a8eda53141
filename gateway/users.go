package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// userRecord is the user directory entry written at every successful OIDC
// login. It only ever holds verified claims (from the ID token) and what
// the gateway derived from them; it grants nothing by itself — sessions do.
type userRecord struct {
	UserID    string    `json:"user_id"`
	Email     string    `json:"email,omitempty"`
	Name      string    `json:"name,omitempty"`
	Groups    []string  `json:"groups,omitempty"`
	Roles     []string  `json:"roles,omitempty"`
	LastLogin time.Time `json:"last_login"`
	LastIP    string    `json:"last_ip,omitempty"`
}

// userDirectory is the slice of the store the directory needs.
type userDirectory interface {
	PutUser(ctx context.Context, userID string, data []byte) error
	GetUser(ctx context.Context, userID string) ([]byte, error)
	ListUsers(ctx context.Context) (map[string][]byte, error)
}

var _ userDirectory = (store.Store)(nil)

func putUser(ctx context.Context, d userDirectory, u userRecord) error {
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("encode user record: %w", err)
	}
	return d.PutUser(ctx, u.UserID, b)
}

// getUser returns store.ErrNotFound for unknown users. A record that does
// not decode is reported as unavailable: the directory is corrupt, and
// answering "unknown user" would hide that.
func getUser(ctx context.Context, d userDirectory, userID string) (userRecord, error) {
	b, err := d.GetUser(ctx, userID)
	if err != nil {
		return userRecord{}, err
	}
	var u userRecord
	if err := json.Unmarshal(b, &u); err != nil {
		return userRecord{}, fmt.Errorf("%w: user record %q: %v", store.ErrUnavailable, userID, err)
	}
	return u, nil
}

// listUsers returns every directory record sorted by user ID.
func listUsers(ctx context.Context, d userDirectory) ([]userRecord, error) {
	m, err := d.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]userRecord, 0, len(m))
	for id, b := range m {
		var u userRecord
		if err := json.Unmarshal(b, &u); err != nil {
			return nil, fmt.Errorf("%w: user record %q: %v", store.ErrUnavailable, id, err)
		}
		if u.UserID == "" {
			u.UserID = id
		}
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
	return out, nil
}

// isNotFound reports a missing record (never an unavailable store).
func isNotFound(err error) bool {
	return errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrUnavailable)
}
