"""Build hook: put ``pyserini_hypencoder-java.pth`` at the top of site-packages.

Everything else lives in setup.cfg.  The .pth runs ``_pyserini_hypencoder_boot`` at interpreter
start, so Pyserini's own CLIs find Java 21+ (docs/java.md).  A build sub-command copies it to the
root of the wheel (``build_lib``), or, for an editable install, to the root of the editable
wheel (the ``install_lib`` that setuptools' ``editable_wheel`` points at the unpacked wheel).
"""
import os

from setuptools import Command, setup
from setuptools.command.build import build

PTH = "pyserini_hypencoder-java.pth"


class build_pth(Command):
    """Copy the start-up .pth to the wheel's root (= site-packages once installed)."""

    description = "copy the start-up .pth file to the wheel root"
    user_options = []

    def initialize_options(self):
        self.build_lib = None
        self.editable_mode = False
        self.target = None

    def finalize_options(self):
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def run(self):
        root = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        self.target = os.path.join(root, PTH)
        self.mkpath(root)
        self.copy_file(PTH, self.target)

    def get_outputs(self):
        return [] if self.editable_mode else [os.path.join(self.build_lib, PTH)]

    def get_output_mapping(self):
        return {}

    def get_source_files(self):
        return [PTH]


class build_with_pth(build):
    sub_commands = build.sub_commands + [("build_pth", None)]


setup(cmdclass={"build": build_with_pth, "build_pth": build_pth})
