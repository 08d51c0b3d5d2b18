// Package rtpengine is a client of rtpengine's ng control protocol, and an
// SDP adapter that uses it to let browsers (ICE, DTLS-SRTP, rtcp-mux) talk
// to ordinary SIP phones (plain RTP/AVP or SDES-SRTP), as Kamailio's
// rtpengine module does.
//
// Start with Dial, which returns a *Client for one rtpengine instance, and
// NewAdapter, which decides per call whether media goes through rtpengine
// (the Policy) and rewrites offers and answers. With several instances,
// NewPool puts their Clients behind one Adapter (NewPoolAdapter): health
// by ping, new calls on the least busy instance that is up, every later
// command of a call on the instance that took its first offer.
//
// The ng protocol (rtpengine's docs, "ng Control Protocol"): each request
// is a datagram "cookie bencoded-dictionary"; the reply carries the same
// cookie. rtpengine caches replies by cookie, so a retransmitted request
// is answered again without being executed twice.
package rtpengine
