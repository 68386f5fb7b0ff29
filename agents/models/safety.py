"""Text that crosses the model boundary, made safe: keys out of error text, credentials out of
base URLs, and replies that can always be written as UTF-8.

- ``redact`` replaces a known key, and any long prefix of it (what is left when a server
  echoes a key and something cuts the text), before anything else touches the text; cut
  text only after it (``cut``).
- ``check_base_url`` refuses a base URL with ``user:password@`` in it: the SDK would
  silently send Basic auth instead of the key, aiohttp refuses it, and the password would
  end up in caches, errors and logs. The message shows the URL with the password masked.
- ``clean_text`` replaces lone UTF-16 surrogates, raw or as JSON ``\\uXXXX`` escapes, by
  U+FFFD, so a reply holding one can be cached, parsed and written to a transcript.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

from stagbench.errors import ModelError

REDACTED = "[REDACTED]"
#: a prefix of a key this long is as good as a leak of it (the conformance suite's bar)
MIN_PREFIX = 8
#: a whole key shorter than this is not redacted (it would mangle ordinary words)
MIN_KEY = 6


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every key in ``secrets``, and every prefix of at least ``MIN_PREFIX``
    characters of one, replaced by ``[REDACTED]``."""
    for s in secrets:
        if not s or len(s) < MIN_KEY:
            continue
        text = text.replace(s, REDACTED)
        if len(s) <= MIN_PREFIX:
            continue
        head = s[:MIN_PREFIX]
        start = text.find(head)
        while start >= 0:
            end = start + MIN_PREFIX
            while end < len(text) and end - start < len(s) and text[end] == s[end - start]:
                end += 1
            text = text[:start] + REDACTED + text[end:]
            start = text.find(head, start + len(REDACTED))
    return text


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
