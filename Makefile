# dtkbot: pure Go, no cgo, pure-Go OpenPGP in containers/image.
export CGO_ENABLED := 0
export GOFLAGS := -tags=containers_image_openpgp
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all build test race bench lint demo fuzz screenshot kube-assets clean

# Every fuzz target, as package:Target. Their seed corpora run in `make test`.
FUZZ_TARGETS := \
	./releaseinfo:FuzzParseKernel ./releaseinfo:FuzzImageReferences ./releaseinfo:FuzzReleaseMetadata \
	./releaseinfo:FuzzDTKReleaseJSON ./releaseinfo:FuzzOSLabelsAndMetaJSON ./imageread/layer:FuzzExtractFiles \
	./watcher:FuzzParseGraph ./watcher:FuzzStreamTags ./config:FuzzConfig ./plan:FuzzRenderTag ./notify:FuzzMarker \
	./releasesig:FuzzCheckContents ./releasesig:FuzzConfigMapSignatures ./imageread/layer:FuzzMergedLayers \
	./kmod:FuzzParseModule ./kmod:FuzzParseVersions ./kmod:FuzzParseSymvers ./kmod:FuzzSplitSignature ./kmod:FuzzDecompress \
	./upgradegraph:FuzzServedGraph
FUZZTIME ?= 30s

all: lint test build

## build: the dtkbot binary in bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dtkbot ./cmd/dtkbot

## test: every test, with the race detector off (CGO_ENABLED=0); the API server
## tests use the binaries of `make kube-assets` (KUBEBUILDER_ASSETS) and skip without them
test:
	$(GO) test -count=1 ./...

## race: every test under the race detector, which needs cgo (and gcc):
## CGO_ENABLED=1 for this run only
race:
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...

## kube-assets: kube-apiserver (built from the Go module proxy, ~9 min the first
## time) and etcd in the cache; prints the directory for KUBEBUILDER_ASSETS
kube-assets:
	@hack/kube-assets.sh

## bench: round trips and bytes per release, cold and warm; of one kmod check; a cold backfill of 1,000 payloads at concurrency 1, 8, 16;
## the peak RSS of verifying 16 kmod images of 300 MB of modules at once;
## the update graph served for a 500-release channel (requests a second, latency percentiles)
bench:
	$(GO) test -run '^$$' -bench . -benchtime 20x ./releaseinfo/
	$(GO) test -count=1 -run 'TestInspectRequestBudget' -v ./releaseinfo/ | grep -E 'cold:|ok|FAIL'
	$(GO) test -count=1 -run 'TestKmodCheckCost' -v ./verify/ | grep -E 'kmod check|ok|FAIL'
	$(GO) test -v -run '^$$' -bench BenchmarkColdBackfill -benchtime 1x -timeout 30m ./reconcile/ | grep -E 'payloads|concurrency |ok|FAIL'
	$(GO) test -v -run '^$$' -bench BenchmarkVerifyPeakRSS -benchtime 1x -timeout 30m ./verify/ | grep -E 'modules|peak RSS|heap|ok|FAIL'
	$(GO) test -run '^$$' -bench BenchmarkUpdateGraph500 -benchtime 2000x ./daemon/ | grep -E 'Benchmark|ok|FAIL'

## lint: gofmt, go vet, and no leftovers of a merge or a patch (*.orig, *.rej),
## tracked or lying in the tree
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@out=$$( { git ls-files '*.orig' '*.rej'; find . -path ./.git -prune -o -type f \( -name '*.orig' -o -name '*.rej' \) -print | sed 's|^\./||'; } | sort -u); \
	  if [ -n "$$out" ]; then echo "leftovers of a merge or a patch (remove them):"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## fuzz: run every fuzz target for FUZZTIME (default 30s) each
fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "== $$name ($$pkg, $(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s $$pkg || exit 1; done

## demo: the offline demo (cmd/dtkbot-demo) running bin/dtkbot against a local
## registry of sample payloads; both built with the flags of `make build`, so a
## `make build` afterwards has nothing to do
demo:
	@echo "make demo: compiling bin/dtkbot and bin/dtkbot-demo (minutes on a fresh clone; cached after) ..."
	@$(MAKE) --no-print-directory build
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dtkbot-demo ./cmd/dtkbot-demo
	bin/dtkbot-demo --dtkbot bin/dtkbot

## screenshot: docs/coverage.png, the demo's coverage page as headless Chromium
## renders it at 1366 px (needs chromium)
screenshot:
	DTKBOT_SCREENSHOT=$(CURDIR)/docs/coverage.png $(GO) test -count=1 -run TestDemoCoveragePageInABrowser ./cmd/dtkbot/

clean:
	rm -rf bin
