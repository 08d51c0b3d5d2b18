package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

// TestPollCloseNowDuringConnect kills a long-poll socket while its first
// POST is being answered: the poller that answer starts must not race the
// kill's wait for the socket's goroutines (the race detector flagged
// wg.Add against wg.Wait in test/integration's TestChaosMixed).
func TestPollCloseNowDuringConnect(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			<-r.Context().Done() // a held poll, until the socket ends
			return
		}
		w.Header().Set(pollTokenHeader, "tok")
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	for range 400 {
		c, err := dialPoll(t.Context(), &Options{PollURL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		p := c.ws.(*pollSocket)
		var wg sync.WaitGroup
		wg.Go(func() { p.Write(context.Background(), websocket.MessageText, []byte(`{}`)) })
		wg.Go(func() { p.CloseNow() })
		wg.Wait()
		p.CloseNow()
		select {
		case <-p.done:
		default:
			t.Fatal("the socket is still open after CloseNow")
		}
	}
}
