"""Discovery (DESIGN.md §1): plain and visible. It finds exactly the routers, managers and
handlers in the tree, and a module that fails to import stops it with its name — never a
silent skip. Broken modules are simulated in a temporary directory added to a package's
`__path__`; nothing is written into app/."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import app.api.v1.endpoints as endpoints_package
import app.modules as modules_package
import app.modules.execution.executors as executors_package
from app.core.config import Settings
from app.core.di import discovery
from app.core.di.discovery import DiscoveryError, discover
from app.main import create_app

ROOT = Path(__file__).resolve().parent.parent
HAS_EXECUTION_ENDPOINT = (ROOT / "app/api/v1/endpoints/execution.py").exists()
HAS_EXECUTION_MANAGER = (ROOT / "app/modules/execution/manager.py").exists()

EXPECTED_ROUTERS = ["health", "auth", "backoffice_auth", "users", "projects", "flows",
                    "components", "characters", "events", "ws"]
if HAS_EXECUTION_ENDPOINT:
    EXPECTED_ROUTERS.append("execution")
EXPECTED_MANAGERS = ["users", "auth", "projects", "flows", "characters", "components",
                     "events"]
if HAS_EXECUTION_MANAGER:
    EXPECTED_MANAGERS.append("execution")
# `@subscribe` functions, as module:function. (app/modules/execution/handlers.py registers
# tunnel message handlers, not bus subscribers.)
EXPECTED_HANDLERS = ["app.modules.realtime.handlers:forward_to_tunnels"]


def test_discover_finds_exactly_the_expected_routers_managers_and_handlers() -> None:
    found = discover(include_plugins=False)
    assert sorted(found.routers) == sorted(EXPECTED_ROUTERS)
    assert sorted(found.managers) == sorted(EXPECTED_MANAGERS)
    for domain, cls in found.managers.items():
        module = importlib.import_module(f"app.modules.{domain}.manager")
        assert cls is module.manager_class
    names = [h.name for h in found.handlers]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(EXPECTED_HANDLERS)
    for subscription in found.handlers:
        assert subscription.patterns, subscription
        assert callable(subscription.handler)
    # The order is stable (sorted), so two discoveries agree.
    again = discover(include_plugins=False)
    assert list(again.routers) == list(found.routers)
    assert [h.name for h in again.handlers] == names
    assert list(again.executors) == list(found.executors)


def test_every_discovered_router_is_mounted() -> None:
    app = create_app(Settings(_env_file=None, ENV="test"))
    paths = set(app.openapi()["paths"])
    found = discover(include_plugins=False)
    for name, router in found.routers.items():
        for route in router.routes:
            # path_format: the path as documented ({id}, not the {id:int} convertor form)
            path = "/api/v1" + route.path_format  # type: ignore[attr-defined]
            if name == "ws":
                continue  # a WebSocket route is not in the OpenAPI schema
            assert path in paths, (name, path)


# --- failures stop discovery with the module's name --------------------------------------


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory that can be added to a package's __path__; modules imported from it are
    forgotten afterwards."""
    before = set(sys.modules)
    importlib.invalidate_caches()
    yield tmp_path
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if module is not None and str(tmp_path) in str(getattr(module, "__file__", "") or ""):
            del sys.modules[name]
    importlib.invalidate_caches()


def extend(monkeypatch: pytest.MonkeyPatch, package: ModuleType, directory: Path) -> None:
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(directory)])
    importlib.invalidate_caches()


def write(path: Path, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_a_broken_endpoint_module_stops_discovery(
    scratch: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = unique("broken_endpoint")
    write(scratch / f"{name}.py", """
        from fastapi import APIRouter
        import a_dependency_that_is_not_installed  # noqa: F401
        router = APIRouter()
    """)
    extend(monkeypatch, endpoints_package, scratch)
    with pytest.raises(DiscoveryError) as info:
        discover(include_plugins=False)
    message = str(info.value)
    assert f"app.api.v1.endpoints.{name}" in message
    assert "a_dependency_that_is_not_installed" in message
    assert "\n" not in message
    # The boot stops too: create_app does not swallow it.
    with pytest.raises(DiscoveryError, match=name):
        create_app(Settings(_env_file=None, ENV="test"))


def test_an_endpoint_module_that_raises_stops_discovery(
    scratch: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = unique("raising_endpoint")
    write(scratch / f"{name}.py", "raise RuntimeError('kaput at import')\n")
    extend(monkeypatch, endpoints_package, scratch)
    with pytest.raises(DiscoveryError, match=f"{name}.*RuntimeError.*kaput at import"):
        discover(include_plugins=False)


def test_an_endpoint_module_without_router_stops_discovery(
    scratch: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = unique("routerless")
    write(scratch / f"{name}.py", "routes = []\n")
    extend(monkeypatch, endpoints_package, scratch)
    with pytest.raises(DiscoveryError, match=f"{name}.*router"):
        discover(include_plugins=False)


@pytest.mark.parametrize("leaf", ["manager", "handlers"])
def test_a_broken_domain_module_stops_discovery(
    scratch: Path, monkeypatch: pytest.MonkeyPatch, leaf: str,
) -> None:
    domain = unique("brokendomain")
    write(scratch / domain / "__init__.py", "")
    write(scratch / domain / f"{leaf}.py", "from app.nowhere import nothing  # noqa\n")
    extend(monkeypatch, modules_package, scratch)
    with pytest.raises(DiscoveryError) as info:
        discover(include_plugins=False)
    assert f"app.modules.{domain}.{leaf}" in str(info.value)


def test_a_manager_module_without_manager_class_stops_discovery(
    scratch: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    domain = unique("classless")
    write(scratch / domain / "__init__.py", "")
    write(scratch / domain / "manager.py", "class Something:\n    pass\n")
    extend(monkeypatch, modules_package, scratch)
    with pytest.raises(DiscoveryError, match=f"app.modules.{domain}.manager.*manager_class"):
        discover(include_plugins=False)


def test_a_working_domain_module_is_discovered(
    scratch: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The positive control for the tests above: the same mechanism finds a good module."""
    domain = unique("gooddomain")
    write(scratch / domain / "__init__.py", "")
    write(scratch / domain / "manager.py", """
        class GoodManager:
            def __init__(self, registry):
                self.registry = registry
        manager_class = GoodManager
    """)
    write(scratch / domain / "handlers.py", """
        from app.core.events import subscribe

        @subscribe("flow.*")
        async def on_flow(event, registry):
            pass
    """)
    extend(monkeypatch, modules_package, scratch)
    found = discover(include_plugins=False)
    assert sorted(found.managers) == sorted([*EXPECTED_MANAGERS, domain])
    assert f"app.modules.{domain}.handlers:on_flow" in [h.name for h in found.handlers]


def test_a_broken_executor_module_stops_discovery(
    scratch: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = unique("broken_nodes")
    write(scratch / f"{name}.py", "import json\njson.loads('{not json')\n")
    extend(monkeypatch, executors_package, scratch)
    with pytest.raises(DiscoveryError, match=f"app.modules.execution.executors.{name}"):
        discover(include_plugins=False)


def test_two_executors_with_one_type_stop_discovery(
    scratch: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = """
        from app.modules.execution.executors import executor, NodeOutput

        @executor("duplicateType")
        async def run(ctx):
            return NodeOutput(text="x")
    """
    first, second = unique("nodes_a"), unique("nodes_b")
    write(scratch / f"{first}.py", source)
    write(scratch / f"{second}.py", source)
    extend(monkeypatch, executors_package, scratch)
    with pytest.raises(DiscoveryError) as info:
        discover(include_plugins=False)
    message = str(info.value)
    assert "duplicateType" in message and first in message and second in message


def test_a_plugin_that_fails_to_load_stops_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = importlib.metadata.EntryPoint(
        name="broken_plugin", value="a_plugin_module_that_does_not_exist",
        group=discovery.EXECUTOR_ENTRY_POINT_GROUP)
    real = importlib.metadata.entry_points

    def entry_points(**kwargs: str) -> object:
        if kwargs.get("group") == discovery.EXECUTOR_ENTRY_POINT_GROUP:
            return [broken]
        return real(**kwargs)

    monkeypatch.setattr(discovery.importlib.metadata, "entry_points", entry_points)
    with pytest.raises(DiscoveryError, match=r"broken_plugin.*a_plugin_module_that_does_not"):
        discover(include_plugins=True)
    # Without plugins, the same tree boots.
    assert discover(include_plugins=False).routers
