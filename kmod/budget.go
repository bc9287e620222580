package kmod

import (
	"context"

	"golang.org/x/sync/semaphore"
)

// DefaultMemoryBudget is the budget of a Budget made with no size: 192
// MiB, so that a daemon limited to 512 MiB (deploy/kubernetes) keeps room
// for the rest of the process and the collector's slack (docs/performance.md
// has the peak measured).
const DefaultMemoryBudget = 192 << 20

// Budget bounds the memory that module reads hold at once, across every
// kmod image read with it: a pass verifies up to registry.concurrency
// images at once, and without a bound each could hold its largest module
// and decoder at the same time.
//
// A module holds its stored bytes while they are read and decompressed,
// and its content while it is decompressed and parsed. Each comes from its
// own share of the budget (a quarter for stored bytes, the rest for
// content), taken in that order and given back when done: a reader waiting
// for content holds stored bytes, but no reader holding content ever waits,
// so they cannot wait on each other, and the bytes held never exceed the
// budget. A module larger than a share waits until it has the share to
// itself. A nil Budget bounds nothing.
type Budget struct {
	stored, content         *semaphore.Weighted
	storedSize, contentSize int64
}

// NewBudget is a budget of size bytes (DefaultMemoryBudget when size is 0
// or less).
func NewBudget(size int64) *Budget {
	if size <= 0 {
		size = DefaultMemoryBudget
	}
	s := max(size/4, 1)
	return &Budget{stored: semaphore.NewWeighted(s), content: semaphore.NewWeighted(size - s), storedSize: s, contentSize: size - s}
}

// takeStored waits until n bytes of stored modules may be held, and
// returns what gives them back.
func (b *Budget) takeStored(ctx context.Context, n int64) (func(), error) {
	if b == nil {
		return func() {}, nil
	}
	return take(ctx, b.stored, b.storedSize, n)
}

// takeContent waits until n bytes of content (and its decoder and parser)
// may be held.
func (b *Budget) takeContent(ctx context.Context, n int64) (func(), error) {
	if b == nil {
		return func() {}, nil
	}
	return take(ctx, b.content, b.contentSize, n)
}

func take(ctx context.Context, s *semaphore.Weighted, size, n int64) (func(), error) {
	n = min(max(n, 1), size)
	if err := s.Acquire(ctx, n); err != nil {
		return nil, err
	}
	return func() { s.Release(n) }, nil
}

// contentCost is what decoding and parsing a module of content bytes holds
// at once: the content, the ELF parser's copies of its sections and its
// symbols (measured at under three times a module's size, for small
// modules that are mostly symbol table; far less for large ones), and the
// decoder: an xz block's dictionary (at most the content and
// MaxXZDictionary), a few hundred KB of zstd or gzip tables.
func contentCost(compression string, content int64) int64 {
	cost := 4 * content
	switch compression {
	case CompressionNone:
		cost = 3 * content // the content is the stored bytes
	case CompressionXZ:
		cost += min(content, MaxXZDictionary) + 256<<10
	case CompressionZstd, CompressionGzip:
		cost += 256 << 10
	}
	return cost
}
