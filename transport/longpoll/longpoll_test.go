package longpoll

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
)

// get runs ServeGet in a goroutine and returns its recorder, filled once
// done is closed.
func get(c *Conn) (*httptest.ResponseRecorder, chan struct{}) {
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.ServeGet(rec, httptest.NewRequest(http.MethodGet, "/poll/x", nil))
	}()
	return rec, done
}

func TestToken(t *testing.T) {
	s := NewServer(nil)
	a, b := s.Open("r", "/poll/x"), s.Open("r", "/poll/x")
	if len(a.Token()) != 32 || a.Token() == b.Token() {
		t.Fatalf("tokens %q %q: want distinct 128-bit hex", a.Token(), b.Token())
	}
	if s.Lookup(a.Token(), "/poll/x") != a {
		t.Fatal("own token not found")
	}
	for _, c := range []struct{ token, scope string }{
		{"", "/poll/x"}, {a.Token()[:31], "/poll/x"}, {strings.ToUpper(a.Token()), "/poll/x"}, {a.Token(), "/poll/y"},
	} {
		if s.Lookup(c.token, c.scope) != nil {
			t.Errorf("Lookup(%q, %q) found a connection", c.token, c.scope)
		}
	}
	a.CloseNow()
	if s.Lookup(a.Token(), "/poll/x") != nil || s.Len() != 1 {
		t.Fatal("a dropped connection is still found")
	}
	b.CloseNow()
}

// TestOneHeldGet: a second GET ends the first with 409 and is the one
// that gets the frames.
func TestOneHeldGet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(nil)
		c := s.Open("r", "")
		first, done1 := get(c)
		synctest.Wait()
		second, done2 := get(c)
		<-done1
		if first.Code != http.StatusConflict {
			t.Fatalf("first GET: %d, want 409", first.Code)
		}
		c.Write(context.Background(), []byte(`{"a":1}`))
		c.Write(context.Background(), []byte(`{"b":2}`))
		<-done2
		if second.Code != http.StatusOK || second.Body.String() != `[{"a":1},{"b":2}]` && second.Body.String() != `[{"a":1}]` {
			t.Fatalf("second GET: %d %q", second.Code, second.Body.String())
		}
		c.CloseNow()
	})
}

// TestHold: a GET with nothing to return is answered 204 after Hold, and
// the connection then lives IdleTimeout without a GET before it is lost.
func TestHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(&Options{Hold: 25 * time.Second, IdleTimeout: 15 * time.Second})
		c := s.Open("r", "")
		start := time.Now()
		rec, done := get(c)
		<-done
		if rec.Code != http.StatusNoContent || time.Since(start) != 25*time.Second {
			t.Fatalf("held GET: %d after %v", rec.Code, time.Since(start))
		}
		read := make(chan error, 1)
		go func() { _, err := c.Read(context.Background()); read <- err }()
		time.Sleep(15*time.Second - time.Nanosecond)
		synctest.Wait()
		select {
		case err := <-read:
			t.Fatalf("lost before IdleTimeout: %v", err)
		default:
		}
		time.Sleep(time.Nanosecond)
		if err := <-read; !errors.Is(err, ErrLost) {
			t.Fatalf("Read after IdleTimeout: %v", err)
		}
		if s.Len() != 0 {
			t.Fatal("a lost connection is still held")
		}
	})
}

// TestHeldGetKeepsAlive: while a GET is held the connection is not idle,
// however long the hold.
func TestHeldGetKeepsAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(&Options{Hold: time.Minute, IdleTimeout: time.Second})
		c := s.Open("r", "")
		_, done := get(c)
		<-done
		if s.Len() != 1 {
			t.Fatal("lost while a GET was held")
		}
		c.CloseNow()
	})
}

func TestReadBody(t *testing.T) {
	s := NewServer(&Options{MaxFrameBytes: 16, MaxBatch: 2})
	for body, want := range map[string]error{
		`{"a":1}`:                   nil,
		` [{"a":1}, {"b":2}] `:      nil,
		`[{"a":1},{"b":2},{"c":3}]`: ErrTooLarge,
		`{"a":"0123456789abcdef"}`:  ErrTooLarge,
		`[]`:                        ErrBadBody,
		``:                          ErrBadBody,
		`[{"a":1}`:                  ErrBadBody,
		strings.Repeat(" ", 200):    ErrTooLarge,
	} {
		rec := httptest.NewRecorder()
		_, err := s.ReadBody(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body)))
		if !errors.Is(err, want) {
			t.Errorf("%q: %v, want %v", body, err, want)
		}
	}
}

// TestPostBackPressure: a POST waits for Read to take its frames beyond
// the channel's room, and is answered 204 once they are taken.
func TestPostBackPressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(&Options{MaxBatch: 2})
		c := s.Open("r", "")
		post := func() *httptest.ResponseRecorder {
			rec := httptest.NewRecorder()
			c.ServePost(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`[{"a":1},{"b":2}]`)))
			return rec
		}
		if rec := post(); rec.Code != http.StatusNoContent {
			t.Fatalf("first POST: %d", rec.Code)
		}
		done := make(chan int)
		go func() { done <- post().Code }()
		synctest.Wait()
		select {
		case code := <-done:
			t.Fatalf("second POST answered %d before its frames were read", code)
		default:
		}
		for range 4 {
			if _, err := c.Read(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if code := <-done; code != http.StatusNoContent {
			t.Fatalf("second POST: %d", code)
		}
		c.CloseNow()
	})
}

// TestCloseGoesToNextGet: the frames queued before Close and the close
// code reach the next GET; Read fails at once; the token is then gone.
func TestCloseGoesToNextGet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(nil)
		c := s.Open("r", "")
		c.Write(context.Background(), []byte(`{"last":1}`))
		c.Close(4000, "replaced")
		c.CloseNow() // the reader's: the close stays
		if _, err := c.Read(context.Background()); !errors.Is(err, ErrLost) {
			t.Fatalf("Read after Close: %v", err)
		}
		rec, done := get(c)
		<-done
		if rec.Code != http.StatusOK || rec.Body.String() != `[{"last":1}]` || rec.Header().Get(HeaderCloseCode) != "4000" {
			t.Fatalf("GET after Close: %d %q %v", rec.Code, rec.Body.String(), rec.Header())
		}
		if s.Len() != 0 {
			t.Fatal("closed connection still held after its close went out")
		}
		rec, done = get(c)
		if <-done; rec.Code != http.StatusGone {
			t.Fatalf("GET after the close: %d", rec.Code)
		}
	})
}

// TestDeleteIsLogout: Read fails with close code 1000.
func TestDeleteIsLogout(t *testing.T) {
	s := NewServer(nil)
	c := s.Open("r", "")
	rec := httptest.NewRecorder()
	c.ServeDelete(rec, httptest.NewRequest(http.MethodDelete, "/", nil))
	if _, err := c.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("Read after DELETE: %v", err)
	}
	if s.Len() != 0 {
		t.Fatal("token still valid after logout")
	}
}

// TestSlowPoller: writes beyond MaxPending unfetched frames fail.
func TestSlowPoller(t *testing.T) {
	s := NewServer(&Options{MaxPending: 2})
	c := s.Open("r", "")
	defer c.CloseNow()
	if err := c.WriteFrames(context.Background(), [][]byte{[]byte("{}"), []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(context.Background(), []byte("{}")); !errors.Is(err, ErrSlow) {
		t.Fatalf("write over MaxPending: %v", err)
	}
}

// TestReplacedGetLosesNoFrame: frames written as a newer GET replaces the
// held one reach the newer at once, even when the replaced one took the
// wake-up (which of the two it takes is the scheduler's choice: many
// rounds).
func TestReplacedGetLosesNoFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(&Options{Hold: 25 * time.Second})
		for range 300 {
			c := s.Open("r", "")
			first, done1 := get(c)
			synctest.Wait()
			start := time.Now()
			second, done2 := get(c)
			c.Write(context.Background(), []byte(`{}`))
			<-done1
			if first.Code == http.StatusOK {
				// It had the frame before it was replaced.
				<-done2
				c.CloseNow()
				continue
			}
			<-done2
			if second.Code != http.StatusOK || time.Since(start) != 0 {
				t.Fatalf("replaced GET %d; newer GET %d after %v", first.Code, second.Code, time.Since(start))
			}
			c.CloseNow()
		}
	})
}

// TestPing: a POSTed "ping" is answered 204 (the pong) and never read as
// a frame; the hook may deny it (429) or end the Conn for a flood (1008
// on the next GET).
func TestPing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(nil)
		c := s.Open("r", "")
		ping := func() int {
			rec := httptest.NewRecorder()
			c.ServePost(rec, httptest.NewRequest(http.MethodPost, "/poll/x", strings.NewReader("ping")))
			return rec.Code
		}
		if code := ping(); code != http.StatusNoContent {
			t.Fatalf("ping: %d", code)
		}
		ctx, cancel := context.WithCancel(context.Background())
		read := make(chan []byte, 1)
		go func() {
			data, _ := c.Read(ctx)
			read <- data
		}()
		synctest.Wait()
		select {
		case data := <-read:
			t.Fatalf("the ping was read as a frame: %q", data)
		default:
		}
		cancel()
		<-read
		answer, flood := false, error(nil)
		c.SetTextPing(func() (bool, error) { return answer, flood })
		if code := ping(); code != http.StatusTooManyRequests {
			t.Fatalf("denied ping: %d", code)
		}
		flood = errors.New("flood")
		if code := ping(); code != http.StatusTooManyRequests {
			t.Fatalf("flooding ping: %d", code)
		}
		rec, done := get(c)
		<-done
		if rec.Code != http.StatusOK || rec.Header().Get(HeaderCloseCode) != "1008" {
			t.Fatalf("GET after a flood: %d, close %q", rec.Code, rec.Header().Get(HeaderCloseCode))
		}
	})
}
