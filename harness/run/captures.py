"""Evidence a user can replay: for each request that failed a check (or got no 200), the run folder
keeps ``captures/<name>/`` with

- ``request.json``  the exact bytes sent (``model`` is the served id of that server),
- ``response.raw``  the exact bytes of the answer (a stream's SSE events as they came),
- ``curl.sh``       one ``curl`` line that sends the same bytes again, run from the run folder against
                    a server started on the same model (``HARNESS_BASE_URL`` overrides the address
                    the server had in the run, ``HARNESS_API_KEY`` supplies the key),
- ``capture.json``  which request it was, the status and the failed checks with their evidence.

Every other answer keeps only its raw bytes, ``answers/<name>.raw`` (a few KB each), so the client
replay (``harness.clients``) can feed every answer to real client libraries. The row names the file
holding its answer's bytes either way (``ResultRow.answer``).

An API key never lands in a capture: it is masked in both bodies, and the curl line reads it from
the environment. The row names its capture folder (``ResultRow.capture``).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from harness.capture.http import CapturedResponse
from harness.core.rows import ResultRow

CAPTURES_DIR = "captures"
# Every answer without a capture of its own, appended to one file of the run: a row names its slice
# ("answers.raw#OFFSET+LENGTH"). One file, not one per answer: creating a file costs a request
# ~0.3 ms here, appending a few microseconds. The lock keeps concurrent sessions' slices whole.
ANSWERS_FILE = "answers.raw"
_ANSWERS_LOCK = threading.Lock()
REQUEST_FILE = "request.json"
RESPONSE_FILE = "response.raw"
CURL_FILE = "curl.sh"
META_FILE = "capture.json"
MASK = "***"


def needs_capture(row: ResultRow) -> bool:
    return bool(row.checks_failed or row.error or row.http_status not in (200, None))


def capture_name(row: ResultRow) -> str:
    """Unique within a run: server, scenario, mode and turn (plus repeat, session, warm-up)."""
    parts = [row.server, row.scenario, row.variant or "default", f"t{row.turn:02d}"]
    if row.repeat:
        parts.append(f"r{row.repeat}")
    if row.session:
        parts.append(f"s{row.session}")
    if row.request_kind == "warmup":
        parts.append("warmup")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", ".".join(parts))


def mask(data: bytes, secret: str | None) -> bytes:
    """``data`` with ``secret`` masked, as written raw and as written inside a JSON string."""
    if not secret:
        return data
    for form in {secret, json.dumps(secret)[1:-1]}:
        data = data.replace(form.encode("utf-8"), MASK.encode("utf-8"))
    return data


def curl_line(url: str, folder: str, stream: bool, with_key: bool) -> str:
    """One line replaying the capture in ``folder`` (relative to the run folder)."""
    base, _, path = url.partition("/v1/")
    parts = ["curl -sS"] + (["-N"] if stream else [])
    parts.append(f'"${{HARNESS_BASE_URL:-{base}}}/v1/{path}"')
    parts.append("-H 'Content-Type: application/json'")
    if with_key:
        parts.append('-H "Authorization: Bearer $HARNESS_API_KEY"')
    parts.append(f"--data-binary @{folder}/{REQUEST_FILE}")
    return " ".join(parts)


def write_capture(run_dir: Path, row: ResultRow, captured: CapturedResponse, url: str, secret: str | None) -> str:
    """Writes the capture of ``row``'s exchange; returns its folder relative to ``run_dir``."""
    folder = f"{CAPTURES_DIR}/{capture_name(row)}"
    path = Path(run_dir) / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / REQUEST_FILE).write_bytes(mask(captured.request_body, secret))
    (path / RESPONSE_FILE).write_bytes(mask(captured.body or b"", secret))
    curl = curl_line(url, folder, row.stream, with_key=bool(secret))
    (path / CURL_FILE).write_text(
        f"# Replays {row.server} {row.scenario} [{row.variant}] turn {row.turn}; run from the run folder.\n{curl}\n",
        encoding="utf-8",
    )
    meta = {
        "server": row.server,
        "scenario": row.scenario,
        "variant": row.variant,
        "turn": row.turn,
        "turn_name": row.turn_name,
        "stream": row.stream,
        "url": url,
        "http_status": row.http_status,
        "error": row.error,
        "stop_cause": row.stop_cause,
        "checks_failed": row.checks_failed,
        "check_evidence": row.check_evidence,
        "check_notes": row.check_notes,
        "request_bytes": len(captured.request_body),
        "response_bytes": len(captured.body or b""),
        "curl": curl,
    }
    (path / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def write_answer(run_dir: Path, row: ResultRow, captured: CapturedResponse, secret: str | None) -> str:
    """Where the raw bytes of ``row``'s answer are kept, relative to ``run_dir``: its capture's
    response.raw when it has one, else its slice of answers.raw, appended here."""
    if row.capture:
        return f"{row.capture}/{RESPONSE_FILE}"
    data = mask(captured.body or b"", secret)
    with _ANSWERS_LOCK, (Path(run_dir) / ANSWERS_FILE).open("ab") as handle:
        offset = handle.tell()
        handle.write(data)
    return f"{ANSWERS_FILE}#{offset}+{len(data)}"


def _answer_place(run_dir: Path, ref: str) -> tuple[Path, int | None, int | None]:
    name, _, span = ref.partition("#")
    if not span:
        return Path(run_dir) / name, None, None
    offset, _, length = span.partition("+")
    return Path(run_dir) / name, int(offset), int(length)


def read_answer(run_dir: Path, ref: str) -> bytes:
    """The bytes a row's ``answer`` names (a file, or a slice of answers.raw). Raises OSError."""
    path, offset, length = _answer_place(run_dir, ref)
    if offset is None or length is None:
        return path.read_bytes()
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def mask_written(run_dir: Path, row: ResultRow, secrets: list[str]) -> None:
    """Masks ``secrets`` in the files written for ``row`` (its answer and its capture): for secrets
    only the caller knows, such as the keys the recording proxy saw. In answers.raw a secret is
    overwritten by as many stars, so that every slice keeps its place."""
    if row.answer and "#" in row.answer:
        path, offset, length = _answer_place(run_dir, row.answer)
        data = read_answer(run_dir, row.answer)
        masked = data
        for secret in secrets:
            for form in {secret, json.dumps(secret)[1:-1]}:
                masked = masked.replace(form.encode("utf-8"), b"*" * len(form.encode("utf-8")))
        if masked != data and offset is not None and length is not None:
            with _ANSWERS_LOCK, path.open("r+b") as handle:
                handle.seek(offset)
                handle.write(masked)
    paths = [Path(run_dir) / row.answer] if row.answer and "#" not in row.answer else []
    if row.capture:
        paths += [path for path in (Path(run_dir) / row.capture).iterdir() if path.is_file()]
    for path in dict.fromkeys(paths):
        data = path.read_bytes()
        masked = data
        for secret in secrets:
            masked = mask(masked, secret)
        if masked != data:
            path.write_bytes(masked)


@dataclass(frozen=True)
class Capture:
    request: bytes
    response: bytes
    curl: str


def read_capture(run_dir: Path, folder: str) -> Capture | None:
    """The request and response bytes and the curl line of a capture, or None if it is missing."""
    path = Path(run_dir) / folder
    try:
        curl = (path / CURL_FILE).read_text(encoding="utf-8").strip().splitlines()[-1]
        return Capture((path / REQUEST_FILE).read_bytes(), (path / RESPONSE_FILE).read_bytes(), curl)
    except (OSError, IndexError):
        return None
