package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A long-poll socket closed while its connect POST is being answered
// starts no poller: the poller's WaitGroup.Add came after CloseNow's Wait
// had returned (a data race the chaos test found under -race, and a GET
// loop nobody waited for), and the connect reported success on a socket
// already closed.
func TestPollClosedWhileConnectAnswered(t *testing.T) {
	var p *pollSocket
	gets := make(chan struct{}, 1)
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodGet {
			select {
			case gets <- struct{}{}:
			default:
			}
			return nil, errors.New("no GET expected")
		}
		closed := make(chan struct{})
		go func() {
			p.CloseNow()
			close(closed)
		}()
		<-closed
		h := http.Header{}
		h.Set(pollTokenHeader, "0123456789abcdef0123456789abcdef")
		return &http.Response{StatusCode: http.StatusNoContent, Header: h, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	})
	c, err := dialPoll(context.Background(), &Options{PollURL: "http://gateway.invalid/poll/demo", HTTPClient: &http.Client{Transport: rt}})
	if err != nil {
		t.Fatal(err)
	}
	p = c.ws.(*pollSocket)
	if err := p.post([]byte(`{"control":{}}`)); !errors.Is(err, errPollLost) {
		t.Fatalf("connect answered after the close: %v, want errPollLost", err)
	}
	p.CloseNow()
	select {
	case <-gets:
		t.Fatal("a poller started after the close")
	default:
	}
}
