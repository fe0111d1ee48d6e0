"""Every relative link in README.md and docs/*.md points at a file that exists and, where it
names an anchor (`page.md#section`), at a heading of that page (GitHub's anchors)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"^(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str, keep_code: bool = False):
    """(line number, line) outside fenced code blocks, inline code removed unless kept."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line if keep_code else _INLINE_CODE.sub("", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation other than
    '-' and '_' removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)      # links: their text
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose_lines(path.read_text(encoding="utf-8"), keep_code=True):
        m = _HEADING.match(line)
        if not m:
            continue
        s = slug(m.group(2))
        k = seen.get(s, 0)
        seen[s] = k + 1
        found.add(s if k == 0 else f"{s}-{k}")
    return found


def broken_links(files: list[Path], root: Path) -> list[str]:
    """'file:line: target (why)' for each relative link that does not resolve."""
    bad = []
    for f in files:
        for n, line in _prose_lines(f.read_text(encoding="utf-8")):
            for target in _LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):     # http:, https:, mailto:
                    continue
                where = f"{f.relative_to(root)}:{n}: {target}"
                path_part, _, anchor = target.partition("#")
                dest = (f.parent / path_part).resolve() if path_part else f
                if not dest.exists():
                    bad.append(f"{where} (no such file)")
                    continue
                try:
                    dest.relative_to(root)
                except ValueError:
                    bad.append(f"{where} (outside the repository)")
                    continue
                if anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
                    bad.append(f"{where} (no heading with this anchor)")
    return bad


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def test_readme_and_docs_links_resolve():
    assert broken_links(doc_files(), ROOT) == []


def test_the_check_finds_a_missing_file_a_missing_anchor_and_ignores_code(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## The `slowfast` command\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/page.md#the-slowfast-command) [ok](docs/page.md) [web](https://example.org/x)\n"
        "[gone](docs/missing.md) [bad anchor](docs/page.md#no-such-section) [self](#nowhere)\n"
        "`[code](not/checked.md)`\n```\n[fenced](not/checked.md)\n```\n")
    bad = broken_links(doc_files(tmp_path), tmp_path)
    assert bad == ["README.md:2: docs/missing.md (no such file)",
                   "README.md:2: docs/page.md#no-such-section (no heading with this anchor)",
                   "README.md:2: #nowhere (no heading with this anchor)"]


def test_slug_follows_github():
    assert slug("The `slowfast` command") == "the-slowfast-command"
    assert slug("Navigation (StreamVLN)") == "navigation-streamvln"
    assert slug("The headset's scene") == "the-headsets-scene"
    assert slug("From a bare ROS 2 machine to the policy running") == \
        "from-a-bare-ros-2-machine-to-the-policy-running"
