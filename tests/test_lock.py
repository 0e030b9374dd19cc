"""uv.lock (issue 11 item 9): it matches pyproject.toml, the check really catches a mismatch,
and .venv holds what the lock pins, with the project installed editable.

Every uv call here is offline with an empty cache of its own, so the answer depends on the
two files alone — not on the network (tests send nothing off the machine) nor on what a
developer's uv cache happens to hold.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _pinned_uv_version() -> str:
    found = re.search(r"^UV_VERSION=(\S+)$", (ROOT / "scripts/_uv.sh").read_text(), re.M)
    assert found, "scripts/_uv.sh has no UV_VERSION= line"
    return found.group(1)


def _uv() -> str:
    """The uv that scripts/_venv.sh bootstrapped (it exports CASCADE_UV)."""
    uv = os.environ.get("CASCADE_UV") or str(
        ROOT / ".tools" / f"uv-{_pinned_uv_version()}" / "bin" / "uv")
    if not Path(uv).is_file():
        pytest.fail(f"no uv at {uv}: run the tests through scripts/test, or run "
                    "`scripts/lock --check` once, which bootstraps the pinned uv")
    return uv


def _lock_check(project: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_CACHE_DIR": str(cache), "UV_OFFLINE": "1",
           "UV_PYTHON_DOWNLOADS": "never"}
    return subprocess.run([_uv(), "lock", "--check", "--offline"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)


def test_lock_matches_pyproject(tmp_path: Path) -> None:
    done = _lock_check(ROOT, tmp_path / "uv-cache")
    assert done.returncode == 0, (
        "uv.lock does not match pyproject.toml: run `scripts/lock` and commit uv.lock "
        f"(uv said, offline:\n{done.stderr})")


def _set_dependencies(pyproject: str, edit: str) -> str:
    if edit == "add":
        return pyproject.replace('    "orjson>=3.9",\n',
                                 '    "orjson>=3.9",\n    "tomli-w>=1.0",\n')
    if edit == "remove":
        return pyproject.replace('    "orjson>=3.9",\n', "")
    if edit == "tighten":
        return pyproject.replace('"fastapi>=0.115"', '"fastapi>=0.115,<0.116"')
    if edit == "extra":
        return pyproject.replace('    "pyinstrument>=4.6",\n',
                                 '    "pyinstrument>=4.6",\n    "tomli-w>=1.0",\n')
    raise AssertionError(edit)


@pytest.mark.parametrize("edit", ["add", "remove", "tighten", "extra"])
def test_lock_check_fails_when_pyproject_changes(tmp_path: Path, edit: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "uv.lock", project / "uv.lock")
    original = (ROOT / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(original)
    # The same copy, unchanged, passes: what fails below fails because of the edit.
    control = _lock_check(project, tmp_path / "uv-cache")
    assert control.returncode == 0, control.stderr

    edited = _set_dependencies(original, edit)
    assert edited != original, f"the {edit!r} edit no longer applies to pyproject.toml"
    (project / "pyproject.toml").write_text(edited)
    done = _lock_check(project, tmp_path / "uv-cache")
    assert done.returncode != 0, done.stderr
    # Offline with an empty cache uv cannot re-resolve, so it says so; with the metadata at
    # hand it says the lock needs updating. Either way it names the cause.
    assert ("needs to be updated" in done.stderr
            or "network was disabled" in done.stderr), done.stderr
    assert (project / "uv.lock").read_bytes() == (ROOT / "uv.lock").read_bytes()


def test_uv_pin_agrees_with_pyproject() -> None:
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"][
        "required-version"]
    assert required == f"=={_pinned_uv_version()}"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _site_distributions() -> list[importlib.metadata.Distribution]:
    """What is installed in the environment itself: not the cascade.egg-info that building
    the editable install leaves in the checkout, which the current directory would shadow it
    with."""
    return list(importlib.metadata.distributions(path=[sysconfig.get_paths()["purelib"]]))


def test_environment_holds_the_locked_versions() -> None:
    """scripts/_venv.sh synced this interpreter's environment from uv.lock."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    # A package may be locked at several versions, one per Python-version split.
    locked: dict[str, set[str]] = {}
    for package in lock["package"]:
        if "version" in package:
            locked.setdefault(_normalize(package["name"]), set()).add(package["version"])
    installed = {_normalize(d.metadata["Name"]): d.version for d in _site_distributions()}
    # The test extras must all be there, at the locked versions.
    test_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["test"]
    for requirement in test_extra:
        name = _normalize(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0])
        assert name in installed, f"{name} (test extra) is not installed"
    wrong = {name: (version, locked[name]) for name, version in installed.items()
             if name in locked and name != "cascade" and version not in locked[name]}
    assert not wrong, f"installed versions differ from uv.lock (installed, locked): {wrong}"


def test_project_is_installed_editable() -> None:
    """As `pip install -e .` left it: the app package is importable from .venv, from this
    checkout's sources."""
    [dist] = [d for d in _site_distributions() if d.metadata["Name"] == "cascade"]
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    assert direct_url.get("dir_info", {}).get("editable") is True, direct_url
    assert Path(direct_url["url"].removeprefix("file://")).resolve() == ROOT
    import app

    assert Path(app.__file__).resolve().parent == ROOT / "app"
