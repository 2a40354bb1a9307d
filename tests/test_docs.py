"""The README stays a short first page, and the docs it links to stay whole: links resolve, settings are documented."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 150
MAX_IMAGE_BYTES = 400 * 1024
_FENCED = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
_ENV_NAME = re.compile(r"\b(?:QW|QUANT)_[A-Z0-9_]*[A-Z0-9]\b")


def _prose(path: Path) -> str:
    """A Markdown file without its code blocks and inline code (where brackets are not links)."""
    return _INLINE_CODE.sub("", _FENCED.sub("", path.read_text()))


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (lowercase, punctuation dropped, spaces to hyphens)."""
    anchors: set[str] = set()
    for line in _FENCED.sub("", path.read_text()).splitlines():
        if not line.startswith("#"):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def _relative_links(path: Path) -> list[str]:
    return [t for t in _LINK.findall(_prose(path)) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def _broken(path: Path, target: str) -> str | None:
    """Why a relative link from `path` leads nowhere, or None when its file (and heading) exist."""
    file_part, _, anchor = target.partition("#")
    dest = (path.parent / file_part).resolve() if file_part else path
    if not dest.exists():
        return f"{target}: no such file"
    if anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
        return f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}"
    return None


def test_the_readme_is_a_short_first_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    assert "make run" in README.read_text() and "make test" in README.read_text()


def test_the_readme_links_every_page_of_the_docs():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in _relative_links(README)}
    assert len(DOCS) >= 6
    assert [d.name for d in DOCS if d.resolve() not in linked] == []


def test_every_relative_link_leads_to_a_file_and_heading_that_exist():
    links = [(page, target) for page in PAGES for target in _relative_links(page)]
    assert len(links) > 20  # the pages do link to each other: the parsing found them
    broken = [f"{page.relative_to(REPO)}: {why}" for page, target in links
              if (why := _broken(page, target)) is not None]
    assert broken == []


def test_images_in_the_docs_are_small():
    images = {(page.parent / t).resolve() for page in PAGES for t in _relative_links(page)
              if t.lower().endswith((".png", ".jpg", ".jpeg", ".gif", ".webp"))}
    assert images, "the README shows a screenshot"
    assert {str(p.relative_to(REPO)): p.stat().st_size for p in images if p.stat().st_size > MAX_IMAGE_BYTES} == {}


def _environment_names() -> set[str]:
    """Every QW_/QUANT_ name in the product's code: the environment variables it reads."""
    files = [*(REPO / "quant_core").rglob("*.py"), *(REPO / "ui").rglob("*.py"), *(REPO / "pages").rglob("*.py"),
             REPO / "streamlit_app.py"]
    return {name for path in files for name in _ENV_NAME.findall(path.read_text())}


def test_every_environment_variable_the_code_reads_is_documented():
    names = _environment_names()
    assert len(names) >= 20  # the scan found the settings
    docs = "\n".join(path.read_text() for path in DOCS)
    assert sorted(name for name in names if not re.search(rf"\b{name}\b", docs)) == []
