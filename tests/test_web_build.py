"""The committed build of the page (app/web/dist) matches the committed source (web/), with
no Node.js needed: every file index.html names exists, the SOURCE_HASH recorded by the build is
the hash of web/ now, the JS stays within its budget, and the page's API types were generated
from the app's current OpenAPI document (issue 12, "Stack and shipping")."""

from __future__ import annotations

import gzip
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from scripts import dump_openapi

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
DIST = ROOT / "app" / "web" / "dist"
JS_BUDGET_GZIP_BYTES = 300 * 1024

# The algorithm web/scripts/source-hash.mjs implements (brief of issue 12): walk web/, skip
# these directories and *.tsbuildinfo, sort by relative POSIX path, and hash
# relpath + NUL + content + NUL for each file.
SKIP_DIRS = {"node_modules", "dist", "coverage", ".vite"}


def source_hash(web: Path) -> str:
    files: list[str] = []

    def walk(folder: Path) -> None:
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                if entry.name not in SKIP_DIRS:
                    walk(entry)
            elif entry.is_file() and not entry.name.endswith(".tsbuildinfo"):
                files.append(entry.relative_to(web).as_posix())

    walk(web)
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0" + (web / rel).read_bytes() + b"\0")
    return digest.hexdigest()


class _Refs(HTMLParser):
    """The files index.html names (script src, link href, img src), and any inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline_scripts = 0
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            value = values.get(name)
            if value and tag in {"script", "link", "img"}:
                self.refs.append(value)
        if tag == "script":
            self._in_script_without_src = not values.get("src")
        for name in values:
            if name.startswith("on"):
                self.inline_scripts += 1  # an inline event handler is inline script too

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script_without_src = False

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1


def index_refs() -> _Refs:
    parser = _Refs()
    parser.feed((DIST / "index.html").read_text(encoding="utf-8"))
    return parser


def local_path(ref: str) -> Path:
    assert not re.match(r"^[a-z]+:|^//", ref), f"index.html loads {ref} from elsewhere (no CDN)"
    return DIST / ref.split("?", 1)[0].split("#", 1)[0].lstrip("/")


def test_index_html_and_every_file_it_names_exist() -> None:
    assert (DIST / "index.html").is_file(), "app/web/dist/index.html is missing: build web/"
    refs = index_refs()
    scripts = [ref for ref in refs.refs if ref.endswith(".js")]
    assert scripts, "index.html loads no script"
    for ref in refs.refs:
        assert local_path(ref).is_file(), f"index.html names {ref}, which is not in the build"


def test_index_html_has_no_inline_script() -> None:
    # The page's Content-Security-Policy is script-src 'self': inline script would not run.
    assert index_refs().inline_scripts == 0


def test_every_chunk_a_script_imports_exists() -> None:
    assets = DIST / "assets"
    for script in assets.glob("*.js"):
        text = script.read_text(encoding="utf-8")
        for name in set(re.findall(r"""["'`](?:\./|/assets/)([\w.\-]+\.(?:js|css))["'`]""",
                                   text)):
            assert (assets / name).is_file(), f"{script.name} imports {name}, not in the build"


def test_the_build_was_made_from_the_committed_source() -> None:
    recorded = (DIST / "SOURCE_HASH").read_text(encoding="utf-8")
    assert re.fullmatch(r"[0-9a-f]{64}", recorded), recorded
    assert recorded == source_hash(WEB), (
        "app/web/dist is stale: web/ changed since the build; run "
        "`npm ci && npm run build` in web/ and commit app/web/dist")


def test_the_source_hash_follows_the_documented_algorithm(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "node_modules" / "x").mkdir(parents=True)
    (tmp_path / "b.txt").write_bytes(b"B")
    (tmp_path / "src" / "a.ts").write_bytes(b"A")
    (tmp_path / "node_modules" / "x" / "ignored.js").write_bytes(b"no")
    (tmp_path / "tsconfig.tsbuildinfo").write_bytes(b"no")
    expected = hashlib.sha256(b"b.txt\0B\0src/a.ts\0A\0").hexdigest()
    assert source_hash(tmp_path) == expected


def test_the_page_js_is_within_its_budget() -> None:
    scripts = sorted((DIST / "assets").glob("*.js"))
    assert scripts, "no JS in app/web/dist/assets"
    gzipped = sum(len(gzip.compress(path.read_bytes(), compresslevel=9)) for path in scripts)
    assert gzipped <= JS_BUDGET_GZIP_BYTES, (
        f"the page's JS is {gzipped / 1024:.1f} KiB gzipped, over the 300 KiB budget")


def test_web_openapi_json_is_the_apps_current_document(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert dump_openapi.main(["--stdout"]) == 0
    current = capsys.readouterr().out
    committed = (WEB / "openapi.json").read_text(encoding="utf-8")
    assert committed == current, (
        "web/openapi.json is not the app's OpenAPI document: run "
        "`python -m scripts.dump_openapi && (cd web && npm run gen:api)` and rebuild the page")
