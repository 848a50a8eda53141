// Package review runs quarterly access reviews: a campaign snapshots every
// way each user holds each policy role (an IdP group mapped to the role, a
// `users:` entry of the role in the config file, an admin-added "local"
// grant, a "temporary" just-in-time grant), with the evidence a reviewer
// needs to decide (last login, what the role was used for in the review
// period, dormant, unused, locked, MFA enrolled). Reviewers decide keep or
// revoke per item; a revoked grant is revoked at once, a revoked group
// membership or config entry becomes an action for a human. When every item
// is decided, an admin signs the campaign off, after which it is immutable,
// and WriteReport renders it as the evidence an auditor asks for.
//
// State lives in the shared store as durable records: the campaign header
// in kind "review" (ID = a slug of the name), each item in kind
// "review-item.<campaign ID>". Several admins on several instances may
// decide at once, so every change is a Get → modify → SwapRecord loop on
// one record. Sign-off seals each item with a token by compare-and-swap
// before marking the header, so a decision racing the sign-off either lands
// before the seal (and is part of what was signed) or is refused.
//
// Usage data comes from the audit trail, read once per snapshot with
// audit.Scan: allowed "decision" events carry the role that allowed them
// (gateway: App = route; bastion: Target and Attrs["login"]), and
// "session.start" events mark web logins.
package review
