package review

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// Config tunes reviews; zero values take the documented defaults.
type Config struct {
	DormantAfter time.Duration // no login and no use this long before the snapshot; zero value 90 days
	Period       time.Duration // look-back for uses and "unused"; zero value 92 days (a quarter)
	Due          time.Duration // a campaign is due this long after its start; zero value 14 days
	Cadence      time.Duration // a new campaign is due this long after the last start; zero value 92 days
}

// Defaults for Config's zero values.
const (
	DefaultDormantAfter = 90 * 24 * time.Hour
	DefaultPeriod       = 92 * 24 * time.Hour
	DefaultDue          = 14 * 24 * time.Hour
	DefaultCadence      = 92 * 24 * time.Hour
)

func (c Config) withDefaults() (Config, error) {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
		key string
	}{
		{&c.DormantAfter, DefaultDormantAfter, "dormant_after"},
		{&c.Period, DefaultPeriod, "period"},
		{&c.Due, DefaultDue, "due"},
		{&c.Cadence, DefaultCadence, "cadence"},
	} {
		switch {
		case *d.v < 0:
			return c, fmt.Errorf("%w: reviews.%s must not be negative", ErrInvalid, d.key)
		case *d.v == 0:
			*d.v = d.def
		}
	}
	return c, nil
}

// Source says how a user holds a role.
type Source string

// Sources.
const (
	SourceIdPGroup  Source = "idp-group" // a directory group of the user maps to the role
	SourceConfig    Source = "config"    // the role's users: list names the user (ID or email)
	SourceLocal     Source = "local"     // an admin-added grant (authz/access)
	SourceTemporary Source = "temporary" // a just-in-time grant from an approved request
)

// grantSource reports whether revoking an item of s is done here (a grant)
// rather than by a human (a group or the config file).
func (s Source) grantSource() bool { return s == SourceLocal || s == SourceTemporary }

// Decisions.
const (
	Keep   = "keep"
	Revoke = "revoke"
)

// Use is what a role was used for in the review period: one app route, or
// one SSH target with one login.
type Use struct {
	Kind  string    `json:"kind"` // "app" | "ssh"
	Name  string    `json:"name"` // route or target
	Login string    `json:"login,omitempty"`
	Last  time.Time `json:"last"`
	Count int       `json:"count"`
}

// Item is one way one user holds one role, with its evidence and decision.
type Item struct {
	ID          string `json:"id"`
	UserID      string `json:"user_id,omitempty"` // empty only for a config email entry nobody logged in with
	Email       string `json:"email,omitempty"`
	Role        string `json:"role"`
	Source      Source `json:"source"`
	Group       string `json:"group,omitempty"`        // idp-group: the IdP group
	ConfigEntry string `json:"config_entry,omitempty"` // config: the users: entry as written
	GrantID     string `json:"grant_id,omitempty"`     // local/temporary
	// GrantStart and GrantExpires bound a grant; GrantExpires zero = until revoked.
	GrantStart   time.Time `json:"grant_start,omitzero"`
	GrantExpires time.Time `json:"grant_expires,omitzero"`

	LastLogin time.Time `json:"last_login,omitzero"`
	Uses      []Use     `json:"uses,omitempty"` // in the period, by kind, name, login
	LastUse   time.Time `json:"last_use,omitzero"`

	Dormant     bool `json:"dormant"`
	Unused      bool `json:"unused"`
	Locked      bool `json:"locked"`
	MFAEnrolled bool `json:"mfa_enrolled"`

	Decision  string    `json:"decision,omitempty"` // "", "keep", "revoke"
	DecidedBy string    `json:"decided_by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	Note      string    `json:"note,omitempty"`
	// Action is what a human must do for a revoked idp-group or config item.
	Action string `json:"action,omitempty"`
	// Revoked says a local/temporary revocation was applied.
	Revoked bool `json:"revoked,omitempty"`
}

// Campaign is one review: its header and its items (sorted by ID).
type Campaign struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	CreatedAt   time.Time `json:"created_at"` // the snapshot time: the end of the period
	Due         time.Time `json:"due"`
	PeriodStart time.Time `json:"period_start"`
	CreatedBy   string    `json:"created_by"`
	SignedOffBy string    `json:"signed_off_by,omitempty"`
	SignedOffAt time.Time `json:"signed_off_at,omitzero"`
	Items       []Item    `json:"items"`
}

// Errors. Store failures pass through (they wrap store.ErrUnavailable).
var (
	ErrInvalid    = errors.New("review: invalid input")
	ErrNotFound   = errors.New("review: no such campaign or item")
	ErrExists     = errors.New("review: a campaign with this name already exists")
	ErrSignedOff  = errors.New("review: the campaign is signed off")
	ErrUndecided  = errors.New("review: not every item is decided and applied")
	ErrBusy       = errors.New("review: another admin is changing this right now; try again")
	ErrRevoked    = errors.New("review: the grant is already revoked; keeping it needs a new grant")
	ErrIncomplete = errors.New("review: the campaign's start was interrupted; start a new one")
)

// Store is the slice of store.Store a review needs.
type Store interface {
	// Records, without Put and Delete: campaigns are created once and
	// changed only by compare-and-swap.
	CreateRecord(ctx context.Context, kind, id string, data []byte) (bool, error)
	GetRecord(ctx context.Context, kind, id string) ([]byte, error) // store.ErrNotFound
	SwapRecord(ctx context.Context, kind, id string, old, new []byte) (bool, error)
	ListRecords(ctx context.Context, kind string) (map[string][]byte, error)
	ListUsers(ctx context.Context) (map[string][]byte, error)
	ListLocks(ctx context.Context) ([]store.Lock, error)
	ListEnrolled(ctx context.Context) ([]string, error)
}

var _ Store = (store.Store)(nil)

// Grants is the slice of the just-in-time access manager a review needs.
type Grants interface {
	ListGrants(ctx context.Context) ([]access.Grant, error) // active grants
	RevokeGrant(ctx context.Context, actor, grantID, reason string) error
}

var _ Grants = (*access.Manager)(nil)

// Deps are the Manager's collaborators.
type Deps struct {
	Store  Store
	Policy func() *authz.Policy // the current compiled policy
	// Grants lists and revokes local/temporary grants; nil when
	// just-in-time access is off (no such items then).
	Grants   Grants
	AuditDir string // the trail directory, read with audit.Scan
	Audit    audit.Emitter
	Now      func() time.Time // default time.Now
	Rand     io.Reader        // sign-off tokens; default crypto/rand
	Logger   *slog.Logger     // default: discard
}

// Manager runs campaigns. It holds no campaign state itself: every
// instance sees the same campaigns through the store.
type Manager struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
}

// New checks cfg and deps.
func New(cfg Config, deps Deps) (*Manager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	switch {
	case deps.Store == nil:
		return nil, errors.New("review: no store")
	case deps.Policy == nil:
		return nil, errors.New("review: no policy")
	case deps.AuditDir == "":
		return nil, errors.New("review: no audit directory (last-use data comes from the trail)")
	case deps.Audit == nil:
		return nil, errors.New("review: no audit emitter")
	}
	// A nil *access.Manager is how callers say "JIT access is off"; in
	// the interface it would not compare equal to nil, and its store
	// methods are not nil-safe.
	if g, ok := deps.Grants.(*access.Manager); ok && g == nil {
		deps.Grants = nil
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Rand == nil {
		deps.Rand = rand.Reader
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, deps: deps, log: log}, nil
}

func (m *Manager) now() time.Time { return m.deps.Now().UTC() }

// Store record kinds.
const (
	KindCampaign      = "review"
	KindItemPrefix    = "review-item."
	maxKindLen        = 64
	maxIDLen          = maxKindLen - len(KindItemPrefix)
	MaxNameLen        = 64
	MaxNoteLen        = 1000
	maxActorLen       = 256
	maxItemIDLen      = 9
	hashedPrefixLen   = maxIDLen - 9 // room for "-" + 8 hex digits
	defaultSwapTries  = 64
	signingStaleAfter = 10 * time.Minute
	revokeStaleAfter  = 2 * time.Minute
)

func itemKind(campaignID string) string { return KindItemPrefix + campaignID }

// CheckName validates a campaign name: 1–64 characters of [A-Za-z0-9._-],
// starting with a letter or digit (so "." and ".." never name one, as they
// end up in page paths).
func CheckName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: a campaign name has 1 to %d characters", ErrInvalid, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Errorf("%w: a campaign name has only letters, digits, '.', '_' and '-', and starts with a letter or digit", ErrInvalid)
		}
	}
	return nil
}

// Slug is the campaign ID of a valid name: lower case (so "Q1" and "q1"
// are the same campaign), shortened with a hash when the item kind would
// exceed the store's 64-byte kind limit. Slug(Slug(n)) == Slug(n), so a
// name and its ID both find the campaign.
func Slug(name string) string {
	s := strings.ToLower(name)
	if len(s) <= maxIDLen {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return s[:hashedPrefixLen] + "-" + hex.EncodeToString(sum[:4])
}

// checkText bounds free text (actor names, notes) that reaches records,
// pages, CSV cells and audit attributes.
func checkText(what, s string, maxLen int, required bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	case len(s) > maxLen:
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, what, maxLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("%w: %s contains control characters", ErrInvalid, what)
		}
	}
	return nil
}

func checkItemID(id string) error {
	if id == "" || len(id) > maxItemIDLen {
		return fmt.Errorf("%w: bad item ID", ErrInvalid)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return fmt.Errorf("%w: bad item ID", ErrInvalid)
		}
	}
	return nil
}

// Audit event types.
const (
	TypeStart   = "review.start"
	TypeDecide  = "review.decide"
	TypeSignOff = "review.signoff"
	TypeReport  = "review.report"
)

func (m *Manager) emit(ctx context.Context, e audit.Event) {
	e.Time = m.now()
	m.deps.Audit.Emit(ctx, e)
}

// token is a random sign-off token: it tells whose seals an item carries.
func (m *Manager) token() (string, error) {
	var b [12]byte
	if _, err := io.ReadFull(m.deps.Rand, b[:]); err != nil {
		return "", fmt.Errorf("review: random: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
