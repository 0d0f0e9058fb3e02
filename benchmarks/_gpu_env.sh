# Sourced by the GPU scripts (set NAME first): $OUT (default ./NAME-out with - for _, created), $PY (PYTHON, else ./.venv/bin/python,
# else python3) and log (a line to stdout and $OUT/NAME.log).
OUT="${OUT:-$PWD/${NAME//_/-}-out}"
mkdir -p "$OUT"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
log() { echo "[$NAME] $*" | tee -a "$OUT/$NAME.log"; }
log "python: $PY ($($PY --version 2>&1))"
