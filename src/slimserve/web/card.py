"""A model card (MODEL_CARD.md) rendered safely: everything escaped first, then a small Markdown subset.

Headings, paragraphs, bullet lists (items may continue on indented lines), pipe tables, **bold**, *italic*,
`code` and http(s) links. No raw HTML passes: a
card is written by whoever trained the model, but it is shown on our origin under our CSP.
"""

from __future__ import annotations

import functools
import re
from html import escape
from pathlib import Path

from markupsafe import Markup

CARD_NAME = "MODEL_CARD.md"
MAX_CARD_BYTES = 64 * 1024
_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![*\w])\*([^*]+)\*(?!\*)"), r"<em>\1</em>"),
    # Only absolute http(s) URLs: no javascript: or data: links. The text is already escaped, so the URL
    # cannot close the attribute (a quote is &quot; by now).
    (re.compile(r"\[([^\]]+)\]\((https?://[^\s)]+)\)"), r'<a href="\2" rel="noopener noreferrer">\1</a>'),
]


def _inline(text: str) -> str:
    html = escape(text, quote=True)
    for pattern, replacement in _INLINE:
        html = pattern.sub(replacement, html)
    return html


def render_markdown(text: str) -> Markup:
    """HTML for a Markdown subset; every character of the input is escaped before any tag is added."""
    out: list[str] = []
    paragraph: list[str] = []
    rows: list[list[str]] = []
    in_list = False

    def flush() -> None:
        nonlocal in_list
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if in_list:
            out.append("</ul>")
            in_list = False
        if rows:
            out.append(_table(rows))
            rows.clear()

    for line in text.splitlines():
        stripped = line.strip()
        heading = re.match(r"^(#{1,4})\s+(.*)$", stripped)
        item = re.match(r"^[-*]\s+(.*)$", stripped)
        if stripped.startswith("|") and stripped.endswith("|"):
            if not rows:
                flush()
            if not re.match(r"^\|[\s:|-]+\|$", stripped):  # the |---| separator carries nothing
                rows.append([cell.strip() for cell in stripped[1:-1].split("|")])
            continue
        if rows:
            flush()
        if in_list and line[:1].isspace() and stripped and not item:  # an item continued on the next line
            out[-1] = out[-1][:-len("</li>")] + " " + _inline(stripped) + "</li>"
            continue
        if not stripped:
            flush()
        elif heading:
            flush()
            level = len(heading.group(1)) + 2  # the page owns h1 and h2
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif item:
            if paragraph:
                out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
                paragraph.clear()
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(item.group(1))}</li>")
        else:
            if in_list:
                out.append("</ul>")
                in_list = False
            paragraph.append(stripped)
    flush()
    return Markup("\n".join(out))  # built from escaped text only (see _inline)


def _table(rows: list[list[str]]) -> str:
    """A Markdown pipe table: the first row is the header; cells are escaped like all text."""
    head = "".join(f"<th scope=\"col\">{_inline(cell)}</th>" for cell in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@functools.cache
def read_card(folder: Path) -> str | None:
    """The Markdown of the card beside a manifest, if there is one (at most 64 KB; read once per folder)."""
    path = folder / CARD_NAME
    if not path.is_file():
        return None
    return path.read_bytes()[:MAX_CARD_BYTES].decode("utf-8", errors="replace")


def load_card(folder: Path) -> Markup | None:
    """The rendered card beside a manifest, if there is one."""
    text = read_card(folder)
    return None if text is None else render_markdown(text)
