"""A real uvicorn in a subprocess, as `scripts/dev` would run it, on a free loopback port with
a throw-away SQLite file; the browser tests (and the browser benchmark) drive the page it
serves."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent


class PageServer:
    def __init__(self, database_url: str, port: int, log: Path, **settings: str) -> None:
        self.port = port
        self.log = log
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("DATABASE_", "ACCESS_TOKEN", "DEFAULT_PROVIDER"))}
        env.update({
            "ENV": "test", "DATABASE_URL": database_url, "JWT_SECRET": "browser-" + "x" * 32,
            "BCRYPT_ROUNDS": "4", "LOG_LEVEL": "WARNING", "LLM_TOKEN_STREAM": "1",
            "GC_FREEZE_AFTER_STARTUP": "0",
        })
        env.update(settings)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> PageServer:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.process.returncode}:\n"
                                   f"{self.log.read_text(errors='replace')}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"uvicorn did not answer /health within {timeout_s} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
