"""Write the app's OpenAPI document to web/openapi.json, the source of the page's API types.

    python -m scripts.dump_openapi            # writes web/openapi.json
    python -m scripts.dump_openapi --stdout   # prints it instead

Then `(cd web && npm run gen:api)` turns it into web/src/api/schema.d.ts. The document is
built from a throw-away app (test-ish settings, no database touched, no plugins), with sorted
keys, so the same code always gives the same bytes and a test can compare them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.main import create_app

OUT = Path(__file__).resolve().parent.parent / "web" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    settings = Settings(
        _env_file=None, ENV="test", DATABASE_URL="sqlite+aiosqlite:///:memory:",
        JWT_SECRET="openapi-dump-" + "x" * 32, LOG_LEVEL="WARNING")
    return create_app(settings, include_plugins=False).openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render(openapi_document())
    if "--stdout" in argv:
        sys.stdout.write(text)
    else:
        OUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
