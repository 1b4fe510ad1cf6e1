# Debian's Chromium and chromedriver for the page test (tests/web.rs); sourced by tests/run.sh.
#
# `browser_install` installs the packages `chromium` and `chromium-driver` when they are missing
# (as root, or through sudo), then exports AUDITLAKE_TEST_CHROMIUM and AUDITLAKE_TEST_CHROMEDRIVER.

browser_install() {
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "installing Debian's chromium and chromium-driver" >&2
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
      sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null ||
      { $sudo apt-get update -q >/dev/null && \
        $sudo apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; }
  fi
  AUDITLAKE_TEST_CHROMIUM="$(command -v chromium)"
  AUDITLAKE_TEST_CHROMEDRIVER="$(command -v chromedriver)"
  export AUDITLAKE_TEST_CHROMIUM AUDITLAKE_TEST_CHROMEDRIVER
}
