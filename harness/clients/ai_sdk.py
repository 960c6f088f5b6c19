"""The AI SDK (``ai`` with ``@ai-sdk/openai-compatible``, on node) as a client under replay: the
client the origin proxy is built on.

The packages are installed once with npm, at pinned versions, into the per-user cache
(``~/.cache/mlx-migration-harness/npm/ai-sdk-<pins>``), never into the harness's environment. A
small node script shipped with the package (``ai_sdk_replay.mjs``) gives the provider a ``fetch``
that returns the captured bytes and reads them with ``generateText`` / ``streamText``, as an
application would, declaring the tools the answer calls. Where node or npm is missing, too old, or
the install fails, ``unavailable()`` says why and the replay skips this client with that reason.
"""

from __future__ import annotations

import base64
import fcntl
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.clients.answers import OPENAI_CHAT, CapturedAnswer, ClientResult
from harness.core.paths import user_cache_dir

NAME = "ai-sdk"
PROTOCOLS = (OPENAI_CHAT,)
# Pinned together: the newest releases that still run on node 18/20 (ai 7 needs node 22).
PACKAGES = {"ai": "6.0.333", "@ai-sdk/openai-compatible": "2.0.92", "zod": "3.25.76"}
MIN_NODE_MAJOR = 18
SCRIPT = Path(__file__).with_name("ai_sdk_replay.mjs")
INSTALL_TIMEOUT_S = 300
REPLAY_TIMEOUT_S = 600


def install_dir() -> Path:
    pins = "-".join(f"{name.split('/')[-1]}{version}" for name, version in PACKAGES.items())
    return user_cache_dir() / "npm" / f"ai-sdk-{pins}"


def version() -> str:
    return ", ".join(f"{name} {pinned}" for name, pinned in PACKAGES.items())


def _node_major() -> int | None:
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def unavailable() -> str | None:
    """Why the AI SDK cannot be replayed here (node/npm missing or too old, the install failed), after
    installing it where needed; None when it is ready."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not on PATH: install Node.js 20 with npm to replay answers through the AI SDK"
    major = _node_major()
    if major is None or major < MIN_NODE_MAJOR:
        return f"node {major or '(unknown version)'} is too old for the AI SDK: it needs node {MIN_NODE_MAJOR} or later"
    folder = install_dir()
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".installed"
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time (parallel test workers, runs)
        if marker.is_file():
            return None
        (folder / "package.json").write_text(json.dumps({"private": True, "type": "module"}) + "\n")
        command = ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(folder)]
        command += [f"{name}@{pinned}" for name, pinned in PACKAGES.items()]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"npm install of {version()} into {folder} failed: {exc}"
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])[:400]
            return f"npm install of {version()} into {folder} failed (exit {done.returncode}): {tail}"
        marker.write_text(version() + "\n")
    return None


def replay_all(answers: list[CapturedAnswer]) -> list[ClientResult]:
    """Every answer through the AI SDK in one node process. Raises RuntimeError naming what node said
    when the script itself fails (not when the SDK raises on an answer: that is a result)."""
    if not answers:
        return []
    folder = install_dir()
    script = folder / SCRIPT.name
    if not script.is_file() or script.read_bytes() != SCRIPT.read_bytes():
        shutil.copyfile(SCRIPT, script)  # ESM resolves packages next to the script
    with tempfile.TemporaryDirectory(prefix="ai-sdk-replay-") as scratch:
        source = Path(scratch) / "answers.jsonl"
        with source.open("w", encoding="utf-8") as handle:
            for answer in answers:
                record = {
                    "id": answer.key,
                    "stream": answer.stream,
                    "status": answer.status,
                    "body_b64": base64.b64encode(answer.body).decode("ascii"),
                    "cut": answer.cut,
                    "tools": list(answer.tool_names),
                }
                handle.write(json.dumps(record) + "\n")
        done = subprocess.run(
            ["node", str(script), str(source)], capture_output=True, text=True, timeout=REPLAY_TIMEOUT_S, cwd=folder
        )
    if done.returncode != 0:
        raise RuntimeError(f"{script} exited with {done.returncode}: {done.stderr.strip()[-400:]}")
    results = []
    for line in done.stdout.splitlines():
        if not line.strip():
            continue
        got = json.loads(line)
        results.append(
            ClientResult(
                answer=got["id"],
                client=NAME,
                text=got.get("text") or "",
                tool_calls=got.get("tool_calls") or [],
                # The SDK spells finish reasons with a hyphen ("tool-calls"); the protocol's spelling.
                finish_reason=(got.get("finish_reason") or "").replace("-", "_") or None,
                error=got.get("error"),
            )
        )
    return results
