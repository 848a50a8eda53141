package audit

// Personal data in the trail. A record identifies its user by the stable
// user ID (issuer + subject), which is what an investigation and an access
// review need. The e-mail address and display name are personal data the
// trail does not need: producers may attach them (AttrEmail, AttrName) where
// they know them, and the FileLog drops them unless the operator turned
// them on (FileConfig.IncludeEmail / IncludeName, config audit.include_email
// and audit.include_name). Dropping them in the log rather than in each
// producer keeps the rule in one place, and every sink ships from the file,
// so none of them sees what the file does not hold.

// Attribute keys for personal data.
const (
	AttrEmail = "user_email" // the user's e-mail address (kept only with IncludeEmail)
	AttrName  = "user_name"  // the user's display name (kept only with IncludeName)
)

// piiFilter removes the personal-data attributes that are not enabled.
type piiFilter struct {
	keepEmail, keepName bool
}

// strip returns attrs without the attributes the filter drops. The
// caller's map is never modified (a producer may reuse it after Emit): a
// copy is made only when something is dropped, which is rare, so the
// common event costs two map lookups.
func (p piiFilter) strip(attrs map[string]string) map[string]string {
	if len(attrs) == 0 {
		return attrs
	}
	_, email := attrs[AttrEmail]
	_, name := attrs[AttrName]
	dropEmail, dropName := email && !p.keepEmail, name && !p.keepName
	if !dropEmail && !dropName {
		return attrs
	}
	out := make(map[string]string, len(attrs))
	for k, v := range attrs {
		if (dropEmail && k == AttrEmail) || (dropName && k == AttrName) {
			continue
		}
		out[k] = v
	}
	return out
}
