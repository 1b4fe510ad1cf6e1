# Local AWS-compatible servers for the integration tests; sourced by tests/run.sh.
#
# `servers_start` installs (once, into a cached virtualenv) and starts on loopback:
#   - moto server: S3, SQS (with S3 -> SQS notifications), CloudWatch Logs and STS;
#   - SeaweedFS: a second, stricter S3 that verifies SigV4 signatures;
# waits until each answers, and exports where they are:
#   AUDITLAKE_TEST_MOTO=http://127.0.0.1:PORT  AUDITLAKE_TEST_S3=http://127.0.0.1:PORT
#   AUDITLAKE_TEST_S3_KEY / AUDITLAKE_TEST_S3_SECRET (SeaweedFS credentials), also exported as
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY with AWS_REGION=us-east-1
#   AUDITLAKE_TEST_PYTHON: a Python with psycopg, for the Postgres protocol tests
# `servers_stop` stops them by the PIDs recorded at start. Every wait gives up after a bound and
# prints the server's log.

AUDITLAKE_CACHE="${AUDITLAKE_CACHE:-$HOME/.cache/auditlake}"
SERVERS_VENV="$AUDITLAKE_CACHE/venv-servers"
SERVERS_REQUIREMENTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/servers-requirements.txt"

servers_install() {
  local stamp="$SERVERS_VENV/.installed"
  if [ -f "$stamp" ] && cmp -s "$stamp" "$SERVERS_REQUIREMENTS"; then
    return 0
  fi
  echo "installing test servers into $SERVERS_VENV" >&2
  rm -rf "$SERVERS_VENV"
  python3 -m venv "$SERVERS_VENV"
  "$SERVERS_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$SERVERS_REQUIREMENTS"
  cp "$SERVERS_REQUIREMENTS" "$stamp"
}

# A free loopback port whose +10000 twin is also free (SeaweedFS takes both for HTTP and gRPC).
servers_free_port() {
  "$SERVERS_VENV/bin/python" - <<'EOF'
import random, socket
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
while True:
    port = random.randint(20000, 29999)
    if free(port) and free(port + 10000):
        print(port)
        break
EOF
}

# servers_wait NAME LOG PID COMMAND...: runs COMMAND until it succeeds, for at most 60 s.
# Returns 0 once it succeeds, 2 as soon as the process PID has ended (a start that failed, e.g.
# to bind its port), 1 after the bound, with the server's log.
servers_wait() {
  local name="$1" log="$2" pid="$3"
  shift 3
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      return 2
    fi
    sleep 0.2
  done
  echo "$name did not become ready within 60 s; its log:" >&2
  cat "$log" >&2
  return 1
}

# servers_bind_failure NAME LOG: says which port a server that ended could not bind.
servers_bind_failure() {
  local collided
  collided="$(grep -m1 -iE "address already in use|not available|bind" "$2" || true)"
  if [ -n "$collided" ]; then
    echo "$1 ended at start: $collided" >&2
  else
    echo "$1 ended at start; the end of its log:" >&2
    tail -n 5 "$2" >&2
  fi
}

# servers_ports N: N distinct free loopback ports whose +10000 twins are free and distinct too.
servers_ports() {
  local ports=() p q taken
  while [ "${#ports[@]}" -lt "$1" ]; do
    p="$(servers_free_port)"
    taken=0
    for q in "${ports[@]}"; do
      if [ "$p" = "$q" ] || [ "$p" = "$((q + 10000))" ] || [ "$((p + 10000))" = "$q" ]; then
        taken=1
      fi
    done
    [ "$taken" = 1 ] || ports+=("$p")
  done
  echo "${ports[@]}"
}

# servers_start_moto: moto on a free port, started again on other ports if it could not bind.
servers_start_moto() {
  local attempt moto_port status
  for attempt in 1 2 3; do
    moto_port="$(servers_free_port)"
    "$SERVERS_VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$SERVERS_DIR/moto.log" 2>&1 &
    MOTO_PID=$!
    export AUDITLAKE_TEST_MOTO="http://127.0.0.1:$moto_port"
    status=0
    servers_wait moto "$SERVERS_DIR/moto.log" "$MOTO_PID" curl -sf "$AUDITLAKE_TEST_MOTO/moto-api/" || status=$?
    case "$status" in
      0) return 0 ;;
      2) servers_bind_failure "moto (port $moto_port, attempt $attempt)" "$SERVERS_DIR/moto.log" ;;
      *) return 1 ;;
    esac
  done
  echo "moto did not start; its log:" >&2
  cat "$SERVERS_DIR/moto.log" >&2
  return 1
}

# servers_start_weed: SeaweedFS on free ports (each also takes port + 10000 for gRPC), started
# again on other ports if one of them was taken meanwhile.
servers_start_weed() {
  local attempt status ports
  mkdir -p "$SERVERS_DIR/weed"
  for attempt in 1 2 3; do
    read -r -a ports <<<"$(servers_ports 5)"
    AWS_ACCESS_KEY_ID="$AUDITLAKE_TEST_S3_KEY" AWS_SECRET_ACCESS_KEY="$AUDITLAKE_TEST_S3_SECRET" \
      "$SERVERS_VENV/bin/weed" mini -dir="$SERVERS_DIR/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -master.telemetry=false -s3.port="${ports[0]}" -master.port="${ports[1]}" \
      -volume.port="${ports[2]}" -filer.port="${ports[3]}" -admin.port="${ports[4]}" \
      -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
      >"$SERVERS_DIR/weed.log" 2>&1 &
    WEED_PID=$!
    export AUDITLAKE_TEST_S3="http://127.0.0.1:${ports[0]}"
    # The health endpoint answers before writes work: probe with a signed PUT of a bucket.
    status=0
    servers_wait seaweedfs "$SERVERS_DIR/weed.log" "$WEED_PID" curl -sf -X PUT \
      --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AUDITLAKE_TEST_S3_KEY:$AUDITLAKE_TEST_S3_SECRET" \
      -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$AUDITLAKE_TEST_S3/auditlake-ready" || status=$?
    case "$status" in
      0) return 0 ;;
      2) servers_bind_failure "SeaweedFS (ports ${ports[*]} and each + 10000, attempt $attempt)" "$SERVERS_DIR/weed.log"
         rm -rf "$SERVERS_DIR/weed" && mkdir -p "$SERVERS_DIR/weed" ;;
      *) return 1 ;;
    esac
  done
  echo "SeaweedFS did not start; its log:" >&2
  cat "$SERVERS_DIR/weed.log" >&2
  return 1
}

servers_start() {
  servers_install
  export AUDITLAKE_TEST_PYTHON="$SERVERS_VENV/bin/python"
  SERVERS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/auditlake-servers.XXXXXX")"
  servers_start_moto

  export AUDITLAKE_TEST_S3_KEY="auditlake-test"
  export AUDITLAKE_TEST_S3_SECRET="auditlake-test-secret"
  # The standard AWS variables, so that the default credential chain of the code under test
  # finds these (moto accepts any) and never waits for an instance metadata service.
  export AWS_ACCESS_KEY_ID="$AUDITLAKE_TEST_S3_KEY"
  export AWS_SECRET_ACCESS_KEY="$AUDITLAKE_TEST_S3_SECRET"
  export AWS_REGION="us-east-1"
  export AWS_EC2_METADATA_DISABLED="true"
  servers_start_weed
  echo "test servers: moto at $AUDITLAKE_TEST_MOTO, SeaweedFS S3 at $AUDITLAKE_TEST_S3" >&2
}

servers_stop() {
  local pid
  for pid in ${MOTO_PID:-} ${WEED_PID:-}; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in ${MOTO_PID:-} ${WEED_PID:-}; do
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "${SERVERS_DIR:-}" ]; then
    rm -rf "$SERVERS_DIR"
  fi
}
