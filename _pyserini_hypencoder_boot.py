"""Interpreter start-up hook of pyserini-hypencoder (imported by ``pyserini_hypencoder-java.pth``).

Runs ``pyserini_hypencoder/_java.py`` (standard library only) in every Python process of the
environment, so that plain ``python -m pyserini.index.lucene``, ``pyserini.search.lucene`` and
``pyserini.eval.trec_eval`` find Java 21+ too, on Pyserini 1.6 and 2.x alike.  It locates the package
without importing it (no torch, no Pyserini), costs a few milliseconds and never raises.  See docs/java.md.

It also installs a ``sys.excepthook`` that turns two known environment failures into one line instead of a
traceback, for Pyserini's own CLIs as much as the plugin's (docs/compatibility.md): Pyserini 2.4's download of
its prebuilt-index tables at import when the machine is offline, and the plugin's own one-line
``PyseriniVersionError``/``PyseriniImportError``.  Every other exception goes to the previous hook unchanged.
"""


def _package_file(name: str):
    import os
    from importlib.util import find_spec

    package = find_spec("pyserini_hypencoder")
    if package is None or not package.submodule_search_locations:
        return None
    return os.path.join(list(package.submodule_search_locations)[0], name)


def _load(module_name: str, file_name: str):
    """A module of the package loaded by file path under a private name (the package is not imported)."""
    import sys
    from importlib.util import module_from_spec, spec_from_file_location

    module = sys.modules.get(module_name)
    if module is None:
        path = _package_file(file_name)
        spec = spec_from_file_location(module_name, path) if path else None
        if spec is None or spec.loader is None:
            return None
        module = module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[module_name] = module
    return module


def _one_line(value) -> "str | None":
    kind = type(value)
    if kind.__module__.endswith("_compat") and kind.__name__ in ("PyseriniVersionError", "PyseriniImportError"):
        return str(value)
    if isinstance(value, OSError):   # URLError and friends: the compat module knows Pyserini 2.4's table download
        compat = _load("_pyserini_hypencoder_compat", "_compat.py")
        return compat.offline_message(value) if compat is not None else None
    return None


def _install_excepthook() -> None:
    import sys

    previous = sys.excepthook
    if getattr(previous, "_pyserini_hypencoder", False):
        return

    def excepthook(kind, value, tb):
        try:
            message = _one_line(value)
        except Exception:
            message = None
        if message is None:
            return previous(kind, value, tb)
        print(message, file=sys.stderr)

    excepthook._pyserini_hypencoder = True
    sys.excepthook = excepthook


def _boot() -> None:
    import os

    if os.environ.get("PYSERINI_HYPENCODER_JAVA", "").strip().lower() in ("0", "off", "no", "false"):
        return
    _install_excepthook()
    # A private module name: the package itself is not imported here (it may pull in torch), and importing it
    # later loads its own pyserini_hypencoder._java, whose configure_java() then finds the work done.
    module = _load("_pyserini_hypencoder_java", "_java.py")
    if module is not None:
        module.configure_java()


try:
    _boot()
except Exception:  # a start-up hook must never break the interpreter
    pass
