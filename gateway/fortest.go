package gateway

// OnIncomingSIPCallForTest makes f hear, on a SIP goroutine, of each
// INVITE to a registered identity before its sessions ring. For tests
// only: it lets one wait for an INVITE that rings no session.
func (g *Gateway) OnIncomingSIPCallForTest(f func(identity string)) {
	g.onIncomingSIPCall.Store(&f)
}
