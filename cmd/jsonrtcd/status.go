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

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/gateway"
)

// statusUsage is the synopsis of the cluster status subcommand.
const statusUsage = "jsonrtcd cluster status [-config FILE] [-metrics ADDR] [-json]"

// runClusterStatus is "jsonrtcd cluster status": it asks the node the
// configuration describes, on its metrics listener, for its view of the
// cluster (/cluster/status) and prints it, one line a node.
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
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*addr+"/cluster/status", nil)
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
	var st cluster.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	fmt.Fprintf(out, "node %s (lease ttl %s)\n", st.Node, st.LeaseTTL)
	fmt.Fprintf(out, "%-16s %-5s %-24s %s\n", "NODE", "UP", "LEASE", "SESSIONS")
	for _, n := range st.Nodes {
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
	return nil
}
