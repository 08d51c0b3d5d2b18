package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/jsonrtc/jsonrtc/gateway"
)

// statusUsage is the synopsis of the cluster status subcommand.
const statusUsage = "jsonrtcd cluster status [-config FILE] [-metrics ADDR] [-all] [-json]"

// runClusterStatus is "jsonrtcd cluster status": it asks the node the
// configuration describes, on its metrics listener, for its view of the
// cluster (/cluster/status) and prints it, one line a node; with -all,
// every node's view as that node gathers them, and where they disagree
// (an error then: the exit status says so to a script).
func runClusterStatus(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprintln(out, "usage:", statusUsage)
		return errors.New("cluster: the only subcommand is status")
	}
	fs := flag.NewFlagSet("jsonrtcd cluster status", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(out, "usage:", statusUsage)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "the node's YAML configuration `file` (its metrics.listen is asked)")
	addr := fs.String("metrics", "", "the node's metrics listener `address` (overrides the configuration's)")
	raw := fs.Bool("json", false, "print the node's answer as it came, JSON")
	all := fs.Bool("all", false, "every node's view, gathered by the node asked, and where they disagree (exit status 1 if they do)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *addr == "" {
		cfg := gateway.DefaultConfig()
		if *configPath != "" {
			var err error
			if cfg, err = gateway.LoadConfig(*configPath); err != nil {
				return err
			}
		}
		if cfg.Metrics.Listen == "" {
			return errors.New("metrics.listen is empty: the node serves no /cluster/status (or give -metrics)")
		}
		*addr = cfg.Metrics.Listen
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "http://" + *addr + "/cluster/status"
	if *all {
		url += "?all"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cluster status: %s from %s (a node without a cluster section serves none)", resp.Status, *addr)
	}
	if *raw {
		_, err := out.Write(body)
		return err
	}
	var cv gateway.ClusterView
	if err := json.Unmarshal(body, &cv); err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	printView(out, cv.NodeView)
	if !*all {
		return nil
	}
	for _, v := range cv.Peers {
		fmt.Fprintln(out)
		printView(out, v)
	}
	fmt.Fprintln(out)
	if len(cv.Disagree) == 0 {
		fmt.Fprintf(out, "%d views agree\n", 1+len(cv.Peers))
		return nil
	}
	fmt.Fprintln(out, "views disagree:")
	for _, d := range cv.Disagree {
		fmt.Fprintln(out, "  "+d)
	}
	return errors.New("cluster status: the nodes' views disagree")
}

// printView prints a node's view: a line of its own figures, then one a
// node.
func printView(out io.Writer, v gateway.NodeView) {
	if v.Error != "" {
		fmt.Fprintf(out, "node %s: no view (%s)\n", v.Node, v.Error)
		return
	}
	state := ""
	if v.Draining {
		state += ", draining"
	}
	if v.CutOff {
		state += ", cut off"
	}
	fmt.Fprintf(out, "node %s (lease ttl %s): %d sessions held, %d calls hosted%s\n", v.Node, v.LeaseTTL, v.Held, v.Calls, state)
	fmt.Fprintf(out, "%-16s %-5s %-24s %s\n", "NODE", "UP", "LEASE", "SESSIONS")
	for _, n := range v.Nodes {
		lease := "-"
		if !n.Lease.IsZero() {
			lease = n.Lease.Format(time.RFC3339Nano)
		}
		up := "no"
		if n.Up {
			up = "yes"
		}
		fmt.Fprintf(out, "%-16s %-5s %-24s %d\n", n.Name, up, lease, n.Sessions)
	}
}
