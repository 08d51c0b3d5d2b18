package rtpengine

// Handing a call's media over to another gateway process (issue 15,
// docs/cluster.md "SIP dialogs"): the node that adopts a SIP call goes
// on with the same call in the same rtpengine instance, so that media
// flows on and the figures at the end are the whole call's. The state is
// what the Adapter chose at the first offer; the instance knows the rest
// by the keys.

// SessionState is what another process needs to go on with a session.
type SessionState struct {
	// Addr is the instance holding the call ("" when not anchored).
	Addr     string    `json:"addr,omitempty"`
	Dir      Direction `json:"dir"`
	Anchored bool      `json:"anchored,omitempty"`
	SDES     bool      `json:"sdes,omitempty"`
	Auto     bool      `json:"auto,omitempty"`
	Codecs   *Codecs   `json:"codecs,omitempty"`
	Keys     Keys      `json:"keys"`
}

// State returns s's state for another process to Resume.
func (s *Session) State() SessionState {
	st := SessionState{Dir: s.dir, Anchored: s.anchored, SDES: s.sdes.Load(), Auto: s.auto}
	if !s.codecs.empty() {
		c := s.codecs
		st.Codecs = &c
	}
	if s.m != nil {
		st.Addr = s.m.addr
	}
	s.mu.Lock()
	st.Keys = s.keys
	s.mu.Unlock()
	return st
}

// Resume goes on with the call of st, which another process (or this
// one's earlier life) made: the session counts on its instance, and the
// Ledger holds it for this process from now on. ErrNoInstance when the
// instance is not in the pool.
func (a *Adapter) Resume(st SessionState) (*Session, error) {
	s := &Session{a: a, dir: st.Dir, keys: st.Keys, anchored: st.Anchored, auto: st.Auto}
	if st.Codecs != nil {
		s.codecs = *st.Codecs
	}
	s.sdes.Store(st.SDES)
	if !s.anchored {
		return s, nil
	}
	for _, m := range a.pool.members {
		if m.addr != st.Addr {
			continue
		}
		s.m = m
		m.calls.Add(1)
		m.mu.Lock()
		m.sessions[s] = struct{}{}
		m.mu.Unlock()
		if l := a.pool.opt.Ledger; l != nil {
			l.Hold(st.Keys, m.addr)
		}
		return s, nil
	}
	return nil, ErrNoInstance
}

// Forget lets go of s without deleting its call: another process goes on
// with it (State, Resume). The Ledger no longer holds it for this one.
func (s *Session) Forget() {
	if !s.anchored || s.m == nil || s.deleted.Swap(true) {
		return
	}
	s.m.calls.Add(-1)
	s.m.mu.Lock()
	delete(s.m.sessions, s)
	s.m.mu.Unlock()
	if l := s.a.pool.opt.Ledger; l != nil {
		l.Release(s.keysRequest().CallID)
	}
}
