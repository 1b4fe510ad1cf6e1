# Sourced by the benchmark scripts: `bench_venv` installs (once, into a cached virtualenv) the
# peers they compare against, pinned in ingest/benches/requirements.txt, and sets BENCH_PYTHON.

bench_venv() {
  local requirements venv
  requirements="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/requirements.txt"
  venv="${AUDITLAKE_CACHE:-$HOME/.cache/auditlake}/venv-bench"
  if ! cmp -s "$venv/.installed" "$requirements" 2>/dev/null; then
    echo "installing $(tr '\n' ' ' < "$requirements")into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/.installed"
  fi
  BENCH_PYTHON="$venv/bin/python"
}
