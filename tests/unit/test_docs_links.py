"""Every relative link of README.md and docs/*.md points at a file of the repository, and at an anchor
of it where one is given: a page moved or a heading reworded must take its links along.

Links are read with markdown-it (rich's own markdown parser), so text in code blocks and code spans is
not mistaken for a link. Anchors are GitHub's: a heading's slug, or an explicit `<a id="...">`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
EXPLICIT_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")


def _tokens(path: Path) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(path.read_text(encoding="utf-8"))


def _walk(tokens: list[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        yield from _walk(token.children or [])


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    tokens, found, seen = _tokens(path), set(), dict[str, int]()
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            text = "".join(child.content for child in _walk(tokens[i + 1].children or []) if child.type != "softbreak")
            slug = github_slug(text)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")  # GitHub numbers repeated headings
    for token in _walk(tokens):
        if token.type in ("html_inline", "html_block"):
            found.update(EXPLICIT_ANCHOR.findall(token.content))
    return found


def relative_links(path: Path) -> list[str]:
    links = [t.attrs.get("href") for t in _walk(_tokens(path)) if t.type == "link_open"]
    return [str(link) for link in links if link and not urlsplit(str(link)).scheme]


def test_the_pages_are_found():
    names = {page.relative_to(REPO_ROOT).as_posix() for page in PAGES}
    assert {"README.md", "docs/checks.md", "docs/usage.md"} <= names
    assert relative_links(REPO_ROOT / "README.md"), "the README links to its docs pages"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO_ROOT).as_posix())
def test_relative_links_resolve(page: Path):
    broken = []
    for link in relative_links(page):
        parts = urlsplit(link)
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        shown = target.relative_to(REPO_ROOT) if target.is_relative_to(REPO_ROOT) else target
        if not target.exists():
            broken.append(f"{link}: no file {shown}")
        elif parts.fragment and target.suffix == ".md" and unquote(parts.fragment) not in anchors(target):
            broken.append(f"{link}: no heading or <a id> '{parts.fragment}' in {shown}")
    assert not broken, f"{page.relative_to(REPO_ROOT)} has broken links (fix the link or the heading):\n" + "\n".join(
        broken
    )


def test_slugs_and_anchors_as_github_makes_them(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Long sessions, eviction and a damaged cache\n\n## Measuring options of `harness run`\n\n"
        '## Notes\n\n## Notes\n\n<a id="stream.empty"></a>\n\n    [not a link](#in-code)\n',
        encoding="utf-8",
    )
    assert anchors(page) == {
        "long-sessions-eviction-and-a-damaged-cache",
        "measuring-options-of-harness-run",
        "notes",
        "notes-1",
        "stream.empty",
    }
    assert relative_links(page) == []
