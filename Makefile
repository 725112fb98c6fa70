# The two commands of the README: `make demo` and `make test`. Both install libtorch once per
# machine (scripts/setup-libtorch.sh, cached outside the repository) and build with it.
SHELL := /bin/bash
LIBTORCH_ENV = eval "$$(bash scripts/setup-libtorch.sh --env)"
CARGO_FLAGS ?=

.PHONY: setup build release demo test bench clean-demo

setup:
	@bash scripts/setup-libtorch.sh --env >/dev/null

build: setup
	@$(LIBTORCH_ENV) && cargo build $(CARGO_FLAGS)

release: setup
	@$(LIBTORCH_ENV) && cargo build --release

# Generates the synthetic demo data and trains on it: the TUI on a terminal, progress lines otherwise.
demo: release
	@./target/release/dino demo

# The gate first (format, lints: no unwrap/expect/panic outside tests, functions <= 80 lines), then
# every test; tests/layers.rs checks that module dependencies point one way. A test binary that
# dies of a signal is named, and its core kept and its backtrace printed (scripts/test-with-cores.sh).
test: setup
	@bash scripts/setup-test-tools.sh
	@bash scripts/lint.sh
	@$(LIBTORCH_ENV) && bash scripts/test-with-cores.sh $(CARGO_FLAGS)

bench: release
	@$(LIBTORCH_ENV) && bash scripts/bench.sh

clean-demo:
	rm -rf demo
