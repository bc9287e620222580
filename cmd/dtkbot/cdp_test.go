package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/need"
)

// browser is headless Chromium driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: commands on fd 3, answers on fd 4, each a JSON
// message ended by a NUL), so a test can measure a page's layout as the
// browser laid it out: the page's own Content-Security-Policy allows no
// script, and DevTools' Runtime.evaluate is not bound by it.
type browser struct {
	cmd     *exec.Cmd
	in      *os.File
	mu      sync.Mutex
	nextID  int
	waiters map[int]chan cdpMessage
	events  chan cdpMessage
	session string
}

type cdpMessage struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    any             `json:"params,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// startBrowser starts Chromium as chromium() does (no sandbox, no network
// beyond loopback) with a page of width × height CSS pixels.
func startBrowser(t *testing.T, width, height int) *browser {
	t.Helper()
	bin := need.Command(t, "chromium", "Debian's chromium package; .ci/run installs it")
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	respR, respW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1", "--user-data-dir="+t.TempDir(),
		"--remote-debugging-pipe", "about:blank")
	cmd.ExtraFiles = []*os.File{cmdR, respW}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmdR.Close()
	respW.Close()
	b := &browser{cmd: cmd, in: cmdW, waiters: map[int]chan cdpMessage{}, events: make(chan cdpMessage, 256)}
	go b.read(respR)
	t.Cleanup(func() {
		_, _ = b.call("", "Browser.close", nil)
		cmdW.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	var target struct {
		TargetID string `json:"targetId"`
	}
	b.must(t, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	b.must(t, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	b.session = attached.SessionID
	b.must(t, b.session, "Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
	b.must(t, b.session, "Page.enable", nil, nil)
	return b
}

func (b *browser) read(r *os.File) {
	rd := bufio.NewReader(r)
	for {
		raw, err := rd.ReadBytes(0)
		if err != nil {
			close(b.events)
			return
		}
		var m cdpMessage
		if json.Unmarshal(raw[:len(raw)-1], &m) != nil {
			continue
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.waiters[m.ID]
			delete(b.waiters, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		select {
		case b.events <- m:
		default: // events nobody waits for
		}
	}
}

// call sends one command and waits (at most two minutes) for its answer.
func (b *browser) call(session, method string, params any) (json.RawMessage, error) {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.waiters[id] = ch
	raw, _ := json.Marshal(cdpMessage{ID: id, Method: method, Params: params, SessionID: session})
	_, err := b.in.Write(append(raw, 0))
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		return m.Result, nil
	case <-time.After(2 * time.Minute):
		return nil, fmt.Errorf("%s: no answer from the browser", method)
	}
}

func (b *browser) must(t *testing.T, session, method string, params, out any) {
	t.Helper()
	raw, err := b.call(session, method, params)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
	}
}

// open navigates to url and waits for its load event.
func (b *browser) open(t *testing.T, url string) {
	t.Helper()
	for len(b.events) > 0 {
		<-b.events
	}
	b.must(t, b.session, "Page.navigate", map[string]any{"url": url}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		select {
		case m, ok := <-b.events:
			if !ok {
				t.Fatal("the browser went away")
			}
			if m.Method == "Page.loadEventFired" {
				return
			}
		case <-ctx.Done():
			t.Fatalf("%s did not load", url)
		}
	}
}

// eval evaluates a JavaScript expression in the page and decodes its
// value (returned as JSON text) into out.
func (b *browser) eval(t *testing.T, expr string, out any) {
	t.Helper()
	var res struct {
		Result struct {
			Value string `json:"value"`
		} `json:"result"`
		ExceptionDetails any `json:"exceptionDetails"`
	}
	b.must(t, b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res)
	if res.ExceptionDetails != nil {
		t.Fatalf("evaluating: %v", res.ExceptionDetails)
	}
	if err := json.Unmarshal([]byte(res.Result.Value), out); err != nil {
		t.Fatalf("the page's answer %q: %v", res.Result.Value, err)
	}
}

// screenshot writes a PNG of the page's top, width × height.
func (b *browser) screenshot(t *testing.T, path string, width, height int) {
	t.Helper()
	var shot struct {
		Data string `json:"data"`
	}
	b.must(t, b.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// layout is what measureLayout reads of a page as the browser laid it out.
type layout struct {
	Viewport    int `json:"viewport"`
	ScrollWidth int `json:"scrollWidth"`
	// Overflows are elements (and text) reaching out of their table
	// cell, each described with the cell's row.
	Overflows []string `json:"overflows"`
	// UpdateGraphs and Timelines count the pictures drawn.
	UpdateGraphs int `json:"updateGraphs"`
	Timelines    int `json:"timelines"`
	Marks        int `json:"marks"`
	// Refs are the image references shown short, with their full form
	// in the title.
	Refs       int `json:"refs"`
	RefsFull   int `json:"refsFull"`
	PageHeight int `json:"pageHeight"`
}

// measureLayout asks the page: how wide it is against the viewport, and
// which elements or text of a table cell reach out of that cell (an
// element inside a scrolling box is the box's business, not the cell's).
const measureLayout = `JSON.stringify((() => {
  const out = {viewport: window.innerWidth, scrollWidth: document.documentElement.scrollWidth, overflows: [],
    pageHeight: document.documentElement.scrollHeight};
  const row = cell => { const tr = cell.closest('tr'); return (tr && (tr.dataset.release || '') + ' ' + (tr.dataset.stream || '')) + ' ' + cell.cellIndex; };
  const scrolls = (el, cell) => { for (let a = el.parentElement; a && a !== cell; a = a.parentElement) {
      const s = getComputedStyle(a); if (s.overflowX !== 'visible') return true; } return false; };
  const outside = (r, c) => r.width > 0 && r.height > 0 && (r.left < c.left - 1 || r.right > c.right + 1 || r.top < c.top - 1 || r.bottom > c.bottom + 1);
  for (const cell of document.querySelectorAll('td, th')) {
    const c = cell.getBoundingClientRect();
    if (cell.scrollWidth > cell.clientWidth + 1) out.overflows.push(row(cell) + ': the cell scrolls (' + cell.scrollWidth + ' > ' + cell.clientWidth + ')');
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.nodeType === 1 ? n : n.parentElement;
      if (scrolls(n.nodeType === 1 ? n : el, cell) || (n.nodeType === 3 && !n.textContent.trim())) continue;
      const closed = el.closest('details:not([open])');
      if (closed && cell.contains(closed) && !el.closest('summary')) continue; // not shown until opened
      let r;
      if (n.nodeType === 1) { r = n.getBoundingClientRect(); } else { const rg = document.createRange(); rg.selectNodeContents(n); r = rg.getBoundingClientRect(); }
      if (outside(r, c)) out.overflows.push(row(cell) + ': ' + (n.nodeType === 1 ? '<' + n.tagName.toLowerCase() + ' class="' + n.className + '">' : 'text') +
        ' "' + (n.textContent || '').trim().slice(0, 60) + '" at ' + Math.round(r.left) + '..' + Math.round(r.right) + ' of ' + Math.round(c.left) + '..' + Math.round(c.right));
    }
  }
  for (const g of document.querySelectorAll('svg g.legend')) { // a legend is read whole, not scrolled to
    const box = g.closest('svg').parentElement.getBoundingClientRect(), r = g.getBoundingClientRect();
    if (r.width > 0 && r.right > box.right + 1) out.overflows.push('a picture\'s legend reaches ' + Math.round(r.right) + ', past its box at ' + Math.round(box.right));
  }
  out.updateGraphs = document.querySelectorAll('.update-graph svg').length;
  out.timelines = document.querySelectorAll('#timeline svg').length;
  out.marks = document.querySelectorAll('#timeline svg [data-mark]').length;
  out.refs = document.querySelectorAll('.ref').length;
  out.refsFull = Array.from(document.querySelectorAll('.ref')).filter(e => (e.getAttribute('title') || '').includes('/')).length;
  return out;
})())`

// checkLayout loads url at each width and checks that the page fits it:
// no horizontal scrolling, nothing reaching out of its table cell, the
// pictures drawn. It returns the layouts.
func checkLayout(t *testing.T, url string, widths ...int) map[int]layout {
	t.Helper()
	out := map[int]layout{}
	for _, w := range widths {
		b := startBrowser(t, w, 900)
		b.open(t, url)
		var l layout
		b.eval(t, measureLayout, &l)
		if l.Viewport != w {
			t.Errorf("the viewport is %d px, want %d", l.Viewport, w)
		}
		if l.ScrollWidth > l.Viewport {
			t.Errorf("at %d px the page is %d px wide: it scrolls sideways", w, l.ScrollWidth)
		}
		for _, o := range l.Overflows {
			t.Errorf("at %d px, out of its cell: %s", w, o)
		}
		out[w] = l
	}
	return out
}
