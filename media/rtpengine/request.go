package rtpengine

// Request holds the arguments of offer, answer, delete and query, named as
// in rtpengine's ng protocol documentation. Empty fields are not sent.
type Request struct {
	CallID    string // "call-id"
	FromTag   string // "from-tag"
	ToTag     string // "to-tag"
	ViaBranch string // "via-branch": tells forks of one offer apart
	SDP       string // "sdp"

	Flags             []string // "flags", e.g. "trust-address", "SDES-off"
	Replace           []string // "replace", e.g. "origin", "session-connection"
	RTCPMux           []string // "rtcp-mux": "offer", "demux", "accept", "reject", "require"
	ICE               string   // "ICE": "remove", "force", "default"
	DTLS              string   // "DTLS": "off", "passive", "active"
	TransportProtocol string   // "transport-protocol", e.g. "RTP/AVP", "UDP/TLS/RTP/SAVPF"
	SDES              []string // "SDES", e.g. "off", "no-AES_CM_128_HMAC_SHA1_32"
	Codec             Codecs   // "codec": strip, offer, transcode, mask

	// DeleteNow sends "delete-delay: 0": delete frees the call at once
	// instead of after rtpengine's delete-delay (30s by default), meant
	// for late retransmissions of the BYE.
	DeleteNow bool
}

func (r *Request) dict() map[string]any {
	d := map[string]any{"call-id": r.CallID}
	set := func(k, v string) {
		if v != "" {
			d[k] = v
		}
	}
	setList := func(k string, v []string) {
		if len(v) > 0 {
			d[k] = v
		}
	}
	set("from-tag", r.FromTag)
	set("to-tag", r.ToTag)
	set("via-branch", r.ViaBranch)
	set("sdp", r.SDP)
	set("ICE", r.ICE)
	set("DTLS", r.DTLS)
	set("transport-protocol", r.TransportProtocol)
	setList("flags", r.Flags)
	setList("replace", r.Replace)
	setList("rtcp-mux", r.RTCPMux)
	setList("SDES", r.SDES)
	if !r.Codec.empty() {
		d["codec"] = r.Codec.dict()
	}
	if r.DeleteNow {
		d["delete-delay"] = int64(0)
	}
	return d
}

// Response is rtpengine's reply: the result ("ok"), the rewritten SDP of
// offer and answer, a warning if any, and the whole dictionary (query's
// "created", "totals", "tags"...).
type Response struct {
	Result  string
	SDP     string
	Warning string
	Raw     map[string]any
}

func newResponse(m map[string]any) *Response {
	r := &Response{Raw: m}
	r.Result, _ = m["result"].(string)
	r.SDP, _ = m["sdp"].(string)
	r.Warning, _ = m["warning"].(string)
	return r
}
