# Entry points for people and CI; the real work is in scripts/ so it runs without make too.
.PHONY: demo test bench lint fmt conformance deb

demo:
	scripts/demo.sh

test:
	scripts/test.sh

bench:
	scripts/bench.sh

# target/debian/confd_<version>-1_<arch>.deb from a release build (see README, "Install").
deb:
	scripts/package.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

conformance:
	cargo build --release -p confd
	bash ../shared/conformance/run.sh target/release/confd
