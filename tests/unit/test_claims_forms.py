"""Claims in any form: the archive README's table, the same claims as bullet points, and a table
worded differently give the same verdict per claim; sentences are read too; a wording that could
mean two metrics is "not comparable", never a figure of another metric; ratios are like-for-like."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.analysis.summary import summarize
from harness.cli import main as cli
from harness.core.rows import ResultRow
from harness.verdicts.claim_text import classify, parse_claims
from harness.verdicts.claims import CONFIRMED, NOT_COMPARABLE, NOT_MEASURED, REFUTED, read_claims, verify_claims

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ARCHIVE, BULLETS, REWORDED, SENTENCES = (
    FIXTURES / name for name in ("archive-readme.md", "claims-bullets.md", "claims-reworded.md", "claims-sentences.md")
)
META = {"run_id": "r1", "status": "complete", "model": {"name": "tiny"}}
# server -> (first request s, follow-up s, caches?, completion tokens)
PROFILE = {
    "legacy": (10.0, 10.0, False, 256),
    "legacy-capped": (9.0, 4.0, False, 32),
    "mlx-textgen": (4.0, 0.1, True, 32),
}


def make_rows(profile: dict = PROFILE) -> list[ResultRow]:
    rows, t = [], 0.0
    for server, (first, follow, caches, tokens) in profile.items():
        for repeat in range(2):
            for turn in range(4):
                t += 1
                new = 3_000_000 if caches and turn == 0 else 0
                rows.append(
                    ResultRow(
                        run_id="r1",
                        server=server,
                        scenario="agent-session",
                        variant="stream",
                        repeat=repeat,
                        turn=turn,
                        request_kind="first" if turn == 0 else "follow-up",
                        stream=True,
                        started_at=t,
                        total_s=(first if turn == 0 else follow) * (1 + 0.01 * turn + 0.001 * repeat),
                        ttft_s=(first if turn == 0 else follow) * 0.5,
                        completion_tokens=tokens,
                        cache_reused=(turn > 0) if caches else False,
                        cache_files_new=1 if new else 0,
                        cache_bytes_new=new,
                        cache_files=[f"kv-{repeat}.safetensors"] if new else [],
                    )
                )
    return rows


@pytest.fixture(scope="module")
def summary():
    return summarize(make_rows(), like_for_like="legacy-capped")


def verdicts(path: Path, summary) -> list[str]:
    return [v.verdict for v in verify_claims(read_claims(path), summary, META).verdicts]


def test_the_same_claims_in_three_forms_get_the_same_verdicts(summary):
    archive = verdicts(ARCHIVE, summary)
    # First request 9 s -> 4 s like-for-like (2.2x, not 15x / 2); follow-ups 4 s -> 0.1 s (40x,
    # under 90x / 2 = 45x, though 100x as deployed); the cache claims hold; code size is not measured.
    assert archive == [REFUTED, REFUTED, CONFIRMED, CONFIRMED, NOT_MEASURED]
    assert verdicts(BULLETS, summary) == archive
    assert verdicts(REWORDED, summary) == archive


def test_the_forms_agree_on_another_run_too():
    # Without a like-for-like server, follow-ups are 100x as deployed: the 90x claim is confirmed.
    two = summarize([r for r in make_rows() if r.server != "legacy-capped"])
    archive = verdicts(ARCHIVE, two)
    assert archive == [REFUTED, CONFIRMED, CONFIRMED, CONFIRMED, NOT_MEASURED]
    assert verdicts(BULLETS, two) == archive == verdicts(REWORDED, two)


def test_ratios_are_like_for_like_with_the_one_as_deployed_shown(summary):
    report = verify_claims(read_claims(BULLETS), summary, META)
    follow = report.verdicts[1]
    assert follow.measured.startswith("40x like-for-like (legacy-capped 4.08 s -> mlx-textgen 0.102 s")
    assert "; as deployed 100x (legacy 10.2 s -> mlx-textgen 0.102 s" in follow.measured
    assert "against legacy-capped (like-for-like" in follow.reason
    assert "claimed 90x (from the claim's text)" in follow.reason
    assert report.server == "mlx-textgen"  # the like-for-like server is a measuring aid, never "the new server"


def test_sentences_and_skipped_lines(summary, capsys, tmp_path):
    report = verify_claims(read_claims(SENTENCES), summary, META)
    by_line = {(v.line, v.metric): v for v in report.verdicts}
    texts = [(v.line, v.verdict) for v in report.verdicts]
    assert texts == [(3, REFUTED), (3, REFUTED), (4, NOT_COMPARABLE), (5, NOT_COMPARABLE), (6, CONFIRMED)]
    first = next(v for v in report.verdicts if v.line == 3 and "first request" in v.metric)
    assert "the two times given" in first.reason
    absolute = by_line[(4, "Follow-up requests")]
    assert "absolute figure" in absolute.reason and "mlx-textgen" in absolute.measured
    vague = next(v for v in report.verdicts if v.line == 5)
    assert vague.measured == "–" and "does not say which requests" in vague.reason
    ttft = next(v for v in report.verdicts if v.line == 6)  # follow-up ttft: 2 s -> 0.05 s like-for-like
    assert ttft.verdict == CONFIRMED and ttft.measured.startswith("40x like-for-like (legacy-capped 2 s")
    assert [(s.line, s.why.split(":")[0]) for s in report.skipped] == [
        (8, "a figure with no comparison in it"),
        (11, "inside a code block"),
    ]


def test_the_command_lists_claims_and_skipped_lines(tmp_path, capsys):
    import run_folder

    run_dir = run_folder.write_run(tmp_path / "run", make_rows(), dict(META, like_for_like_server="legacy-capped"))
    assert cli.main(["claims", str(SENTENCES), "--run", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "5 read (5 from sentences), 2 claim-like line(s) skipped" in out
    assert "| 5 | The new server is 15x faster. |" in out and "Skipped (claim-like, but no claim to check):" in out
    assert '- line 8: "Set-up took 2 minutes on a fresh machine." — a figure with no comparison' in out
    assert cli.main(["claims", str(BULLETS), "--run", str(run_dir), "--strict"]) == 1


@pytest.mark.parametrize(
    ("wording", "timed", "kind"),
    [
        ("First request", True, "speedup_first"),
        ("Initial request (cold cache)", True, "speedup_first"),
        ("Follow-up requests", True, "speedup_follow_up"),
        ("Subsequent turns of a session", True, "speedup_follow_up"),
        ("Time to first token on follow-ups", True, "speedup_follow_up_ttft"),
        ("TTFT, first request", True, "speedup_first_ttft"),
        ("First request after a restart", True, "uncertain"),  # both the first request and a restart
        ("Decode speed", False, "speedup_decode"),
        ("Prompt processing", False, "speedup_prompt"),
        ("KV Cache", False, "cache_reuse"),
        ("Cache files", False, "cache_files"),
        ("On-disk cache", False, "cache_files"),
        ("Responses", True, "uncertain"),
        ("Time to first token", True, "uncertain"),
        ("First and follow-up requests", True, "uncertain"),
        ("Follow-ups, time to first token and total time", True, "uncertain"),
        ("Code complexity", False, None),
    ],
)
def test_the_metric_is_read_from_the_whole_wording(wording, timed, kind):
    assert classify(wording, has_time_figure=timed).kind == kind


def test_a_first_token_is_not_a_first_request():
    claims = parse_claims("- Time to first token on follow-ups: 5 s -> 0.5 s\n").claims
    assert classify(claims[0].subject, True).kind == "speedup_follow_up_ttft"


def test_wrapped_lines_are_one_sentence_and_comments_are_not_text():
    text = (
        "<!-- harness:comparison:start -->\n"
        "Our measurements show that the follow-up requests\n"
        "became 90x faster. The first request went from\n"
        "~50 s to ~3 s.\n"
        "\n"
        "- KV cache: broken before,\n"
        "  working now with MLX-Textgen -> ✅ working\n"
        "\n"
        "Each request is replayed streamed and not, one after the other, and the report says whether the server "
        "reused its prompt cache.\n"
    )
    found = parse_claims(text)
    subjects = [(c.line, c.form, classify(c.subject, True).kind) for c in found.claims]
    assert subjects[:2] == [(2, "sentence", "speedup_follow_up"), (3, "sentence", "speedup_first")]
    assert found.claims[1].old.endswith("~50 s") and found.claims[1].new == "~3 s."
    assert (found.claims[2].line, found.claims[2].form) == (6, "bullet")
    # Prose that mentions a cache says nothing of the cache's working: read near its name only.
    last = found.claims[-1]
    assert last.line == 9 and last.new.endswith("reused its prompt cache.") and "not" not in last.new
