"""Whose claim it is: every claim is attributed to the old server, the new one or both (a
before/after) before it is checked, and says what the attribution rests on.

The rules, most specific first (docs/claims.md):

1. a table row: by its columns (``claims.map_columns``), so each cell is its column's server's;
2. a before/after in the claim ("50 s -> 3 s", "from X to Y") or a factor ("90x faster"): both, the
   old server on the left, or for a factor the new server against the old. A factor said of the old
   server alone ("the old server was 15x slower") is turned round;
3. a comparison's direction: "X instead of Y", "X rather than Y", "X replaces Y", "replaced Y with
   X": X is the new server's; "X vs Y", "X compared to Y": whichever side names a server, else the server of the
   section it sits in is X;
4. a label in front of it ("Old: ...", "MLX-Textgen: ...");
5. the sentence: a server's name or label, a name the document's table gives a column, or words
   such as "the old server", "legacy", "our implementation", "the custom server", "the new setup";
   words for both ("still", "as before", "both servers") make it a claim about each;
6. the labels of the lists it is nested under, nearest first ("Old:", "Before", "- New setup");
7. the headings above it, nearest first ("## Old", "### Removed", "## Why MLX-Textgen").

"Before" / "After", "Added" / "Removed" name a side only as a whole label or heading: in a sentence
they are too common ("after a restart") to tell anything.

A text naming both servers with no direction between them tells nothing. When no rule tells, the
claim is about no server: its verdict is "not comparable: cannot tell which server", never a verdict
on a guessed one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.verdicts.claim_text import Claim, plain

OLD, NEW, BOTH = "old", "new", "both"

_OLD_WORDS = re.compile(
    r"\b(?:old|older|legacy|previous(?:ly)?|before|original|former(?:ly)?|custom (?:inference )?server|"
    r"our (?:own )?(?:implementation|server|code|script)|home[- ]?grown|in[- ]house|replaced|removed|"
    r"deprecated|used to|until now|old setup)\b",
    re.I,
)
_NEW_WORDS = re.compile(r"\b(?:new|newer|replacement|switched to|migrated to|moved to|new setup)\b", re.I)
# Words that name a side only as a whole label or heading ("Before", "### Added"), not in a sentence.
_OLD_LABELS = re.compile(r"^\W*(?:before|removed|deprecated)\b", re.I)
_NEW_LABELS = re.compile(r"^\W*(?:after|now|added|today)\b", re.I)
_BOTH_WORDS = re.compile(r"\b(?:still|as before|both servers|either server|like before|unchanged)\b", re.I)
# "than the old server": the old server is what the claim compares with, not its subject.
_COMPARAND = re.compile(r"\bthan\s+(?:the\s+|our\s+)?$", re.I)
# Connectors whose left side is the new server's.
_NEW_FIRST = {"instead of", "rather than", "in place of", "replacing", "replaces", "replaced y with x"}


@dataclass
class Attribution:
    """``side``: OLD, NEW, BOTH or None (cannot tell); ``basis``: what it rests on; ``old`` and
    ``new``: what the claim says of each server (the whole claim for a one-sided one)."""

    side: str | None
    basis: str
    old: str = ""
    new: str = ""
    turned: bool = False  # a factor said of the old server, turned round to the new one's


class Names:
    """The names that stand for the old or the new server: the run's server names and labels, the
    document's own column headers, and the generic words above."""

    def __init__(self, old: list[str], new: list[str]) -> None:
        self.names = [(n, OLD) for n in old if n] + [(n, NEW) for n in new if n]

    def mentions(self, text: str) -> list[tuple[int, str, str]]:
        """(position, side, words) of every mention of a server in ``text``."""
        found: list[tuple[int, str, str]] = []
        taken: list[tuple[int, int]] = []
        for name, side in sorted(self.names, key=lambda n: -len(n[0])):
            for match in re.finditer(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.I):
                if not any(a < match.end() and match.start() < b for a, b in taken):
                    found.append((match.start(), side, match.group(0)))
                    taken.append(match.span())
        for pattern, side in ((_OLD_WORDS, OLD), (_NEW_WORDS, NEW)):
            for match in pattern.finditer(text):
                if not any(a < match.end() and match.start() < b for a, b in taken):
                    found.append((match.start(), side, match.group(0)))
        return sorted(found)

    def side_of(self, text: str, label: bool = False) -> tuple[str | None, str]:
        """The one side ``text`` names (and the words), BOTH for words naming both, or None;
        ``label``: ``text`` is a label or heading, where "Before" / "Added" name a side too."""
        clean = plain(text)
        if label:
            for pattern, side in ((_OLD_LABELS, OLD), (_NEW_LABELS, NEW)):
                match = pattern.search(clean)
                if match and self.side_of(clean)[0] in (None, side):
                    return side, match.group(0).strip(" *_:")
        both = _BOTH_WORDS.search(clean)
        if both:
            return BOTH, both.group(0)
        mentions = [(at, side, words) for at, side, words in self.mentions(clean) if not _COMPARAND.search(clean[:at])]
        sides = {side for _at, side, _words in mentions}
        if len(sides) == 1:
            return sides.pop(), mentions[0][2]
        return None, ""

    def is_label(self, words: str) -> bool:
        """Whether the words before a colon ("Old", "**New setup**", "MLX-Textgen") only name a side."""
        clean = plain(words)
        side, found = self.side_of(clean, label=True)
        return side in (OLD, NEW) and len(clean.split()) <= 4 and len(found) >= len(clean) / 3


def _sections(claim: Claim) -> list[tuple[str, str]]:
    """(where, text) of the list labels and headings a claim sits under, nearest first."""
    places = [("the list it is under", label) for label in reversed(claim.context.labels)]
    return places + [("the heading", heading) for heading in reversed(claim.context.headings)]


def _section_side(claim: Claim, names: Names) -> tuple[str | None, str]:
    for where, text in _sections(claim):
        side, _words = names.side_of(text, label=True)
        if side is not None:
            return side, f"{where} '{plain(text)[:60]}'"
    return None, ""


def attribute(claim: Claim, names: Names) -> Attribution:
    """Whose claim ``claim`` is (see the module docstring); table rows are attributed by column in
    ``claims.map_columns`` and get BOTH here."""
    text = plain(claim.text)
    if claim.form == "table":
        return Attribution(BOTH, "its table columns", claim.old, claim.new)
    if claim.old:
        return Attribution(BOTH, f"a before/after ('{claim.old[:40]}' -> '{claim.new[:40]}')", claim.old, claim.new)
    if claim.pair:
        return _direction(claim, names)
    if claim.label:
        side, _words = names.side_of(claim.label, label=True)
        return _one_side(claim, side or BOTH, f"its label '{claim.label}'")
    side, words = names.side_of(text)
    if claim.factor:
        if side == OLD:
            return Attribution(BOTH, f"a factor said of the old server ('{words}'), turned round", "", "", True)
        return Attribution(BOTH, "a factor: the new server against the old", "", "")
    if side is not None:
        return _one_side(claim, side, f"the sentence names '{words}'")
    if names.mentions(text):
        return Attribution(None, "the sentence names both servers with no direction between them")
    side, basis = _section_side(claim, names)
    if side is not None:
        return _one_side(claim, side, basis)
    return Attribution(None, "no column, label, heading or wording names a server")


def _one_side(claim: Claim, side: str, basis: str) -> Attribution:
    said = claim.new or plain(claim.text)
    return Attribution(side, basis, said if side in (OLD, BOTH) else "", said if side in (NEW, BOTH) else "")


def _direction(claim: Claim, names: Names) -> Attribution:
    assert claim.pair is not None
    left, right, connector = claim.pair
    if connector in _NEW_FIRST:
        shape = "replaced Y with X" if connector == "replaced y with x" else f"X {connector} Y"
        return Attribution(BOTH, f"the comparison's direction ('{shape}': X is the new server's)", right, left)
    left_side, _ = names.side_of(left)
    right_side, _ = names.side_of(right)
    if left_side in (OLD, NEW) and right_side != left_side:
        new_first = left_side == NEW
        basis = f"the comparison's sides ('{left[:40]}' names the {left_side} server)"
    elif right_side in (OLD, NEW):
        new_first = right_side == OLD
        basis = f"the comparison's sides ('{right[:40]}' names the {right_side} server)"
    else:
        lead = names.side_of(claim.label, label=True)[0] if claim.label else None
        section, where = (lead, f"its label '{claim.label}'") if lead else _section_side(claim, names)
        if section not in (OLD, NEW):
            return Attribution(None, f"'X {connector} Y' with neither side nor its section naming a server")
        new_first = section == NEW
        basis = f"'X {connector} Y' in a part about the {section} server ({where}): X is its"
    old, new = (right, left) if new_first else (left, right)
    return Attribution(BOTH, basis, old, new)
