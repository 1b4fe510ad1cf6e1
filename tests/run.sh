#!/usr/bin/env bash
# Installs what the tests need and runs the whole test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The build goes where `cargo run` puts its own (./target, or CARGO_TARGET_DIR), so the README's
# two commands share one build; .ci/run keeps CI's outside the clone.
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if [ ! -d ../shared/corpora ]; then
  echo "tests need ../shared/corpora beside the project folder" >&2
  exit 1
fi

cargo build --workspace --all-targets --locked

# GNU time measures the peak memory of the binary in the memory-bound tests.
if [ ! -x /usr/bin/time ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -q time >/dev/null || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q time >/dev/null; }
fi

# shellcheck source=tests/browser.sh
source tests/browser.sh
browser_install

# shellcheck source=tests/servers.sh
source tests/servers.sh
trap servers_stop EXIT
servers_start

# Every test binary runs even after one fails, so a red run names all that failed; a test that
# hangs ends the run (red, its name printed as running for over 60 s) well inside CI's limit.
timeout --kill-after=30s "${AUDITLAKE_TEST_TIMEOUT:-50m}" \
  cargo test --workspace --locked --no-fail-fast -- --test-threads=2
