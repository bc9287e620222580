package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/reconcile"
)

// TestPrintPassSaysWhichServicesWereSkipped: the table output names a
// service the pass stopped asking, once, and not one that answered.
func TestPrintPassSaysWhichServicesWereSkipped(t *testing.T) {
	var out bytes.Buffer
	printPass(&out, &reconcile.Result{Releases: 74, Inspected: 74, Services: []ledger.ServiceReport{
		{Service: "signature-store", Requests: 3, Failures: 3, Skipped: 71, Open: true, Reason: "3 consecutive failures to answer (the last: signature-store: no answer within 10s)"},
		{Service: "update-graph", Requests: 2},
	}})
	got := out.String()
	if strings.Count(got, "stopped answering") != 1 || !strings.Contains(got, "signature-store stopped answering: 71 requests not sent") {
		t.Errorf("output:\n%s", got)
	}
}
