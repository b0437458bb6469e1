"""Where the shipped files are: the default model and the trained editor checkpoints.

They are package data of ``sss_core`` (the folder ``sss_core/assets/``) and are found through
:mod:`importlib.resources`, never through a path relative to the source tree, so a plain clone,
an editable install (``pip install -e .``) and a regular install (``pip install .``) all find them.

Example:
    >>> default_model_path().name
    'default-model'
    >>> editor_checkpoint_path("mend-sss").parent.name
    'editors'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import ModelLoadError

_PACKAGE = "sss_core"  # the package whose data the assets are (pyproject.toml: [tool.setuptools.package-data])


def asset_path(*parts: str) -> Path:
    """The path of ``sss_core/assets/<parts...>`` as a real filesystem path.

    Computing the path reads no file; it may not exist (a checkpoint not trained yet): callers check.

    Raises:
        ModelLoadError: the package is installed in a form with no folder on disk (e.g. run from a
            zip archive), where Hugging Face loaders cannot read the model; install it with pip.
    """
    node = resources.files(_PACKAGE).joinpath("assets")
    for part in parts:
        node = node.joinpath(part)
    if not isinstance(node, Path):
        raise ModelLoadError(f"the assets of {_PACKAGE} are not on disk ({node!r}): install the package with "
                             "pip (pip install sss-lab, or pip install -e . in a clone) instead of running it zipped")
    return node


def default_model_path() -> Path:
    """The folder of the shipped default model (a Hugging Face model folder: config.json, weights, tokenizer)."""
    return asset_path("default-model")


def editor_checkpoints_path() -> Path:
    """The folder that holds the trained editor checkpoints, one sub-folder per checkpoint."""
    return asset_path("editors")


def editor_checkpoint_path(name: str) -> Path:
    """The folder of one shipped editor checkpoint, e.g. ``"mend"``, ``"mend-sss"``, ``"serac"``, ``"serac-sss"``."""
    return editor_checkpoints_path() / name
