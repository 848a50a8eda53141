package review

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// dirUser is the part of a user directory record (gateway/users.go) a
// review reads. Groups are as the IdP reported them at the last login.
type dirUser struct {
	UserID    string    `json:"user_id"`
	Email     string    `json:"email,omitempty"`
	Groups    []string  `json:"groups,omitempty"`
	LastLogin time.Time `json:"last_login"`
}

// Start snapshots every user × role holding into a new campaign named
// name. The snapshot is built before anything is written, so a failure
// leaves nothing behind; the header is created first (CreateRecord: of two
// admins starting the same name at once, one gets ErrExists), then the
// items.
func (m *Manager) Start(ctx context.Context, actor, name string) (Campaign, error) {
	if err := checkText("actor", actor, maxActorLen, true); err != nil {
		return Campaign{}, err
	}
	if err := CheckName(name); err != nil {
		return Campaign{}, err
	}
	id := Slug(name)
	// Cheap check first: a duplicate should not cost a trail scan.
	if _, err := m.deps.Store.GetRecord(ctx, KindCampaign, id); err == nil {
		return Campaign{}, ErrExists
	} else if !errors.Is(err, store.ErrNotFound) {
		return Campaign{}, err
	}
	now := m.now()
	items, err := m.snapshot(ctx, now)
	if err != nil {
		return Campaign{}, err
	}
	h := header{
		ID: id, Name: name, CreatedAt: now, Due: now.Add(m.cfg.Due), PeriodStart: now.Add(-m.cfg.Period),
		CreatedBy: actor, Items: len(items),
	}
	b, err := json.Marshal(h)
	if err != nil {
		return Campaign{}, err
	}
	ok, err := m.create(ctx, KindCampaign, id, b)
	if err != nil {
		return Campaign{}, err
	}
	if !ok {
		return Campaign{}, ErrExists
	}
	kind := itemKind(id)
	for _, it := range items {
		b, err := json.Marshal(itemRecord{Item: it})
		if err != nil {
			return Campaign{}, err
		}
		ok, err := m.create(ctx, kind, it.ID, b)
		if err != nil {
			return Campaign{}, fmt.Errorf("%w: %w", ErrIncomplete, err)
		}
		if !ok { // left over from an earlier campaign of this ID: never mix them
			return Campaign{}, fmt.Errorf("%w: item %s already exists", ErrIncomplete, it.ID)
		}
	}
	var dormant, unused, locked, noMFA int
	users := map[string]bool{}
	for _, it := range items {
		users[it.UserID+"\x00"+it.Email] = true
		dormant += b2i(it.Dormant)
		unused += b2i(it.Unused)
		locked += b2i(it.Locked)
		noMFA += b2i(!it.MFAEnrolled)
	}
	m.emit(ctx, audit.Event{Type: TypeStart, Actor: actor, Attrs: map[string]string{
		"campaign": name, "campaign_id": id, "items": strconv.Itoa(len(items)), "users": strconv.Itoa(len(users)),
		"dormant": strconv.Itoa(dormant), "unused": strconv.Itoa(unused), "locked": strconv.Itoa(locked),
		"no_mfa": strconv.Itoa(noMFA),
	}})
	m.log.InfoContext(ctx, "access review started", "campaign", name, "items", len(items), "actor", actor)
	return h.campaign(items), nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// usage is what the trail says about one user.
type usage struct {
	lastLogin time.Time             // last successful session.start
	lastAny   time.Time             // last allowed decision, any role
	roles     map[string]*roleUsage // by role
}

type roleUsage struct {
	last time.Time       // last allowed decision with the role (any time up to the snapshot)
	uses map[useKey]*Use // in the period
}

type useKey struct{ kind, name, login string }

// snapshot builds the items at now. It reads the directory, the policy,
// the grants, the locks and the enrolments, then scans the trail once.
func (m *Manager) snapshot(ctx context.Context, now time.Time) ([]Item, error) {
	pol := m.deps.Policy()
	if pol == nil {
		return nil, fmt.Errorf("%w: no policy loaded", store.ErrUnavailable)
	}
	users, err := m.directory(ctx)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*dirUser, len(users))
	for i := range users {
		byID[users[i].UserID] = &users[i]
	}
	var items []Item
	roles := pol.Roles()
	byGroup := map[string][]string{}
	for _, r := range roles {
		for _, g := range r.Groups {
			byGroup[g] = append(byGroup[g], r.Name)
		}
	}
	for i := range users {
		u := &users[i]
		groups := slices.Clone(u.Groups)
		slices.Sort(groups)
		for _, g := range slices.Compact(groups) {
			for _, role := range byGroup[g] {
				items = append(items, Item{UserID: u.UserID, Email: u.Email, Role: role, Source: SourceIdPGroup, Group: g})
			}
		}
	}
	for _, r := range roles {
		for _, entry := range r.Users {
			matched := false
			isEmail := strings.Contains(entry, "@")
			for i := range users {
				u := &users[i]
				if u.UserID == entry || isEmail && strings.EqualFold(u.Email, entry) {
					matched = true
					items = append(items, Item{UserID: u.UserID, Email: u.Email, Role: r.Name, Source: SourceConfig, ConfigEntry: entry})
				}
			}
			if matched {
				continue
			}
			// Nobody with this entry ever logged in: the holding exists
			// all the same, and it is exactly what a review should see.
			it := Item{Role: r.Name, Source: SourceConfig, ConfigEntry: entry}
			if isEmail {
				it.Email = entry
			} else {
				it.UserID = entry
			}
			items = append(items, it)
		}
	}
	if m.deps.Grants != nil {
		grants, err := m.deps.Grants.ListGrants(ctx)
		if err != nil {
			return nil, err
		}
		for _, g := range grants {
			if !g.Active(now) {
				continue
			}
			src := SourceLocal
			if g.Source == access.SourceTemporary {
				src = SourceTemporary
			}
			it := Item{UserID: g.UserID, Role: g.Role, Source: src, GrantID: g.ID, GrantStart: g.Start.UTC(), GrantExpires: g.Expires.UTC()}
			if u := byID[g.UserID]; u != nil {
				it.Email = u.Email
			}
			items = append(items, it)
		}
	}
	if err := m.evidence(ctx, now, items, byID); err != nil {
		return nil, err
	}
	slices.SortFunc(items, func(a, b Item) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), cmp.Compare(a.Email, b.Email), cmp.Compare(a.Role, b.Role),
			cmp.Compare(sourceOrder(a.Source), sourceOrder(b.Source)), cmp.Compare(a.Group, b.Group),
			cmp.Compare(a.ConfigEntry, b.ConfigEntry), cmp.Compare(a.GrantID, b.GrantID))
	})
	width := max(4, len(strconv.Itoa(len(items))))
	for i := range items {
		items[i].ID = fmt.Sprintf("%0*d", width, i+1)
	}
	return items, nil
}

func sourceOrder(s Source) int {
	switch s {
	case SourceIdPGroup:
		return 0
	case SourceConfig:
		return 1
	case SourceLocal:
		return 2
	}
	return 3
}

func (m *Manager) directory(ctx context.Context) ([]dirUser, error) {
	raw, err := m.deps.Store.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]dirUser, 0, len(raw))
	for id, b := range raw {
		var u dirUser
		if err := json.Unmarshal(b, &u); err != nil {
			return nil, corrupt("user record "+strconv.Quote(id), err)
		}
		if u.UserID == "" {
			u.UserID = id
		}
		u.LastLogin = u.LastLogin.UTC()
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b dirUser) int { return cmp.Compare(a.UserID, b.UserID) })
	return out, nil
}

// evidence fills last login, uses and the flags of items at now.
func (m *Manager) evidence(ctx context.Context, now time.Time, items []Item, dir map[string]*dirUser) error {
	locks, err := m.deps.Store.ListLocks(ctx)
	if err != nil {
		return err
	}
	locked := map[string]bool{}
	for _, l := range locks {
		if id, ok := strings.CutPrefix(l.Subject, "user:"); ok && (l.ExpiresAt.IsZero() || now.Before(l.ExpiresAt)) {
			locked[id] = true
		}
	}
	enrolled, err := m.deps.Store.ListEnrolled(ctx)
	if err != nil {
		return err
	}
	mfa := make(map[string]bool, len(enrolled))
	for _, id := range enrolled {
		mfa[id] = true
	}
	wanted := map[string]*usage{}
	for _, it := range items {
		if it.UserID != "" && wanted[it.UserID] == nil {
			wanted[it.UserID] = &usage{roles: map[string]*roleUsage{}}
		}
	}
	periodStart := now.Add(-m.cfg.Period)
	if err := m.scan(ctx, now, periodStart, wanted); err != nil {
		return err
	}
	dormantBefore := now.Add(-m.cfg.DormantAfter)
	for i := range items {
		it := &items[i]
		since := periodStart
		if it.GrantStart.After(since) {
			since = it.GrantStart
		}
		u := wanted[it.UserID]
		if u == nil { // a config email entry nobody logged in with
			u = &usage{}
		}
		it.LastLogin = u.lastLogin
		if d := dir[it.UserID]; d != nil && d.LastLogin.After(it.LastLogin) {
			it.LastLogin = d.LastLogin
		}
		if ru := u.roles[it.Role]; ru != nil {
			it.LastUse = ru.last
			for _, use := range ru.uses {
				it.Uses = append(it.Uses, *use)
			}
			slices.SortFunc(it.Uses, func(a, b Use) int {
				return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Login, b.Login))
			})
		}
		active := it.LastLogin
		if u.lastAny.After(active) {
			active = u.lastAny
		}
		it.Dormant = active.Before(dormantBefore)
		it.Unused = it.LastUse.Before(since)
		it.Locked = it.UserID != "" && locked[it.UserID]
		it.MFAEnrolled = it.UserID != "" && mfa[it.UserID]
	}
	return nil
}

// scan reads the trail once, streaming, up to now. Only users in wanted
// are tracked, so memory is bounded by the snapshot, not the trail.
func (m *Manager) scan(ctx context.Context, now, periodStart time.Time, wanted map[string]*usage) error {
	err := audit.Scan(ctx, m.deps.AuditDir, time.Time{}, time.Time{}, func(e *audit.Event) error {
		if e.Time.After(now) {
			return nil
		}
		u := wanted[e.UserID]
		if u == nil {
			return nil
		}
		switch e.Type {
		case audit.TypeSessionStart:
			// Refused logins are audited as session.start with a deny.
			if e.Decision != audit.Deny && e.Time.After(u.lastLogin) {
				u.lastLogin = e.Time.UTC()
			}
		case audit.TypeDecision:
			if e.Decision != audit.Allow || e.Role == "" {
				return nil
			}
			var k useKey
			switch {
			case e.App != "":
				k = useKey{kind: "app", name: e.App}
			case e.Target != "":
				k = useKey{kind: "ssh", name: e.Target, login: e.Attrs["login"]}
			default:
				return nil
			}
			t := e.Time.UTC()
			if t.After(u.lastAny) {
				u.lastAny = t
			}
			ru := u.roles[e.Role]
			if ru == nil {
				ru = &roleUsage{uses: map[useKey]*Use{}}
				u.roles[e.Role] = ru
			}
			if t.After(ru.last) {
				ru.last = t
			}
			if t.Before(periodStart) {
				return nil
			}
			use := ru.uses[k]
			if use == nil {
				use = &Use{Kind: k.kind, Name: k.name, Login: k.login}
				ru.uses[k] = use
			}
			use.Count++
			if t.After(use.Last) {
				use.Last = t
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("review: reading the audit trail: %w", err)
	}
	return nil
}
