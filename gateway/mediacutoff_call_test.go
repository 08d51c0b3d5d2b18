package gateway

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
)

// serveUDP answers each datagram on a UDP socket of its own with what
// reply makes of it (nil: nothing), until the test ends, and returns
// the socket's address.
func serveUDP(t *testing.T, reply func(msg []byte) []byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := reply(append([]byte(nil), buf[:n]...)); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// sdpNG is a fake rtpengine on UDP: it answers a ping with pong, an
// offer or answer with the SDP it was given (as if rtpengine's), every
// other command with ok, and hands each command's name but ping's and
// statistics' to cmds (dropped when full).
func sdpNG(t *testing.T) (string, <-chan string) {
	t.Helper()
	cmds := make(chan string, 64)
	return serveUDP(t, func(msg []byte) []byte {
		cookie, body, _ := strings.Cut(string(msg), " ")
		_, rest, _ := strings.Cut(body, "7:command")
		l, rest, _ := strings.Cut(rest, ":")
		ln, _ := strconv.Atoi(l)
		cmd := rest[:min(max(ln, 0), len(rest))]
		reply := "d6:result2:oke"
		switch cmd {
		case "ping":
			reply = "d6:result4:ponge"
		case "offer", "answer":
			if _, sdp, ok := strings.Cut(body, "3:sdp"); ok {
				l, sdp, _ := strings.Cut(sdp, ":")
				n, _ := strconv.Atoi(l)
				reply = fmt.Sprintf("d6:result2:ok3:sdp%d:%se", n, sdp[:min(max(n, 0), len(sdp))])
			}
		}
		if cmd != "ping" && cmd != "statistics" {
			select {
			case cmds <- cmd:
			default:
			}
		}
		return []byte(cookie + " " + reply)
	}), cmds
}

// answeringPhone is a SIP phone on UDP, and the proxy of the gateway's
// REGISTERs: it answers an INVITE 200 with plain RTP SDP, a REGISTER and
// a BYE 200, handing the BYE to byes.
func answeringPhone(t *testing.T) (string, <-chan *sip.Request) {
	t.Helper()
	byes := make(chan *sip.Request, 4)
	var port atomic.Int64 // set once it listens, read at an INVITE
	addr := serveUDP(t, func(msg []byte) []byte {
		m, err := sip.ParseMessage(msg)
		req, ok := m.(*sip.Request)
		if err != nil || !ok {
			return nil
		}
		var res *sip.Response
		switch req.Method {
		case sip.INVITE:
			res = sip.NewResponseFromRequest(req, 200, "OK", nil)
			res.To().Params.Add("tag", "phone")
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: int(port.Load())}})
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			res.SetBody([]byte("v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"))
		case sip.REGISTER:
			// The session's registration, through the outbound proxy:
			// granted as asked.
			res = sip.NewResponseFromRequest(req, 200, "OK", nil)
			if ct := req.Contact(); ct != nil {
				res.AppendHeader(sip.HeaderClone(ct))
			}
			res.AppendHeader(sip.NewHeader("Expires", "3600"))
		case sip.BYE:
			byes <- req
			res = sip.NewResponseFromRequest(req, 200, "OK", nil)
		default:
			return nil
		}
		return []byte(res.String())
	})
	p, _ := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	port.Store(int64(p))
	return addr, byes
}

// TestCutOffEndsAnchoredCalls: a node of a cluster with a call from a
// browser to a phone, its media anchored in rtpengine, is cut off from
// its cluster (its lease writes fail, no peer answers it). It ends the
// call before its peers would sweep the call's media (mediaSweepWait):
// the browser hears a shutdown and the phone a BYE, both saying why,
// and the media is deleted in rtpengine, which still answers. Before,
// the call went on, its media deleted by the peers' sweep (issue 14).
func TestCutOffEndsAnchoredCalls(t *testing.T) {
	ng, cmds := sdpNG(t)
	phone, byes := answeringPhone(t)
	var e *natsstore.Embedded
	gs, urls := newClusterGatewaysMod(t, 1, func(s store.Store) store.Store {
		e = s.(*natsstore.Embedded)
		return s
	}, func(c *Config) {
		c.SIP.Listen.UDP, c.SIP.Domain, c.SIP.OutboundProxy = "127.0.0.1:0", "example.com", "sip:"+phone
		c.Media = rtpengine.Config{RTPEngine: []string{ng}, Policy: rtpengine.PolicyAlways, Timeout: time.Second,
			Retransmit: 200 * time.Millisecond, PingInterval: time.Hour}
	})
	if gs[0].ledger == nil {
		t.Fatal("no media ledger on a cluster's node")
	}
	a := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c1"},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "sip:bob@sip.example"},
		Payload: protocol.EncodePayload(protocol.CallPayload{SDP: sdpOffer}),
	})
	for {
		r := a.readWithin(10 * time.Second)
		if r.Control.Type == protocol.TypeError {
			t.Fatalf("start refused: %s", r.Marshal())
		}
		if r.Control.Type == protocol.TypeResponse && r.Header.Action == protocol.ActionStart {
			if r.Header.ResponseCode != 200 {
				t.Fatalf("start answered %s", r.Marshal())
			}
			break
		}
	}
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c1"},
		Header:  protocol.Header{Action: protocol.ActionComplete, Initiator: "alice@example.com", Target: "sip:bob@sip.example"},
	})
	for _, want := range []string{"offer", "answer"} {
		if got := <-cmds; got != want {
			t.Fatalf("rtpengine got %s, want %s", got, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dropLeases(ctx, t, e)
	cut := time.Now()
	for {
		f := a.readWithin(30 * time.Second)
		if f.Control.Type != protocol.TypeMessage || f.Header.Action != protocol.ActionShutdown {
			continue
		}
		if f.Header.Reason != cutOffReason {
			t.Fatalf("shutdown %s, want the reason %q", f.Marshal(), cutOffReason)
		}
		break
	}
	ttl := gs[0].node.LeaseTTL()
	if d := time.Since(cut); d > ttl+mediaSweepWait(ttl) {
		t.Errorf("call ended %v after the lease writes failed, later than the peers' sweep (%v)", d, ttl+mediaSweepWait(ttl))
	}
	select {
	case bye := <-byes:
		if r := bye.GetHeader("Reason"); r == nil || !strings.Contains(r.Value(), "cause=503") || !strings.Contains(r.Value(), cutOffReason) {
			t.Fatalf("BYE Reason %v", r)
		}
	case <-ctx.Done():
		t.Fatal("no BYE to the phone")
	}
	for {
		select {
		case got := <-cmds:
			if got == "delete" {
				return
			}
		case <-ctx.Done():
			t.Fatal("no delete of the call's media in rtpengine")
		}
	}
}
