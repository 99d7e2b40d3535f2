#!/usr/bin/env bash
# Create .venv with a Python 3.10 interpreter (Lava 0.10 requires exactly 3.10) and install the
# project with its pinned stack. Idempotent: does nothing when the installed set is current.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
LOCKS="pyproject.toml requirements.lock requirements-interop.lock requirements-cluster.lock"
STAMP="$VENV/.installed-$(cat $LOCKS | sha256sum | cut -c1-16)"

find_python310() {
  local candidates=()
  [ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
  candidates+=(python3.10)
  if command -v pyenv >/dev/null 2>&1; then
    local root; root=$(pyenv root)
    for v in "$root"/versions/3.10*/bin/python3.10; do [ -x "$v" ] && candidates+=("$v"); done
  fi
  for c in "${candidates[@]}"; do
    if out=$("$c" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) && [ "$out" = "3.10" ]; then
      echo "$c"; return 0
    fi
  done
  return 1
}

if [ -f "$STAMP" ] && [ -f "$VENV/interop/.installed" ] \
    && "$VENV/bin/python" -c 'import spikformer_neuro' 2>/dev/null; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  PY=$(find_python310) || {
    echo "error: no Python 3.10 interpreter found. lava-nc 0.10 runs only on Python 3.10." >&2
    echo "Install one (e.g. 'pyenv install 3.10.13' or your distribution's python3.10 package)," >&2
    echo "or point PYTHON=/path/to/python3.10 at it, then re-run." >&2
    exit 1
  }
  echo "creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade "pip<25"
# The lock file pins every package; torch 2.3.1 from PyPI is the CUDA build (~5.6 GB).
"$VENV/bin/python" -m pip install --quiet -c requirements.lock -e ".[test]"
# The optional [cluster] extra (Ray 2.60.0 with Ray Client, for spikeform-run --cluster ray),
# installed here because the Ray tests run in CI: pinned with its dependencies, changing no
# package of requirements.lock. About 13 s and 260 MiB.
"$VENV/bin/python" -m pip install --quiet -c requirements.lock -r requirements-cluster.lock
# The real norse and sinabs for the interop tests (tests/test_compiler/nir/test_norse.py,
# test_sinabs.py) and spikingjelly 0.0.0.0.12 for the official-Spikformer checkpoint tests
# (tests/support/official_models.py), exact versions, in a folder of their own that only
# those tests put on sys.path: sinabs declares nir<=1.0.4 and samna, which clash with our pins
# and are not needed for NIR export and simulation, so they are installed without
# dependencies (they run on the torch, nir and nirtorch above; spikingjelly on torch and
# numpy). Pure Python; about 10 s (norse builds from its sdist).
rm -rf "$VENV/interop"
"$VENV/bin/python" -m pip install --quiet --no-deps --target "$VENV/interop" \
  -r requirements-interop.lock
touch "$VENV/interop/.installed"
rm -f "$VENV"/.installed-*
touch "$STAMP"
echo "environment ready: $VENV"
