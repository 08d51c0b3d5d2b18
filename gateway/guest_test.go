package gateway

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// dialFrom dials url from the loopback address local (127.0.0.0/8 is
// all loopback), as another host would.
func dialFrom(t *testing.T, local, url string, h http.Header) *peer {
	t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{protocol.SubprotocolJSONrtc},
		HTTPHeader: h, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &peer{t: t, c: c}
}

// guestPolicy sets the guest application's session policy.
func guestPolicy(perAddress int, idle time.Duration) func(*Config) {
	return func(c *Config) {
		secured(c)
		c.Session.ResumeTimeout = Duration(time.Hour)
		c.Auth.Applications[1].Guest.SessionsPerAddress = perAddress
		c.Auth.Applications[1].Guest.IdleResumeTimeout = idle
	}
}

func waitEnded(t *testing.T, g *Gateway, sid string) {
	t.Helper()
	s := g.lookup(sid)
	if s == nil {
		return
	}
	select {
	case <-s.gone:
	case <-time.After(5 * time.Second):
		t.Fatalf("session %s did not end", sid)
	}
}

// TestGuestSessionsPerAddress: a flood of guest sessions from one
// address stops at guest.sessions_per_address (503), while a guest from
// another address and a signed-in user from the same one still get in;
// a guest that leaves makes room.
func TestGuestSessionsPerAddress(t *testing.T) {
	g, url := newGateway(t, func(c *Config) {
		guestPolicy(3, time.Hour)(c)
		// Room for 4 guests in all: the flood of one address must leave
		// some to the others.
		p := c.Limits.Profiles["guest"]
		p.Application.Sessions = 4
		c.Limits.Profiles["guest"] = p
	})
	sup := appURL(url, "support")
	var guests []*peer
	for range 3 {
		p := dialFrom(t, "127.0.0.1", sup, nil)
		p.connect("")
		guests = append(guests, p)
	}
	flood := dialFrom(t, "127.0.0.1", sup, nil)
	floodConnect := func() *protocol.Frame {
		flood.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
			Header: protocol.Header{Action: protocol.ActionConnect}})
		return flood.read()
	}
	if r := floodConnect(); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != 503 ||
		r.Header.Reason != "too many guest sessions from this address" {
		t.Fatalf("4th guest session of one address: %s", r.Marshal())
	}
	dialFrom(t, "127.0.0.2", sup, nil).connect("")
	dialFrom(t, "127.0.0.1", appURL(url, "web"), bearer(token(t, "alice@example.com", time.Now().Add(time.Hour)))).connect("")

	guests[0].c.Close(websocket.StatusNormalClosure, "")
	waitEnded(t, g, guests[0].sid)
	if r := floodConnect(); r.Control.Type != protocol.TypeResponse {
		t.Fatalf("guest after one left: %s", r.Marshal())
	}
}

// TestIdleGuestFreesSlot: a guest that drops its socket before taking
// part in a call gives its place back after guest.idle_resume_timeout,
// not session.resume_timeout (an hour here); one in a call keeps the
// full resume timeout.
func TestIdleGuestFreesSlot(t *testing.T) {
	g, url := newGateway(t, guestPolicy(1, 50*time.Millisecond))
	sup := appURL(url, "support")
	a := dialFrom(t, "127.0.0.1", sup, nil)
	a.connect("")
	a.c.CloseNow()
	waitEnded(t, g, a.sid)

	guest, _, _ := guestCallsSales(t, url) // from 127.0.0.1 too: the place is free
	if d := g.lookup(guest.sid).resumeTimeout(); d != time.Hour {
		t.Fatalf("a guest in a call would wait %v for a resume, want the full hour", d)
	}
}
