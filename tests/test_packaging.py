"""The package declares every folder it ships (issue 6 item 18).

setuptools prints a BuildBackendWarning (about 90 lines on the first ``make run``) for every
importable folder that is not declared, e.g. ``designrun/migrations`` (no ``__init__.py``).
"""

from __future__ import annotations

import warnings

from tests.servers import REPO


def test_every_folder_of_the_package_is_a_declared_package():
    from setuptools.config.setupcfg import read_configuration

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # setuptools' own deprecation notes about setup.cfg
        options = read_configuration(str(REPO / "setup.cfg"), ignore_option_errors=False)
    declared = set(options["options"]["packages"])
    folders = {
        ".".join(path.relative_to(REPO).parts)
        for path in [REPO / "designrun", *(REPO / "designrun").rglob("*")]
        if path.is_dir() and "__pycache__" not in path.parts
    }
    assert folders - declared == set()
    assert declared - folders == set()
