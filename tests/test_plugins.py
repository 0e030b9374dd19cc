"""Executor plugins through the `cascade.executors` entry-point group (DESIGN.md §1, §7), the
component catalog generated from the executor declarations, and `scripts.seed_components`.

Plugins are real distributions as far as `importlib.metadata` is concerned: a module plus a
`<name>-<version>.dist-info` directory (METADATA, entry_points.txt, RECORD) in a temporary
directory put on `sys.path` — exactly what `pip install` leaves in site-packages. They are
not pip-installed into the venv on purpose: the venv is shared with every other test process,
and a plugin that redeclares `textOutput` would break their boots. Everything is removed again
(sys.path, sys.modules, the import caches) when a test ends.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.core.config import Settings
from app.core.di.discovery import (
    EXECUTOR_ENTRY_POINT_GROUP,
    Discovered,
    DiscoveryError,
    discover_executors,
)
from app.main import create_app
from app.models import AgenticComponent
from app.modules.components.catalog import describe, entry_from_row
from tests.conftest import ROOT, make_settings
from tests.engine_helpers import API, edge, graph, node, run_flow, trigger
from tests.helpers import assert_error, sign_up_and_login

SEED_TYPES = {"consistentCharacter", "sceneBuilder", "initialPrompt", "promptEnhancer",
              "translator", "storyTeller", "grammarFix", "compressor", "textOutput"}

SHOUT = '''
"""A third-party plugin: uses only the public surface of DESIGN.md §7."""
from pydantic import BaseModel, Field

from app.modules.execution.executors import NodeExecutionContext, NodeOutput, executor


class ShoutConfig(BaseModel):
    times: int = Field(default=1, ge=1, le=5, description="How many marks to add")
    mark: str = Field(default="!", max_length=3, description="The mark")


@executor("shout", config=ShoutConfig, category="Plugins", name="Shout",
          description="Upper-cases its input")
async def shout(ctx: NodeExecutionContext) -> NodeOutput:
    text = ctx.input_text.upper() + ctx.config.mark * ctx.config.times
    return NodeOutput(text=text, data={"node": ctx.node_id, "plugin": "shout"})
'''

DUPLICATE = '''
from app.modules.execution.executors import NodeExecutionContext, NodeOutput, executor


@executor("textOutput", category="Plugins")
async def my_text_output(ctx: NodeExecutionContext) -> NodeOutput:
    return NodeOutput(text="mine")
'''

BROKEN = '''
import this_module_does_not_exist_anywhere  # noqa: F401
'''


class Plugins:
    """Makes plugin distributions under a temporary directory and puts them on sys.path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: list[str] = []
        self.modules: list[str] = []

    def add(self, dist: str, module: str, source: str, *, entry: str | None = None,
            value: str | None = None) -> Path:
        site = self.root / dist
        site.mkdir()
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist}-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n"
            "Requires-Dist: cascade\n")
        (info / "entry_points.txt").write_text(
            f"[{EXECUTOR_ENTRY_POINT_GROUP}]\n{entry or module} = {value or module}\n")
        (info / "top_level.txt").write_text(f"{module}\n")
        (info / "RECORD").write_text(
            f"{module}.py,,\n{info.name}/METADATA,,\n{info.name}/entry_points.txt,,\n"
            f"{info.name}/RECORD,,\n")
        sys.path.insert(0, str(site))
        self.paths.append(str(site))
        self.modules.append(module)
        importlib.invalidate_caches()
        return site

    def clean(self) -> None:
        for path in self.paths:
            while path in sys.path:
                sys.path.remove(path)
        for module in self.modules:
            sys.modules.pop(module, None)
        importlib.invalidate_caches()


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[Plugins]:
    made = Plugins(tmp_path / "plugins")
    made.root.mkdir()
    try:
        yield made
    finally:
        made.clean()
    assert not [ep for ep in importlib.metadata.entry_points(group=EXECUTOR_ENTRY_POINT_GROUP)
                if ep.value in made.modules]


def entry_point_names() -> set[str]:
    return {ep.name for ep in importlib.metadata.entry_points(group=EXECUTOR_ENTRY_POINT_GROUP)}


# --- discovery ---------------------------------------------------------------------------------
def test_an_installed_plugin_is_discovered_through_its_entry_point(plugins: Plugins) -> None:
    assert "shout_nodes" not in entry_point_names()
    plugins.add("cascade-shout", "shout_nodes", SHOUT)
    assert "shout_nodes" in entry_point_names()
    [dist] = [d for d in importlib.metadata.distributions() if d.name == "cascade-shout"]
    assert dist.version == "0.1.0"

    executors = discover_executors()

    assert set(executors) == SEED_TYPES | {"shout"}
    spec = executors["shout"]
    assert spec.origin == "shout_nodes" and spec.category == "Plugins"
    assert spec.config_model.__name__ == "ShoutConfig"
    assert set(discover_executors(include_plugins=False)) == SEED_TYPES


def test_a_plugin_redeclaring_a_type_stops_discovery_with_both_names(
        plugins: Plugins, settings_for_boot: Settings) -> None:
    plugins.add("cascade-dup", "dup_nodes", DUPLICATE)

    with pytest.raises(DiscoveryError) as caught:
        discover_executors()
    message = str(caught.value)
    assert "'textOutput'" in message
    assert "app.modules.execution.executors.output" in message and "dup_nodes" in message
    # The boot stops, too: create_app runs discovery.
    with pytest.raises(DiscoveryError):
        create_app(settings_for_boot)


@pytest.mark.parametrize("how", ["import_error", "missing_module", "missing_attribute"])
def test_a_plugin_that_fails_to_load_stops_discovery_with_its_name(
        plugins: Plugins, settings_for_boot: Settings, how: str) -> None:
    if how == "import_error":
        plugins.add("cascade-broken", "broken_nodes", BROKEN)
        expect = "this_module_does_not_exist_anywhere"
    elif how == "missing_module":
        plugins.add("cascade-broken", "broken_nodes", "", value="no_such_plugin_module")
        expect = "no_such_plugin_module"
    else:
        plugins.add("cascade-broken", "broken_nodes", SHOUT, value="broken_nodes:nothing")
        expect = "nothing"

    with pytest.raises(DiscoveryError) as caught:
        discover_executors()
    message = str(caught.value)
    assert "'broken_nodes'" in message and expect in message
    with pytest.raises(DiscoveryError) as at_boot:
        create_app(settings_for_boot)
    assert "broken_nodes" in str(at_boot.value)


@pytest.fixture
def settings_for_boot(tmp_path: Path) -> Settings:
    # Discovery runs before the database is touched; this database is never opened.
    return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'never.db'}")


# --- a plugin in a running app -----------------------------------------------------------------
@pytest.fixture
async def plugin_app(plugins: Plugins, settings: Settings) -> AsyncIterator[FastAPI]:
    plugins.add("cascade-shout", "shout_nodes", SHOUT)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def plugin_client(plugin_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=plugin_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_a_plugin_is_listed_and_runs(plugin_client: httpx.AsyncClient,
                                           plugin_app: FastAPI) -> None:
    account = await sign_up_and_login(plugin_client)
    r = await plugin_client.get(f"{API}/components/shout", headers=account.headers)
    assert r.status_code == 200, r.text
    entry = r.json()
    assert (entry["type"], entry["name"], entry["category"]) == ("shout", "Shout", "Plugins")
    assert entry["description"] == "Upper-cases its input"
    assert [(f["name"], f["kind"], f["default"], f["required"]) for f in entry["fields"]] == [
        ("times", "integer", 1, False), ("mark", "string", "!", False)]
    assert entry["fields"][0]["description"] == "How many marks to add"
    assert entry["api_config"]["makes_api_call"] is False
    listed = await plugin_client.get(f"{API}/components", headers=account.headers)
    assert "shout" in {c["type"] for c in listed.json()}

    g = graph([node("p", "initialPrompt", prompt="hello"), node("s", "shout", times=3),
               node("o", "textOutput")], [edge("p", "s"), edge("s", "o")])
    _, run = await run_flow(plugin_client, account, plugin_app, **g)
    assert run["status"] == "succeeded"
    assert run["nodes"]["s"]["output"] == {"text": "HELLO!!!",
                                           "data": {"node": "s", "plugin": "shout"}}
    assert run["outputs"]["o"]["text"] == "HELLO!!!"

    # The plugin's config model validates its nodes like any other.
    bad = graph([node("s", "shout", times=9, mark="!!!!")], [])
    error = assert_error(await trigger(plugin_client, account, **bad), 422, "invalid_graph")
    assert {p["code"] for p in error["details"]} == {"invalid_node_config"}
    assert len(error["details"]) == 2


# --- the catalog -------------------------------------------------------------------------------
def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


async def test_components_and_catalog_equal_describe_of_every_executor(
        client: httpx.AsyncClient, app: FastAPI) -> None:
    executors = app.state.registry.get(Discovered).executors
    expected = {type_: as_json(describe(spec)) for type_, spec in executors.items()}
    assert set(expected) >= SEED_TYPES
    account = await sign_up_and_login(client)

    r = await client.get(f"{API}/components", headers=account.headers)
    assert r.status_code == 200
    listed = {c["type"]: {k: v for k, v in c.items() if k != "id"} for c in r.json()}
    assert listed == expected
    for type_ in SEED_TYPES:
        r = await client.get(f"{API}/components/{type_}", headers=account.headers)
        assert {k: v for k, v in r.json().items() if k != "id"} == expected[type_]
    assert_error(await client.get(f"{API}/components/nope", headers=account.headers), 404)

    async with app.state.sessionmaker() as session:
        rows = (await session.execute(select(AgenticComponent).options(
            selectinload(AgenticComponent.fields), selectinload(AgenticComponent.ports),
            selectinload(AgenticComponent.api_config),
            selectinload(AgenticComponent.output_schema)))).scalars().all()
        stored = {row.type: {k: v for k, v in entry_from_row(row).items() if k != "id"}
                  for row in rows}
    assert stored == expected
    # Spot checks against the declarations (DESIGN.md §7).
    assert expected["storyTeller"]["api_config"]["default_temperature"] == 0.95
    assert expected["compressor"]["api_config"]["api_call"] == "conditional"
    assert expected["consistentCharacter"]["api_config"]["makes_api_call"] is False
    assert [p["kind"] for p in expected["consistentCharacter"]["ports"]] == ["adapter"]


def run_seed(database_url: str) -> str:
    env = {**os.environ, "DATABASE_URL": database_url, "ENV": "test", "LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-m", "scripts.seed_components"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_seed_components_is_idempotent(database_url: str, settings: Settings) -> None:
    first = await asyncio.to_thread(run_seed, database_url)
    second = await asyncio.to_thread(run_seed, database_url)

    count = len(discover_executors())
    assert first.startswith(f"component catalog: {count} types, ")
    assert second == f"component catalog: {count} types, 0 changed"
    # What the script wrote is what an app serves.
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            account = await sign_up_and_login(c)
            r = await c.get(f"{API}/components", headers=account.headers)
    assert {c["type"] for c in r.json()} == set(discover_executors())
