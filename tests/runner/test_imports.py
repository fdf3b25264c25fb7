"""designrun.runner is importable by any runner: the standard library and requests only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import designrun

SERVER_MODULES = ("flask", "flask_sqlalchemy", "sqlalchemy", "werkzeug", "pydantic", "jwt", "boto3")
SERVER_PACKAGES = tuple(
    f"designrun.{name}"
    for name in ("models", "services", "api", "auth", "storage", "triggers", "config", "extensions")
)

# Every server-side module is made unimportable, and the designrun package is a bare stub, so
# that only what designrun/runner/* itself imports gets loaded.
ISOLATED = """
import importlib.abc, json, sys, types
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED or name.startswith({packages!r}):
            raise ImportError("server-side module imported: " + name)
sys.meta_path.insert(0, Block())
package = types.ModuleType("designrun")
package.__path__ = [{package_dir!r}]
sys.modules["designrun"] = package
from designrun.runner import RunCancelled, RunnerClient, RunnerError
print(json.dumps(sorted(sys.modules)))
"""

PLAIN = """
import json, sys
import designrun.runner
print(json.dumps(sorted(sys.modules)))
"""


def _modules(code: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _server_side(modules: list[str]) -> list[str]:
    return [
        m for m in modules if m.split(".")[0] in SERVER_MODULES or m.startswith(SERVER_PACKAGES)
    ]


def test_the_runner_package_imports_only_the_stdlib_and_requests() -> None:
    package_dir = str(Path(designrun.__file__).parent)
    code = ISOLATED.format(
        blocked=SERVER_MODULES, packages=SERVER_PACKAGES, package_dir=package_dir
    )
    modules = _modules(code)
    assert "designrun.runner.client" in modules and "requests" in modules
    assert _server_side(modules) == []


def test_importing_designrun_runner_loads_no_server_module() -> None:
    assert _server_side(_modules(PLAIN)) == []
