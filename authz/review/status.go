package review

import (
	"context"
	"errors"
	"time"
)

// Campaign states in a StatusReport.
const (
	StateOpen       = "open"
	StateOverdue    = "overdue"    // past Due and not signed off
	StateSignedOff  = "signed-off" //
	StateIncomplete = "incomplete" // its start was interrupted: not a review
)

// CampaignStatus is one campaign's progress.
type CampaignStatus struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	State       string    `json:"state"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by"`
	Due         time.Time `json:"due"`
	SignedOffBy string    `json:"signed_off_by,omitempty"`
	SignedOffAt time.Time `json:"signed_off_at,omitzero"`
	Items       int       `json:"items"`
	Decided     int       `json:"decided"`
}

// StatusReport says where reviews stand.
type StatusReport struct {
	Campaigns []CampaignStatus `json:"campaigns"` // newest first
	// NewDue: no campaign was ever started, or the last one started more
	// than Cadence ago. NextDue is when the next one is due (zero: now).
	NewDue  bool      `json:"new_due"`
	NextDue time.Time `json:"next_due,omitzero"`
}

// Status reports every campaign's state and whether a new one is due.
func (m *Manager) Status(ctx context.Context) (StatusReport, error) {
	hs, err := m.headers(ctx)
	if err != nil {
		return StatusReport{}, err
	}
	now := m.now()
	rep := StatusReport{Campaigns: make([]CampaignStatus, 0, len(hs))}
	var last time.Time
	for i := range hs {
		h := &hs[i]
		cs := CampaignStatus{
			ID: h.ID, Name: h.Name, CreatedAt: h.CreatedAt, CreatedBy: h.CreatedBy, Due: h.Due,
			SignedOffBy: h.SignedOffBy, SignedOffAt: h.SignedOffAt, Items: h.Items,
		}
		c, err := m.load(ctx, h)
		switch {
		case errors.Is(err, ErrIncomplete):
			cs.State = StateIncomplete
		case err != nil:
			return StatusReport{}, err
		default:
			for _, it := range c.Items {
				cs.Decided += b2i(it.Decision != "")
			}
			switch {
			case h.signedOff():
				cs.State = StateSignedOff
			case now.After(h.Due):
				cs.State = StateOverdue
			default:
				cs.State = StateOpen
			}
			if h.CreatedAt.After(last) {
				last = h.CreatedAt
			}
		}
		rep.Campaigns = append(rep.Campaigns, cs)
	}
	if !last.IsZero() {
		rep.NextDue = last.Add(m.cfg.Cadence)
	}
	rep.NewDue = last.IsZero() || now.After(rep.NextDue)
	return rep, nil
}
