"""Text that crosses the model boundary, made safe: keys out of error text and replies,
credentials out of base URLs, and replies that can always be written as UTF-8.

- ``redact`` replaces a known key, and any piece of it of ``MIN_PREFIX`` characters or
  more (what is left when a server echoes a key and something cuts the text, or shows
  only its tail), in any case and URL-encoded, before anything else touches the text; cut
  text only after it (``cut``).
- ``check_base_url`` refuses a base URL with ``user:password@`` in it: the SDK would
  silently send Basic auth instead of the key, aiohttp refuses it, and the password would
  end up in caches, errors and logs. The message shows the URL with the password masked.
- ``clean_text`` replaces lone UTF-16 surrogates, raw or as JSON ``\\uXXXX`` escapes, by
  U+FFFD, so a reply holding one can be cached, parsed and written to a transcript.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from stagbench.errors import ModelError

REDACTED = "[REDACTED]"
#: a piece of a key this long is as good as a leak of it (the conformance suite's bar)
MIN_PREFIX = 8
#: a whole key shorter than this is not redacted (it would mangle ordinary words)
MIN_KEY = 6


_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
#: ASCII upper case to lower case, one character for one (``str.lower`` may change the length
#: of non-ASCII text, which would move every position after it)
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _lower(text: str) -> str:
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


#: a piece of ``MIN_PREFIX`` characters always holds one of the key's 4-character stretches
#: that start at a multiple of 4: text without any of those holds no piece, which a few
#: substring searches show
_GRAM = 4


@functools.lru_cache(maxsize=64)
def _probes(secret: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """For each 4-character stretch of ``secret`` that starts at a multiple of 4, the
    ``MIN_PREFIX``-character stretches of ``secret`` that hold it; all lower-cased."""
    low = _lower(secret)
    last = len(low) - MIN_PREFIX  # the start of the last window
    probes = []
    for g in range(0, last + _GRAM + 1, _GRAM):
        windows = (low[i : i + MIN_PREFIX] for i in range(max(0, g - _GRAM), min(last, g) + 1))
        probes.append((low[g : g + _GRAM], tuple(dict.fromkeys(windows))))
    return tuple(probes)


def _hits(view: str, secrets: list[str]) -> list[str]:
    """The ``MIN_PREFIX``-character stretches of ``secrets`` found in ``view``."""
    found: dict[str, None] = {}
    for s in secrets:
        for gram, windows in _probes(s):
            if gram in view:
                found.update((w, None) for w in windows if w in view)
    return list(found)


def _decoded(text: str) -> tuple[str, list[int]]:
    """``text`` with every ``%XX`` escape decoded, and where each of its characters starts in
    ``text`` (one more entry at the end: ``len(text)``)."""
    chars: list[str] = []
    starts: list[int] = []
    last = 0
    for m in _PERCENT.finditer(text):
        chars.append(text[last : m.start()])
        starts.extend(range(last, m.start()))
        chars.append(chr(int(m.group(1), 16)))
        starts.append(m.start())
        last = m.end()
    chars.append(text[last:])
    starts.extend(range(last, len(text) + 1))
    return "".join(chars), starts


def _marks(view: str, windows: Iterable[str], spans: list[tuple[int, int]]) -> None:
    """Add to ``spans`` every place in ``view`` that one of ``windows`` occupies."""
    for w in windows:
        at = view.find(w)
        while at >= 0:
            spans.append((at, at + MIN_PREFIX))
            at = view.find(w, at + 1)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every key in ``secrets``, and every piece of one, replaced by
    ``[REDACTED]``.

    A piece is any stretch of text in which each character lies in some ``MIN_PREFIX``
    (8) characters that are also 8 consecutive characters of a key: a prefix, a tail, the
    middle, several pieces side by side. Case is ignored, and so is URL encoding
    (``%2D`` for ``-``, ``quote``/``quote_plus`` of the key). Each maximal such stretch
    becomes one ``[REDACTED]``. A key of ``MIN_KEY`` to ``MIN_PREFIX`` characters is replaced
    only whole (a shorter piece of it would match ordinary words); a shorter key not at all.
    """
    long: list[str] = []
    for s in secrets:
        if not s or len(s) < MIN_KEY:
            continue
        if len(s) > MIN_PREFIX:
            long.append(s)
            continue
        for form in dict.fromkeys((s, quote(s, safe=""), quote_plus(s, safe=""))):
            text = text.replace(form, REDACTED)
    if not long:
        return text
    low = _lower(text)
    # The common case, no piece of a key, costs a C-level substring search per 4 characters
    # of each key.
    spans: list[tuple[int, int]] = []
    _marks(low, _hits(low, long), spans)
    if "%" in text and _PERCENT.search(text) is not None:
        view, starts = _decoded(low)
        view = _lower(view)  # an escape may stand for an upper-case letter
        found: list[tuple[int, int]] = []
        _marks(view, _hits(view, long), found)
        spans.extend((starts[a], starts[b]) for a, b in found)
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    last = 0
    start, end = spans[0]
    for a, b in spans[1:]:
        if a <= end:  # overlapping or side by side: one stretch
            end = max(end, b)
            continue
        out += (text[last:start], REDACTED)
        last = end
        start, end = a, b
    out += (text[last:start], REDACTED, text[end:])
    return "".join(out)


def cut(text: str, limit: int = 300) -> str:
    """At most ``limit`` characters; redact first."""
    return text if len(text) <= limit else text[:limit] + "..."


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + host))


def has_credentials(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "@" in url
    return parts.username is not None or parts.password is not None


def check_base_url(url: str | None, what: str, key_hint: str = "an API key variable") -> None:
    """Refuse a base URL with credentials in it, without ever repeating the password."""
    if url is None or not has_credentials(url):
        return
    raise ModelError(
        f"{what}: the base URL {masked_url(url)} holds credentials (user:password@); "
        f"stagbench does not send them. Put the key in {key_hint} and give the URL without them"
    )


_SURROGATE = re.compile("[\ud800-\udfff]")
#: every backslash escape of JSON text, so an escaped backslash is never read as the start
#: of a ``\\u`` escape; group 1 is the four hex digits of a ``\\u`` escape
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.S)
_MAYBE = re.compile(r"\\u[dD][89a-fA-F]")


def _is_high(hexdigits: str) -> bool:
    return 0xD800 <= int(hexdigits, 16) <= 0xDBFF


def _is_low(hexdigits: str) -> bool:
    return 0xDC00 <= int(hexdigits, 16) <= 0xDFFF


def _clean_escapes(text: str) -> str:
    out: list[str] = []
    last = 0
    matches = list(_ESCAPE.finditer(text))
    paired: set[int] = set()
    for i, m in enumerate(matches):
        h = m.group(1)
        if h is None or i in paired or not (_is_high(h) or _is_low(h)):
            continue
        if _is_high(h) and i + 1 < len(matches):
            nxt = matches[i + 1]
            n = nxt.group(1)
            if nxt.start() == m.end() and n is not None and _is_low(n):
                paired.add(i + 1)
                continue
        out.append(text[last : m.start()])
        out.append("\\ufffd")
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def clean_text(text: str) -> str:
    """``text`` without lone surrogates (raw characters or JSON escapes): each becomes
    U+FFFD (``\\ufffd`` inside escapes). Valid surrogate pairs are kept."""
    if text.isascii() and "\\u" not in text:  # the common case, at C speed: nothing to do
        return text
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if _MAYBE.search(text):
        text = _clean_escapes(text)
    return text
