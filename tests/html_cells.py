"""The text of the HTML cells an st.html block holds, by a data attribute (the per-image grid's cells)."""

from __future__ import annotations

from html.parser import HTMLParser


class _Cells(HTMLParser):
    def __init__(self, attribute: str) -> None:
        super().__init__()
        self.attribute, self.cells, self._depth, self._name = attribute, {}, 0, None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if self._name is not None:
            if tag == "div":
                self._depth += 1
                self._text.append("\n")
            elif tag == "br":
                self._text.append("\n")
            return
        found = dict(attrs).get(self.attribute)
        if tag == "div" and found is not None:
            self._name, self._depth, self._text = found, 1, []

    def handle_endtag(self, tag):
        if self._name is not None and tag == "div":
            self._depth -= 1
            if self._depth == 0:
                self.cells.setdefault(self._name, []).append("".join(self._text).strip())
                self._name = None

    def handle_data(self, data):
        if self._name is not None:
            self._text.append(data)


def cells(body: str, attribute: str) -> dict[str, list[str]]:
    """{attribute value: [each such cell's text, lines split at <br> and inner divs]} in document order."""
    parser = _Cells(attribute)
    parser.feed(body)
    return parser.cells


def grid(at) -> str:
    """The per-image grid's HTML on an AppTest's Compare page."""
    return next(h.value for h in at.get("html") if "data-qw-grid" in h.value)
