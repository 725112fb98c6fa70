# The two commands of the README: `make demo` and `make test`. Both install libtorch once per
# machine (scripts/setup-libtorch.sh, cached outside the repository) and build with it.
SHELL := /bin/bash
LIBTORCH_ENV = eval "$$(bash scripts/setup-libtorch.sh --env)"
CARGO_FLAGS ?=
# `make install`: where the binary, completions and man pages go.
PREFIX ?= $(HOME)/.local

.PHONY: setup build release demo test bench clean-demo install uninstall

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

# The binary into $(PREFIX)/bin, shell completions (bash, zsh, fish) and man pages under
# $(PREFIX)/share; the binary keeps finding libtorch through its rpath (scripts/install.sh).
install: release
	@bash scripts/install.sh target/release/dino "$(PREFIX)"

uninstall:
	rm -f "$(PREFIX)/bin/dino" "$(PREFIX)/share/bash-completion/completions/dino" \
	  "$(PREFIX)/share/zsh/site-functions/_dino" "$(PREFIX)/share/fish/vendor_completions.d/dino.fish" \
	  "$(PREFIX)"/share/man/man1/dino.1 "$(PREFIX)"/share/man/man1/dino-*.1

bench: release
	@$(LIBTORCH_ENV) && bash scripts/bench.sh

clean-demo:
	rm -rf demo
