GO       ?= go
PKGS     := ./...
FUZZTIME ?= 30s

CHAOS_DURATION ?= 90s
CHAOS_RUNS     ?= 2
CHAOS_SEED     ?= 1

.PHONY: build test test-ui ui-screenshots lint bench bench-scale fuzz chaos clean

build: ## the binary, at bin/dse
	$(GO) build -o bin/dse .

test: ## every test, with the race detector (the CI command)
	@if [ -z "$$DSE_CHROMIUM" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
		echo "note: chromium not found: the web console's browser tests (dse/ui) skip; install it (apt-get install -y chromium) and run make test-ui"; fi
	$(GO) test -race -timeout 9m -count=1 $(PKGS)

test-ui: ## the web console's browser tests only: real agents, headless Chromium (fails without it)
	DSE_UI_REQUIRE=1 $(GO) test -count=1 -timeout 5m -run '^TestConsole' ./dse/ui

ui-screenshots: ## the console's screenshots for the README, made by the browser tests, into docs/
	DSE_UI_REQUIRE=1 DSE_UI_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -timeout 5m -run '^TestConsole$$' ./dse/ui

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: ## gofmt, go vet, staticcheck (pinned, fetched by go run) and the import-direction check
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	$(GO) run ./internal/importcheck

bench: build ## Go micro-benchmarks, then a short dse bench of each kind
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1s $(PKGS)
	bin/dse bench publish --duration 5s
	bin/dse bench publish --duration 5s --rate 1000
	bin/dse bench registry --ops 20000
	bin/dse bench rpc --duration 5s
	bin/dse bench snapshot --rows 200000

SCALE_DIR ?= docs/scale

bench-scale: build ## every dse bench scale curve: SCALE_DIR/DIM.jsonl and DIM.svg (long: tens of minutes)
	mkdir -p $(SCALE_DIR)
	for dim in tables services subscribers nodes rows registry; do \
		bin/dse bench scale --dim $$dim --plot $(SCALE_DIR)/$$dim.svg > $(SCALE_DIR)/$$dim.jsonl || exit 1; \
	done

fuzz: ## every fuzzer for FUZZTIME each
	$(GO) test ./fsm -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fsm -run '^$$' -fuzz '^FuzzDecodePublish$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transport -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZTIME)
	$(GO) test ./dse/table -run '^$$' -fuzz '^FuzzDecodeBatch$$' -fuzztime $(FUZZTIME)
	$(GO) test ./dse/table -run '^$$' -fuzz '^FuzzFromJSON$$' -fuzztime $(FUZZTIME)
	$(GO) test ./dse/api -run '^$$' -fuzz '^FuzzReadJSON$$' -fuzztime $(FUZZTIME)
	$(GO) test ./dse -run '^$$' -fuzz '^FuzzPeerRequests$$' -fuzztime $(FUZZTIME)
	$(GO) test ./dse/cluster -run '^$$' -fuzz '^FuzzLeaderOp$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/mpcheck -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME)

chaos: ## the chaos suite: real agents, seeded faults, a report (CHAOS_DURATION per run, CHAOS_RUNS runs)
	CHAOS_SEED=$(CHAOS_SEED) CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_RUNS=$(CHAOS_RUNS) \
		$(GO) test -count=1 -timeout 60m -run '^TestChaos$$' -v ./cli

clean:
	rm -rf bin dse-dev-data
