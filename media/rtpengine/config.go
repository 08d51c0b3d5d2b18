package rtpengine

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Config is the `media` section of jsonrtcd's configuration:
//
//	media:
//	  rtpengine: ["127.0.0.1:2223", "127.0.0.1:2224"]   # a pool of ng listeners
//	  policy: auto                    # auto, always, never
//	  timeout: 3s                     # per request, retransmissions included
//	  retransmit: 500ms
//	  ping_interval: 2s               # health of each instance
//	  weights: {"127.0.0.1:2224": 2}  # share of new calls; unlisted: 1
//	  lost_after: 2                   # failed pings that end an instance's calls
//	  sdes: [srtp.example.com, trunk:carrier]   # targets requiring SDES-SRTP
//	  codecs:                         # offers toward SIP, every call
//	    strip: [G722]
//	  routes:                         # per SIP peer; the first match wins
//	    - targets: [pbx.example.com, trunk:carrier]
//	      policy: always
//	      sdes: true
//	      codecs: {transcode: [PCMA]}
//
// An empty rtpengine list leaves media alone (SDP passes unchanged), which
// is the behaviour before this package existed.
type Config struct {
	RTPEngine  []string      `yaml:"rtpengine"`
	Policy     Policy        `yaml:"policy"`
	Timeout    time.Duration `yaml:"timeout"`
	Retransmit time.Duration `yaml:"retransmit"`
	// PingInterval is how often each instance of the pool is pinged;
	// one that does not answer gets no new calls until it does.
	PingInterval time.Duration `yaml:"ping_interval"`
	// Weights gives instances of RTPEngine (by address as listed) a
	// share of the new calls in proportion to their weight, 1 to
	// maxWeight; an instance not named weighs 1.
	Weights map[string]int `yaml:"weights"`
	// LostAfter is how many pings in a row an instance must fail before
	// the calls it holds are ended (default 2). The first failed ping
	// only keeps new calls away: one lost datagram burst is not death.
	LostAfter int `yaml:"lost_after"`
	// FiguresInterval is how often each anchored call's figures are
	// queried and kept (default 10s), so that a call whose instance is
	// lost ends with the last ones (docs/media.md): one query per call
	// per interval, after a good ping.
	FiguresInterval time.Duration `yaml:"figures_interval"`
	// SDES lists the SIP targets whose phones require SDES-SRTP
	// (RTP/SAVP with a=crypto, RFC 4568): a browser's call to one is
	// offered so (Adapter.OfferSDES). Phones that call with SDES need no
	// entry: their offer says so.
	SDES Targets `yaml:"sdes"`
	// Codecs are the codec changes of every offer toward SIP; a route's
	// own replace them.
	Codecs Codecs `yaml:"codecs"`
	// Routes treat the media of calls whose SIP peer they name apart
	// from the rest (RouteFor): the first whose targets match wins.
	Routes []RouteConfig `yaml:"routes"`
}

// Codecs are rtpengine's codec manipulations (the ng "codec"
// dictionary), applied to offers toward the SIP side: Strip removes
// codecs ("all" for every one not listed elsewhere), Offer keeps or
// adds them back to the front, Transcode adds codecs rtpengine
// transcodes to (its transcoding must be built in, as Debian's is), Mask
// hides codecs from the SIP side while rtpengine still accepts them
// from the browser. Names are as in SDP (PCMU, opus, telephone-event).
type Codecs struct {
	Strip     []string `yaml:"strip"`
	Offer     []string `yaml:"offer"`
	Transcode []string `yaml:"transcode"`
	Mask      []string `yaml:"mask"`
}

func (c Codecs) empty() bool {
	return len(c.Strip)+len(c.Offer)+len(c.Transcode)+len(c.Mask) == 0
}

func (c Codecs) dict() map[string]any {
	d := map[string]any{}
	for k, v := range map[string][]string{"strip": c.Strip, "offer": c.Offer, "transcode": c.Transcode, "mask": c.Mask} {
		if len(v) > 0 {
			d[k] = v
		}
	}
	return d
}

// maxCodecs bounds each codec list: SDP lists a few dozen at most.
const maxCodecs = 32

func (c Codecs) validate(key string) []error {
	var errs []error
	for k, v := range map[string][]string{"strip": c.Strip, "offer": c.Offer, "transcode": c.Transcode, "mask": c.Mask} {
		if len(v) > maxCodecs {
			errs = append(errs, fmt.Errorf("%s.%s: %d codecs, at most %d", key, k, len(v), maxCodecs))
		}
		for i, name := range v {
			if !codecName(name) {
				errs = append(errs, fmt.Errorf("%s.%s[%d]: %q is not a codec name (letters, digits, - _ . / as in SDP)", key, k, i, name))
			}
		}
	}
	return errs
}

// codecName reports whether s can name a codec: an SDP encoding name,
// optionally with its clock rate and channels (opus/48000/2).
func codecName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./", r)) {
			return false
		}
	}
	return true
}

// RouteConfig is one entry of media.routes: the media of calls whose
// SIP peer is one of Targets (the target of a browser's call, the
// caller's host of a call from SIP) follows Policy, SDES and Codecs; a
// key left out keeps the section's.
type RouteConfig struct {
	Targets Targets `yaml:"targets"`
	Policy  Policy  `yaml:"policy"`
	SDES    *bool   `yaml:"sdes"`
	Codecs  *Codecs `yaml:"codecs"`
}

// Route is the media treatment of one call: what RouteFor decided.
type Route struct {
	// Policy is the call's anchoring policy ("" for the Adapter's).
	Policy Policy
	// SDES: the SIP side's phones require SDES-SRTP.
	SDES bool
	// Codecs apply to the call's offers toward SIP.
	Codecs Codecs
}

// RouteFor returns the media treatment of a call whose SIP peer is
// target (a SIP URI or user@host) reached by trunk ("" for none): the
// first of media.routes that matches, over the section's policy,
// codecs and sdes list.
func (c Config) RouteFor(target, trunk string) Route {
	r := Route{Policy: c.Policy, SDES: c.SDES.Match(target, trunk), Codecs: c.Codecs}
	for _, rc := range c.Routes {
		if !rc.Targets.Match(target, trunk) {
			continue
		}
		if rc.Policy != "" {
			r.Policy = rc.Policy
		}
		if rc.SDES != nil {
			r.SDES = *rc.SDES
		}
		if rc.Codecs != nil {
			r.Codecs = *rc.Codecs
		}
		break
	}
	return r
}

// Targets names SIP targets: each entry a domain, matched against the
// host of the call's target URI, or "trunk:NAME", matched against the
// routing trunk the call leaves by (docs/routing.md).
type Targets []string

// Match reports whether a call to target (a SIP URI or user@host) leaving
// by trunk ("" for none) is one of ts.
func (ts Targets) Match(target, trunk string) bool {
	host := target
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = host[i+1:]
	} else if _, rest, ok := strings.Cut(host, ":"); ok {
		host = rest // sip:host without a user
	}
	if i := strings.IndexAny(host, ";:>?"); i >= 0 {
		host = host[:i]
	}
	for _, t := range ts {
		if name, ok := strings.CutPrefix(t, "trunk:"); ok {
			if trunk != "" && name == trunk {
				return true
			}
			continue
		}
		if strings.EqualFold(t, host) {
			return true
		}
	}
	return false
}

func (ts Targets) validate(key string) []error {
	var errs []error
	for i, t := range ts {
		if name := strings.TrimPrefix(t, "trunk:"); name == "" || strings.ContainsAny(name, " @;:<>") {
			errs = append(errs, fmt.Errorf("%s[%d]: %q is neither a domain nor trunk:NAME", key, i, t))
		}
	}
	return errs
}

// maxWeight bounds a weight: beyond it the arithmetic of the pick could
// overflow nothing, but a ratio of a thousand to one is a typo, not a
// deployment.
const maxWeight = 1000

// WithDefaults fills the unset keys.
func (c Config) WithDefaults() Config {
	if c.Policy == "" {
		c.Policy = PolicyAuto
	}
	o := (&Options{Timeout: c.Timeout, Retransmit: c.Retransmit}).withDefaults()
	c.Timeout, c.Retransmit = o.Timeout, o.Retransmit
	if c.PingInterval == 0 {
		c.PingInterval = 2 * time.Second
	}
	if c.LostAfter == 0 {
		c.LostAfter = 2
	}
	if c.FiguresInterval == 0 {
		c.FiguresInterval = 10 * time.Second
	}
	return c
}

// Weight returns the weight of the instance at addr (1 when unset).
func (c Config) Weight(addr string) int {
	if w := c.Weights[addr]; w > 0 {
		return w
	}
	return 1
}

// Options returns the Client options the config asks for.
func (c Config) Options() *Options {
	c = c.WithDefaults()
	return &Options{Timeout: c.Timeout, Retransmit: c.Retransmit}
}

// Validate reports every invalid key, each named by its YAML path.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	for i, a := range c.RTPEngine {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("media.rtpengine[%d]: %v", i, err))
		}
	}
	seen := map[string]bool{}
	for i, a := range c.RTPEngine {
		if seen[a] {
			errs = append(errs, fmt.Errorf("media.rtpengine[%d]: %s is listed twice", i, a))
		}
		seen[a] = true
	}
	for a, w := range c.Weights {
		if !seen[a] {
			errs = append(errs, fmt.Errorf("media.weights: %s is not in media.rtpengine", a))
		}
		if w < 1 || w > maxWeight {
			errs = append(errs, fmt.Errorf("media.weights: %s: %d is not within 1..%d", a, w, maxWeight))
		}
	}
	errs = append(errs, c.SDES.validate("media.sdes")...)
	errs = append(errs, c.Codecs.validate("media.codecs")...)
	for i, rc := range c.Routes {
		key := fmt.Sprintf("media.routes[%d]", i)
		if len(rc.Targets) == 0 {
			errs = append(errs, fmt.Errorf("%s.targets: names no target", key))
		}
		errs = append(errs, rc.Targets.validate(key+".targets")...)
		if rc.Policy != "" {
			if err := rc.Policy.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s.%v", key, strings.TrimPrefix(err.Error(), "media.")))
			}
		}
		if rc.Codecs != nil {
			errs = append(errs, rc.Codecs.validate(key+".codecs")...)
		}
	}
	if c.LostAfter < 0 {
		errs = append(errs, fmt.Errorf("media.lost_after: %d is negative", c.LostAfter))
	}
	if c.PingInterval < 0 {
		errs = append(errs, fmt.Errorf("media.ping_interval: %v is negative", c.PingInterval))
	}
	if c.FiguresInterval < 0 {
		errs = append(errs, fmt.Errorf("media.figures_interval: %v is negative", c.FiguresInterval))
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Retransmit >= c.Timeout {
		errs = append(errs, fmt.Errorf("media.retransmit: %v is not below media.timeout %v", c.Retransmit, c.Timeout))
	}
	return errors.Join(errs...)
}
