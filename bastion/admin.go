package bastion

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion/recording"
)

// AdminHandler serves the live-session admin API as JSON, for cmd to
// mount behind an authenticated admin endpoint (the local admin socket,
// or the gateway's admin API). It does no authentication itself: actor
// names the authenticated admin of a request for the audit trail.
//
//	GET  /sessions                → []SessionInfo of every instance, each naming its instance
//	                                (?local=1: this instance's only; ?envelope=1: a SessionList)
//	GET  /sessions/{id}           → SessionInfo, wherever the session runs (read-only)
//	POST /sessions/{id}/kill      {"reason": "…"} → 204; ends the session wherever it runs
//	GET  /sessions/{id}/watch     → the session's output live, read-only, until it ends
//	                                (?format=asciicast for asciicast v2 lines; default raw bytes);
//	                                409 when it runs on another instance
//
// When the store does not answer, GET /sessions still lists this
// instance's sessions, with a Warning (in the envelope, and in the
// Portcullis-Warning header either way).
func (b *Bastion) AdminHandler(actor func(*http.Request) string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions", b.serveList)
	mux.HandleFunc("GET /sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		info, err := b.Session(r.Context(), r.PathValue("id"))
		switch {
		case errors.Is(err, ErrNoSuchSession):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such live session"})
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "state store unavailable"})
		default:
			writeJSON(w, http.StatusOK, info)
		}
	})
	mux.HandleFunc("POST /sessions/{id}/kill", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Reason string `json:"reason"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body); err != nil || body.Reason == "" ||
			len(body.Reason) > 512 || !utf8.ValidString(body.Reason) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "a reason is required"})
			return
		}
		err := b.Kill(r.Context(), r.PathValue("id"), actor(r), body.Reason)
		switch {
		case errors.Is(err, ErrNoSuchSession):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such live session"})
		case err != nil:
			b.log.Error("kill failed", "session", r.PathValue("id"), "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "state store unavailable"})
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET /sessions/{id}/watch", func(w http.ResponseWriter, r *http.Request) {
		b.serveWatch(w, r, actor(r))
	})
	return mux
}

// SessionList is the envelope of GET /sessions?envelope=1.
type SessionList struct {
	Instance string        `json:"instance"` // the instance that answered
	Sessions []SessionInfo `json:"sessions"`
	// Warning says the list is incomplete (the store did not answer, so
	// only Instance's own sessions are listed).
	Warning string `json:"warning,omitempty"`
}

// warnPartial is the user-facing text of ErrPartialList (the cause is in
// the log).
const warnPartial = "state store unavailable: only this instance's sessions are listed"

// serveList answers GET /sessions.
func (b *Bastion) serveList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	list := SessionList{Instance: b.cfg.Instance}
	if q.Get("local") == "1" {
		list.Sessions = b.registry.List()
	} else {
		var err error
		if list.Sessions, err = b.Sessions(r.Context()); err != nil {
			list.Warning = warnPartial
			w.Header().Set("Portcullis-Warning", warnPartial)
		}
	}
	if q.Get("envelope") == "1" {
		writeJSON(w, http.StatusOK, list)
		return
	}
	writeJSON(w, http.StatusOK, list.Sessions)
}

// serveWatch streams a live session's output to an admin.
func (b *Bastion) serveWatch(w http.ResponseWriter, r *http.Request, actor string) {
	id := r.PathValue("id")
	info, err := b.registry.Get(id)
	if err != nil {
		// Only the instance running a session has its output: name it.
		if remote, rerr := b.Session(r.Context(), id); rerr == nil && remote.Instance != "" {
			writeJSON(w, http.StatusConflict, map[string]string{
				"error": "the session runs on instance " + remote.Instance + ": watch it through that instance"})
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such live session"})
		return
	}
	watch, err := b.registry.Watch(id, 0)
	if err != nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such live session"})
		return
	}
	defer watch.Close()
	cast := r.URL.Query().Get("format") == "asciicast"
	ev := auditAdminWatch(info, actor)
	b.audit.Emit(r.Context(), ev)
	fl, _ := w.(http.Flusher)
	if cast {
		w.Header().Set("Content-Type", "application/x-asciicast")
		hdr, _ := json.Marshal(map[string]any{
			"version": 2, "width": 80, "height": 24, "timestamp": info.Start.Unix(),
			"title": fmt.Sprintf("live: %s as %s@%s (%s)", info.UserID, info.Login, info.Target, info.ID),
		})
		w.Write(append(hdr, '\n'))
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.WriteHeader(http.StatusOK)
	if fl != nil {
		fl.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case f, ok := <-watch.C:
			if !ok {
				if watch.Lagged() && cast {
					line, _ := json.Marshal([]any{0, "o", "\r\n[portcullis: watcher fell behind and was disconnected]\r\n"})
					w.Write(append(line, '\n'))
				}
				return
			}
			if !writeWatchFrame(w, f, cast) {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
	}
}

// writeWatchFrame writes one frame; it reports false when the watcher
// went away.
func writeWatchFrame(w io.Writer, f recording.Frame, cast bool) bool {
	var err error
	switch {
	case f.Stream != recording.StreamStdout && f.Stream != recording.StreamStderr && f.Stream != recording.StreamResize:
		return true
	case !cast:
		if f.Stream != recording.StreamResize {
			_, err = w.Write(f.Data)
		}
	default:
		code, data := "o", string(f.Data)
		if f.Stream == recording.StreamResize {
			cols, rows, perr := recording.ParseResize(f.Data)
			if perr != nil {
				return true
			}
			code, data = "r", strconv.Itoa(int(cols))+"x"+strconv.Itoa(int(rows))
		}
		line, _ := json.Marshal([]any{json.Number(strconv.FormatFloat(f.Offset.Seconds(), 'f', 6, 64)), code, data})
		_, err = w.Write(append(line, '\n'))
	}
	return err == nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// auditAdminWatch is the audit record of an admin watching a session.
func auditAdminWatch(info SessionInfo, actor string) audit.Event {
	return audit.Event{
		Type: audit.TypeAdmin, SessionID: info.ID, Actor: actor, Reason: "ssh-session-watch", Target: info.Target,
		Attrs: map[string]string{"watched_user": info.UserID},
	}
}
