"""The one build step pyproject.toml cannot express: the repository's top-level
``weights_manifest.json`` goes into the built package as ``zoo/weights_manifest.json``, so the
file has one copy in the repository and an installed zoo still knows its weights. An editable
install reads the top-level file itself (``zoo._manifest.manifest_path``) and gets no copy."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MANIFEST = "weights_manifest.json"
HERE = Path(__file__).resolve().parent


class BuildPyWithManifest(build_py):
    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):  # the attribute came with setuptools 64
            self.copy_file(str(HERE / MANIFEST), str(Path(self.build_lib) / "zoo" / MANIFEST))


setup(cmdclass={"build_py": BuildPyWithManifest})
