package gateway

// Guest implements presence.Guest: a guest's presence is never
// published to the SIP side.
func (s *Session) Guest() bool { return s.guest }
