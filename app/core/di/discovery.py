"""All discovery, in one function called at start-up (STYLE.md "Discovery without magic").

In-tree packages are walked with `pkgutil.iter_modules` in sorted order and fixed names are
read: `router` in api/v1/endpoints/*, `manager_class` in modules/*/manager.py, `@subscribe`
marks in modules/*/handlers.py, `@executor` marks in modules/execution/executors/*.
Third-party executors come from the `cascade.executors` entry-point group. A module that
fails to import, or two executors with one type, stop the boot with names — never a skip.

Core imports nothing from app.modules (pyproject.toml [tool.importlinter]): the packages
are walked by name, and an executor's mark is read as the `ExecutorMark` protocol, which
`ExecutorSpec` (app/modules/execution/executors/api.py) satisfies.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter

from app.core.events import Handler, patterns_of

ENDPOINTS_PACKAGE = "app.api.v1.endpoints"
MODULES_PACKAGE = "app.modules"
EXECUTORS_PACKAGE = "app.modules.execution.executors"
EXECUTOR_ENTRY_POINT_GROUP = "cascade.executors"
_EXECUTOR_API_MODULES = {"api"}
# The attribute `@executor` (app/modules/execution/executors/api.py) sets on a function.
EXECUTOR_MARK = "__cascade_executor__"


@runtime_checkable
class ExecutorMark(Protocol):
    """What discovery reads of an executor's spec: its node type and where it was declared."""

    @property
    def type(self) -> str: ...

    @property
    def origin(self) -> str: ...


def mark_of(obj: object) -> ExecutorMark | None:
    """The mark `@executor` attached to `obj`, if any."""
    mark = getattr(obj, EXECUTOR_MARK, None)
    return mark if isinstance(mark, ExecutorMark) else None


class DiscoveryError(RuntimeError):
    pass


@dataclass(frozen=True)
class Subscription:
    name: str  # module:function
    patterns: tuple[str, ...]
    handler: Handler


@dataclass
class Discovered:
    routers: dict[str, APIRouter] = field(default_factory=dict)
    managers: dict[str, type[Any]] = field(default_factory=dict)
    handlers: list[Subscription] = field(default_factory=list)
    executors: dict[str, ExecutorMark] = field(default_factory=dict)


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise DiscoveryError(f"cannot import {name}: {type(exc).__name__}: {exc}") from exc


def _submodules(package_name: str) -> list[tuple[str, bool]]:
    package = _import(package_name)
    found = pkgutil.iter_modules(package.__path__)
    return sorted((info.name, info.ispkg) for info in found)


def discover_routers() -> dict[str, APIRouter]:
    routers = {}
    for name, _ in _submodules(ENDPOINTS_PACKAGE):
        module = _import(f"{ENDPOINTS_PACKAGE}.{name}")
        router = getattr(module, "router", None)
        if not isinstance(router, APIRouter):
            raise DiscoveryError(f"{module.__name__} has no `router` (an APIRouter)")
        routers[name] = router
    return routers


def _domain_module(domain: str, leaf: str) -> ModuleType | None:
    if importlib.util.find_spec(f"{MODULES_PACKAGE}.{domain}.{leaf}") is None:
        return None
    return _import(f"{MODULES_PACKAGE}.{domain}.{leaf}")


def discover_managers_and_handlers() -> tuple[dict[str, type[Any]], list[Subscription]]:
    managers: dict[str, type[Any]] = {}
    handlers: list[Subscription] = []
    for domain, is_package in _submodules(MODULES_PACKAGE):
        if not is_package:
            continue
        manager_module = _domain_module(domain, "manager")
        if manager_module is not None:
            cls = getattr(manager_module, "manager_class", None)
            if not inspect.isclass(cls):
                raise DiscoveryError(f"{manager_module.__name__} has no `manager_class`")
            managers[domain] = cls
        handlers_module = _domain_module(domain, "handlers")
        if handlers_module is not None:
            for attr, obj in sorted(vars(handlers_module).items()):
                patterns = patterns_of(obj)
                if patterns:
                    handlers.append(Subscription(f"{handlers_module.__name__}:{attr}",
                                                 patterns, obj))
    return managers, handlers


def _collect_executors(module: ModuleType, into: dict[str, ExecutorMark]) -> None:
    for _, obj in sorted(vars(module).items()):
        spec = mark_of(obj)
        if spec is None or into.get(spec.type) is spec:
            continue
        if spec.type in into:
            raise DiscoveryError(
                f"executor type {spec.type!r} is declared twice: by {into[spec.type].origin} "
                f"and by {spec.origin}"
            )
        into[spec.type] = spec


def discover_executors(*, include_plugins: bool = True) -> dict[str, ExecutorMark]:
    executors: dict[str, ExecutorMark] = {}
    for name, _ in _submodules(EXECUTORS_PACKAGE):
        if name not in _EXECUTOR_API_MODULES:
            _collect_executors(_import(f"{EXECUTORS_PACKAGE}.{name}"), executors)
    if include_plugins:
        for entry_point in sorted(
            importlib.metadata.entry_points(group=EXECUTOR_ENTRY_POINT_GROUP),
            key=lambda ep: ep.name,
        ):
            try:
                loaded = entry_point.load()
            except Exception as exc:
                raise DiscoveryError(
                    f"executor plugin {entry_point.name!r} ({entry_point.value}) failed to "
                    f"load: {type(exc).__name__}: {exc}"
                ) from exc
            if isinstance(loaded, ModuleType):
                _collect_executors(loaded, executors)
            else:
                spec = mark_of(loaded)
                if spec is None:
                    raise DiscoveryError(f"executor plugin {entry_point.name!r} declares "
                                         "no @executor")
                holder = ModuleType(entry_point.name)
                holder.executor = loaded  # type: ignore[attr-defined]
                _collect_executors(holder, executors)
    return executors


def discover(*, include_plugins: bool = True) -> Discovered:
    managers, handlers = discover_managers_and_handlers()
    return Discovered(
        routers=discover_routers(), managers=managers, handlers=handlers,
        executors=discover_executors(include_plugins=include_plugins),
    )
