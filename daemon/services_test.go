package daemon

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/reconcile"
)

// deadStorePasser is a pass whose signature store stopped answering.
type deadStorePasser struct{}

func (deadStorePasser) RunOnce(context.Context, time.Time, reconcile.Options) (*reconcile.Result, error) {
	return &reconcile.Result{Releases: 74, Inspected: 74, Services: []ledger.ServiceReport{
		{Service: "signature-store", Requests: 3, Failures: 3, Skipped: 71, Open: true, Reason: "3 consecutive failures to answer (the last: signature-store: no answer within 10s)"},
		{Service: "update-graph", Requests: 2},
	}}, nil
}

// TestSkippedServicesInStatusAndMetrics: a service a pass stopped asking
// shows in /status (the last pass's services) and in the per-service
// metrics.
func TestSkippedServicesInStatusAndMetrics(t *testing.T) {
	r := start(t, deadStorePasser{}, "", func(d *Daemon) {
		// A CronJob's pass, as the state file keeps it.
		_ = d.Store.SetLastPass(ledger.PassRecord{Errors: []string{"building x: build-webhook ci.example.com: not asked"},
			Services: []ledger.ServiceReport{{Service: "build-webhook ci.example.com", Requests: 3, Failures: 3, Skipped: 2, Open: true,
				Reason: "3 consecutive failures to answer (the last: Post \"https://ci.example.com/hooks/s3cret-path?token=x\": no answer within 1m0s)"}}})
	})
	waitFor(t, func() bool { return !r.d.m().lastSuccessAt().IsZero() })
	_, metrics := get(t, r.url+"/metrics")
	for _, want := range []string{`dtkbot_service_requests_total{service="signature-store"} 3`, `dtkbot_service_unanswered_total{service="signature-store"} 3`,
		`dtkbot_service_skipped_total{service="signature-store"} 71`, `dtkbot_service_stopped_passes_total{service="signature-store"} 1`,
		`dtkbot_service_requests_total{service="update-graph"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(metrics, `dtkbot_service_stopped_passes_total{service="update-graph"}`) {
		t.Error("a service that answered counts as stopped")
	}
	_, body := get(t, r.url+"/status")
	var st statusBody
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.LastPass == nil || st.LastPass.Result == nil ||
		len(st.LastPass.Result.Services) != 2 || !st.LastPass.Result.Services[0].Open || st.LastPass.Result.Services[0].Skipped != 71 {
		t.Errorf("status %v %s", err, body)
	}
	if rp := st.RecordedPass; rp == nil || len(rp.Services) != 1 || !rp.Services[0].Open || strings.Contains(body, "s3cret-path") || strings.Contains(body, "token=x") {
		t.Errorf("recorded pass %+v in %s", rp, body)
	}
}
