package poll

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/loopback"
)

func TestMain(m *testing.M) { os.Exit(loopback.Run(m)) }

type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

// TestUntilReturnsWhenTheConditionHolds: counted by calls, not time.
func TestUntilReturnsWhenTheConditionHolds(t *testing.T) {
	var calls atomic.Int32
	r := &recorder{TB: t}
	Until(r, "the third call", 0, func() bool { return calls.Add(1) == 3 })
	if r.failed != "" || calls.Load() != 3 {
		t.Fatalf("failed %q after %d calls", r.failed, calls.Load())
	}
}

// TestUntilFailsWithWhat: a condition that never holds fails, naming what
// was awaited and the last reason.
func TestUntilFailsWithWhat(t *testing.T) {
	r := &recorder{TB: t}
	Until(r, "a miracle", time.Millisecond, func() bool { return false })
	if !strings.Contains(r.failed, "for a miracle") {
		t.Fatalf("failure: %q", r.failed)
	}
	r = &recorder{TB: t}
	UntilWhy(r, "a miracle", time.Millisecond, func() (bool, string) { return false, "none came" })
	if !strings.Contains(r.failed, "for a miracle: none came") {
		t.Fatalf("failure: %q", r.failed)
	}
}

// TestReceive: the value sent, or a failure naming what was awaited.
func TestReceive(t *testing.T) {
	c := make(chan int, 1)
	c <- 7
	if v := Receive(t, "seven", 0, c); v != 7 {
		t.Fatalf("received %d", v)
	}
	r := &recorder{TB: t}
	if v := Receive(r, "an answer", time.Millisecond, make(chan int)); v != 0 || !strings.Contains(r.failed, "for an answer") {
		t.Fatalf("received %d, failure %q", v, r.failed)
	}
}
