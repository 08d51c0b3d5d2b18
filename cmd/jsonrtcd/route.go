package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/routing"
)

// routeUsage is the synopsis of the route subcommand.
const routeUsage = "jsonrtcd route [-config FILE] [-app APP] [-kind call|message|subscribe|register|publish] [-guest] [-source ADDR] [-live] [-ext NAME=VALUE]... FROM TO"

// runRoute is "jsonrtcd route": it loads the configuration, routes one
// request from FROM to TO with its rules, and prints the decision, the
// rule that made it and why each earlier rule did not match. It starts
// nothing.
func runRoute(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("jsonrtcd route", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(out, "usage:", routeUsage)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "YAML configuration `file`")
	app := fs.String("app", "", "the sender's `application` (default: the only one configured)")
	kind := fs.String("kind", "call", "the request: call, message, subscribe, register or publish")
	guest := fs.Bool("guest", false, "the sender is a guest (implied by a guest application)")
	source := fs.String("source", "", "the client's `address`, for network rules")
	live := fs.Bool("live", false, "the target has a live web session")
	ext := map[string]string{}
	fs.Func("ext", "an extension header of the request, `NAME=VALUE` (repeatable), for header rules", func(v string) error {
		name, value, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return errors.New("want NAME=VALUE")
		}
		ext[strings.ToLower(name)] = value
		return nil
	})
	// Flags may come before, between or after FROM and TO.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 2 {
		fs.Usage()
		return errors.New("route needs FROM and TO")
	}
	cfg := gateway.DefaultConfig()
	if *configPath != "" {
		var err error
		if cfg, err = gateway.LoadConfig(*configPath); err != nil {
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	r, err := routing.New(cfg.Routing)
	if err != nil {
		return err
	}
	req := routing.Request{Identity: pos[0], Target: pos[1], Application: *app, Guest: *guest, WebLive: *live, Ext: ext}
	k, ok := map[string]routing.Kind{"call": routing.Call, "message": routing.Message, "subscribe": routing.Subscribe,
		"register": routing.Register, "publish": routing.Publish}[*kind]
	if !ok {
		return fmt.Errorf("-kind %q: call, message, subscribe, register or publish", *kind)
	}
	req.Kind = k
	if *source != "" {
		if req.Source, err = netip.ParseAddr(*source); err != nil {
			return fmt.Errorf("-source: %w", err)
		}
	}
	ac, err := findApp(cfg.Auth, *app)
	if err != nil {
		return err
	}
	if ac != nil {
		req.Application = ac.Name
		req.Guest = req.Guest || ac.Mode == auth.ModeGuest
	}
	d := r.Explain(req)
	printDecision(out, req, d, r)
	return nil
}

// findApp returns the named application, the only one when name is "",
// or nil without applications (the built-in open one).
func findApp(c auth.Config, name string) (*auth.AppConfig, error) {
	apps := c.Applications
	if name == "" {
		switch len(apps) {
		case 0:
			return nil, nil
		case 1:
			return &apps[0], nil
		}
		return nil, errors.New("several applications are configured: name one with -app")
	}
	for i := range apps {
		if apps[i].Name == name {
			return &apps[i], nil
		}
	}
	if len(apps) == 0 {
		return nil, nil
	}
	return nil, fmt.Errorf("-app %q: no such application", name)
}

func printDecision(out io.Writer, req routing.Request, d routing.Decision, r *routing.Router) {
	src := "unknown"
	if req.Source.IsValid() {
		src = req.Source.String()
	}
	app := req.Application
	if app == "" {
		app = "(built-in open)"
	}
	fmt.Fprintf(out, "%s from %s to %s\n", req.Kind, req.Identity, req.Target)
	fmt.Fprintf(out, "  application %s, guest %v, source %s, live web session %v\n", app, req.Guest, src, req.WebLive)
	for i, st := range d.Steps {
		verdict := "no: " + st.Why
		if st.Matched {
			verdict = "matched"
		}
		fmt.Fprintf(out, "%3d. %s: %s\n", i+1, st.Rule, verdict)
	}
	fmt.Fprintf(out, "decision: %s (rule %s)\n", d, d.Rule)
	if d.Action == routing.ActionSIP {
		t, _ := r.Trunk(d.Trunk)
		health := "no health checks"
		if t.HealthInterval > 0 {
			health = fmt.Sprintf("OPTIONS every %v", t.HealthInterval)
		}
		fmt.Fprintf(out, "trunk %s: %s (in failover order; %s)\n", d.Trunk, strings.Join(t.Proxies, ", "), health)
	}
	for _, h := range d.Headers {
		fmt.Fprintf(out, "header %s\n", h)
	}
}
