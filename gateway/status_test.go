package gateway

import (
	"slices"
	"testing"

	"github.com/jsonrtc/jsonrtc/cluster"
)

// view is a node's view for the tests: nodes as name -> up and the
// directory's count of its sessions.
func view(node string, held int, nodes map[string]cluster.NodeStatus) NodeView {
	v := NodeView{Status: cluster.Status{Node: node}, Held: held}
	for _, name := range []string{"n1", "n2", "n3"} {
		if n, ok := nodes[name]; ok {
			n.Name = name
			v.Nodes = append(v.Nodes, n)
		}
	}
	return v
}

func up(sessions int) cluster.NodeStatus   { return cluster.NodeStatus{Up: true, Sessions: sessions} }
func down(sessions int) cluster.NodeStatus { return cluster.NodeStatus{Sessions: sessions} }

// disagreements names a node up in one view and down in another, one up
// in a view that gave none of its own, and held sessions a directory
// counts otherwise; views that agree, a node down everywhere that gives
// no view, and a view with an error (not compared) give none.
func TestDisagreements(t *testing.T) {
	agree := map[string]cluster.NodeStatus{"n1": up(2), "n2": up(0), "n3": down(1)}
	dead := NodeView{Status: cluster.Status{Node: "n3"}, Error: "cluster: node not reachable: n3"}
	for _, tc := range []struct {
		name  string
		views []NodeView
		want  []string
	}{
		{"agree, n3 dead", []NodeView{view("n1", 2, agree), view("n2", 0, agree), dead}, nil},
		{"n3 up for n2, down for n1", []NodeView{
			view("n1", 2, agree),
			view("n2", 0, map[string]cluster.NodeStatus{"n1": up(2), "n2": up(0), "n3": up(1)}),
			dead,
		}, []string{"n3: seen up by n2, down by n1"}},
		{"n3 up everywhere, silent", []NodeView{
			view("n1", 2, map[string]cluster.NodeStatus{"n1": up(2), "n2": up(0), "n3": up(1)}),
			view("n2", 0, map[string]cluster.NodeStatus{"n1": up(2), "n2": up(0), "n3": up(1)}),
			dead,
		}, []string{"n3: seen up by n1, n2, gave no view of its own"}},
		{"n1 holds 3, n2's directory names 2", []NodeView{
			view("n1", 3, map[string]cluster.NodeStatus{"n1": up(3), "n2": up(0)}),
			view("n2", 0, map[string]cluster.NodeStatus{"n1": up(2), "n2": up(0)}),
		}, []string{"n1: holds 3 sessions, the directory names 2 there as seen by n2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := disagreements(tc.views); !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
