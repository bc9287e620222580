package kmod

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestBudgetBoundsWhatIsHeld: readers taking stored bytes, then content
// while they hold them, never hold more than each share, none waits
// forever (a reader waiting for content holds stored bytes; no reader
// holding content waits), and one larger than its share gets it alone.
func TestBudgetBoundsWhatIsHeld(t *testing.T) {
	b := NewBudget(64 << 10)
	var stored, content, maxStored, maxContent atomic.Int64
	raise := func(m *atomic.Int64, v int64) {
		for cur := m.Load(); v > cur && !m.CompareAndSwap(cur, v); cur = m.Load() {
		}
	}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			n := int64(1+i%7) * 3 << 10 // up to 21 KiB: more than the stored share (16 KiB) for some
			giveBack, err := b.takeStored(context.Background(), n)
			if err != nil {
				t.Error(err)
				return
			}
			held := min(n, b.storedSize)
			raise(&maxStored, stored.Add(held))
			runtime.Gosched()
			giveBackContent, err := b.takeContent(context.Background(), 4*n)
			if err != nil {
				t.Error(err)
				return
			}
			heldContent := min(4*n, b.contentSize)
			raise(&maxContent, content.Add(heldContent))
			runtime.Gosched()
			content.Add(-heldContent)
			giveBackContent()
			stored.Add(-held)
			giveBack()
		})
	}
	wg.Wait()
	if maxStored.Load() > b.storedSize || maxContent.Load() > b.contentSize {
		t.Errorf("held %d stored bytes (share %d), %d of content (share %d)", maxStored.Load(), b.storedSize, maxContent.Load(), b.contentSize)
	}
	t.Logf("at most %d stored bytes and %d of content held at once", maxStored.Load(), maxContent.Load())

	ctx, cancel := context.WithCancel(context.Background())
	giveBack, _ := b.takeContent(context.Background(), b.contentSize)
	cancel()
	if _, err := b.takeContent(ctx, 1); err == nil {
		t.Error("a reader waiting when the context ended: no error")
	}
	giveBack()
	var none *Budget
	if giveBack, err := none.takeContent(context.Background(), 1<<40); err != nil {
		t.Error(err)
	} else {
		giveBack()
	}
}
