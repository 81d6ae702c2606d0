# oidc-guard — see README.md.
#
#   make build   the Traefik plugin folder dist/oidc-guard/ and dist/oidc-guard-bridge.wasm
#   make test    installs what the tests need, then runs every test
#   make demo    real Traefik + demo IdP + demo backend on 127.0.0.1; prints the URL
#   make bench   throughput against real Traefik, with and without the plugin, same run
#   make fuzz    coverage-guided fuzzing of the parsers (nightly)

SHELL := /bin/bash
CARGO ?= cargo
WASM_TARGET := wasm32-wasip1
# ring's C code must be compiled by clang for wasm32 (gcc leaves env.ring_core_* imports).
export CC_wasm32_wasip1 := clang
export CARGO_TERM_COLOR ?= never
RELEASE := target/$(WASM_TARGET)/release

.PHONY: all build deps-build test test-deps lint fmt demo bench fuzz clean-dist

all: build

deps-build:
	@scripts/deps.sh build

build: deps-build
	$(CARGO) build --release --locked --target $(WASM_TARGET) -p oidc-guard --bin oidc-guard
	@mkdir -p dist/oidc-guard
	cp $(RELEASE)/oidc-guard.wasm dist/oidc-guard/plugin.wasm
	cp .traefik.yml dist/oidc-guard/.traefik.yml
	$(CARGO) build --release --locked --target $(WASM_TARGET) -p oidc-guard --bin oidc-guard \
		--no-default-features --features bridge
	cp $(RELEASE)/oidc-guard.wasm dist/oidc-guard-bridge.wasm
	python3 scripts/check-wasm.py traefik dist/oidc-guard/plugin.wasm
	python3 scripts/check-wasm.py bridge dist/oidc-guard-bridge.wasm

test-deps:
	@scripts/deps.sh test

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked -p oidc-guard --target $(WASM_TARGET) --bin oidc-guard -- -D warnings
	$(CARGO) clippy --locked -p oidc-guard --target $(WASM_TARGET) --bin oidc-guard \
		--no-default-features --features bridge -- -D warnings
	$(CARGO) clippy --locked -p oidc-guard-test-guests -p oidc-guard-test-guests-traefik \
		--target $(WASM_TARGET) --bins -- -D warnings

fmt:
	$(CARGO) fmt --all

# The suites run the artifacts `make build` just wrote instead of building their own copies.
test: test-deps build lint
	OIDC_GUARD_WASM=$(CURDIR)/dist/oidc-guard/plugin.wasm \
	OIDC_GUARD_BRIDGE_WASM=$(CURDIR)/dist/oidc-guard-bridge.wasm \
	$(CARGO) test --locked --workspace -- --test-threads=$${TEST_THREADS:-4}

demo: build
	@scripts/deps.sh demo
	@scripts/demo.sh

bench: build test-deps
	@scripts/bench.sh

# Coverage-guided fuzzing (nightly + cargo-fuzz, installed on first use); FUZZ_SECS per target.
FUZZ_TARGETS := resp_frame jose config http_response request_target
fuzz:
	@rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		cargo +nightly fuzz run $$t -- -max_total_time=$${FUZZ_SECS:-60} -rss_limit_mb=2048 || exit 1; \
	done

clean-dist:
	rm -rf dist
