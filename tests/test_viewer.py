"""``stagbench view``: static pages rendered in a real headless Chromium. The DOM it builds
is checked, and screenshots are checked pixel by pixel for the graph (adversary and honest
nodes, edges used this round) and the messages. Skipped only when Chromium is absent."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.records import ModelCallEvent, read_transcript
from stagbench.viewer import build_view

from analysis_helpers import run_spec
from helpers import fifo_watch

SPEC = """
name = "viewed"
seed = 8
repetitions = 2
[game]
n_players = 5
rounds = 3
[agents]
max_reasks = 0
[factors]
models = [["mock/random", "mock/garbage"]]
topologies = ["ring", "empty"]
disclosures = ["explicit", "silent"]
adversaries = ["byzantine(count=1,placement=[0])"]
"""

ADVERSARY = (214, 39, 40)  # #d62728: adversary nodes
HONEST = (31, 119, 180)  # #1f77b4: honest nodes
USED = (255, 127, 14)  # #ff7f0e: edges used in the selected round
MESSAGE = (148, 103, 189)  # #9467bd: the bar beside each message


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        pytest.skip("Chromium is not installed")
    return found


def _browser(tmp: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--force-device-scale-factor=1", "--no-first-run", f"--user-data-dir={profile}",
           *args, url]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HOME": str(tmp)})  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def _dom(tmp: Path, page: Path, fragment: str = "") -> str:
    return _browser(tmp, page.as_uri() + fragment, "--dump-dom").stdout


def _shot(tmp: Path, page: Path, name: str, fragment: str = "") -> Image.Image:
    out = tmp / name
    _browser(tmp, page.as_uri() + fragment, "--window-size=1300,1000", f"--screenshot={out}")
    return Image.open(out).convert("RGB")


def _pixels(img: Image.Image, colour: tuple[int, int, int], box: tuple[int, ...] | None = None
            ) -> list[tuple[int, int]]:  # fmt: skip
    region = np.asarray(img.crop(box) if box else img)
    ox, oy = (box[0], box[1]) if box else (0, 0)
    ys, xs = np.nonzero((region == np.array(colour, dtype=region.dtype)).all(axis=2))
    return [(ox + int(x), oy + int(y)) for x, y in zip(xs, ys, strict=True)]


@pytest.fixture(scope="module")
def viewed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("viewer")
    run = run_spec(SPEC, tmp / "run", llm=True)
    # One reply cut at max_tokens, as a provider reports it: the viewer must show it.
    first = sorted((run / "transcripts").glob("*.jsonl"))[0]
    lines = first.read_text().splitlines()
    for i, line in enumerate(lines):
        if '"type":"model_call"' in line and '"purpose":"talk"' in line:
            lines[i] = line.replace('"finish_reason":"stop"', '"finish_reason":"length"')
            break
    first.write_text("\n".join(lines) + "\n")
    (run / "transcripts" / "broken.jsonl").write_text('{"type": "header"}\n')
    index = build_view(run)
    return run, index


def _embedded(page: Path) -> dict:  # type: ignore[type-arg]
    text = page.read_text()
    raw = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    assert raw is not None
    return json.loads(raw.group(1))


def _trial(run: Path, topology: str, disclosure: str = "explicit") -> Path:
    for path in sorted((run / "transcripts").glob("*.jsonl")):
        if path.name == "broken.jsonl":
            continue
        t = read_transcript(path)
        if t.header.trial.topology == topology and t.header.trial.disclosure.value == disclosure:
            return path
    raise AssertionError(topology)


def test_the_pages_are_static_files_with_their_data_inside(viewed: tuple[Path, Path]) -> None:
    run, index = viewed
    out = index.parent
    assert (out / "assets" / "viewer.js").is_file() and (out / "assets" / "viewer.css").is_file()
    pages = sorted((out / "trials").glob("*.html"))
    assert len(pages) == 8
    for page in [index, *pages]:
        text = page.read_text()
        assert "http://" not in text.replace("http://www.w3.org", "")
        assert "https://" not in text  # no CDN, no network
    data = _embedded(index)
    assert len(data["trials"]) == 8 and data["spec"] == "viewed"
    assert [u["file"] for u in data["unreadable"]] == ["broken.jsonl"]
    # A trial page holds every call's whole prompt (system prompt put back) and raw reply.
    path = _trial(run, "ring")
    t = read_transcript(path)
    page = _embedded(out / "trials" / f"{t.trial_id}.html")
    calls = [e for e in t.events if isinstance(e, ModelCallEvent)]
    shown = [c for r in page["rounds"] for c in r["calls"]]
    assert len(shown) == len(calls)
    for event, c in zip(calls, shown, strict=True):
        assert c["prompt"] == [m.model_dump() for m in t.full_messages(event)]
        assert c["prompt"][0]["role"] == "system" and c["raw"] == event.call.raw
    js = (out / "assets" / "viewer.js").read_text()
    assert "innerHTML" not in js  # cheap talk is shown as text, never as markup


def test_a_page_cannot_be_broken_out_of_by_a_message(viewed: tuple[Path, Path]) -> None:
    from stagbench.viewer.build import _embed

    evil = {"text": "</script><script>alert(1)</script> & <!--"}
    embedded = _embed(evil)
    assert "<" not in embedded and json.loads(embedded) == evil


def test_the_index_lists_and_filters_trials_in_chromium(
    viewed: tuple[Path, Path], tmp_path: Path
) -> None:
    run, index = viewed
    dom = _dom(tmp_path, index)
    assert 'data-rendered="yes"' in dom
    rows = re.findall(r'<tr data-id="(\w+)"( class="hidden")?', dom)
    assert len(rows) == 8 and not any(hidden for _, hidden in rows)
    assert "showing 8 of 8 trials" in dom
    for factor in ("topology", "disclosure"):
        assert f'<select name="{factor}"' in dom
    assert "broken.jsonl" in dom and "could not be read" in dom
    silent = _dom(tmp_path, index, "#disclosure=silent&topology=ring")
    shown = [i for i, hidden in re.findall(r'<tr data-id="(\w+)"( class="hidden")?', silent)
             if not hidden]  # fmt: skip
    assert "showing 2 of 8 trials" in silent and len(shown) == 2
    for trial_id in shown:
        head = read_transcript(run / "transcripts" / f"{trial_id}.jsonl").header.trial
        assert head.disclosure.value == "silent" and head.topology == "ring"
    assert re.search(r'class="badge trunc"', dom)  # the truncated reply is flagged


def test_a_trial_page_draws_the_graph_and_the_messages(
    viewed: tuple[Path, Path], tmp_path: Path
) -> None:
    run, index = viewed
    path = _trial(run, "ring")
    t = read_transcript(path)
    page = index.parent / "trials" / f"{t.trial_id}.html"
    dom = _dom(tmp_path, page, "#round=2")
    # The graph: five nodes, one adversary; a ring's five edges, those used in round 2 lit.
    assert dom.count('<g class="node adversary"') == 1 and dom.count('<g class="node honest"') == 4
    assert dom.count('class="edge') == 5
    said = [e for e in t.events if e.type == "message" and e.round == 2 and e.text]
    pairs = {tuple(sorted((e.sender, r))) for e in said for r in e.receivers}
    assert dom.count('class="edge used"') == len(pairs) > 0
    # Messages per round and phase, from whom to whom; actions and payoffs; every call.
    for e in [e for e in t.events if e.type == "message" and e.text]:
        assert e.text.replace("'", "&#39;") in dom or e.text in dom
    assert dom.count('class="msg') == sum(1 for e in t.events if e.type == "message")
    assert "P1 (adversary) → P2, P5" in dom
    calls = sum(1 for e in t.events if e.type == "model_call")
    assert dom.count('<details class="call') == calls
    failed = sum(1 for e in t.events if e.type == "model_call" and not e.call.parse_ok)
    assert failed and dom.count('<details class="call failed') == failed
    assert "parse failure" in dom and "no action" in dom
    assert '<section class="round current" id="round-2"' in dom

    img = _shot(tmp_path, page, "trial.png", "#round=2")
    graph_box = (0, 60, 420, 480)
    red = _pixels(img, ADVERSARY, graph_box)
    blue = _pixels(img, HONEST, graph_box)
    assert len(red) > 600 and len(blue) > 4 * 600  # filled node discs, radius 19
    # the adversary (P1, seat 0) sits at the top of the circle
    assert sum(y for _, y in red) / len(red) < sum(y for _, y in blue) / len(blue)
    lit = _pixels(img, USED, graph_box)
    assert len(lit) > 300  # thick orange edges, beyond the 10-pixel legend swatch
    bars = _pixels(img, MESSAGE, (420, 60, 1300, 1000))
    assert len(bars) > 6 * 20  # the purple bar of each message card on screen
    xs = {x for x, _ in bars}
    assert max(xs) - min(xs) <= 6  # ... one bar, 6 pixels wide, beside the messages


def test_no_edge_is_lit_where_no_message_can_travel(
    viewed: tuple[Path, Path], tmp_path: Path
) -> None:
    run, index = viewed
    t = read_transcript(_trial(run, "empty"))
    page = index.parent / "trials" / f"{t.trial_id}.html"
    img = _shot(tmp_path, page, "empty.png", "#round=1")
    assert len(_pixels(img, USED, (0, 60, 420, 480))) <= 110  # the legend swatch alone
    assert len(_pixels(img, ADVERSARY, (0, 60, 420, 480))) > 600


def test_the_view_command(viewed: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = viewed
    res = CliRunner().invoke(app, ["view", str(run), "--out", str(tmp_path / "v")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "v" / "index.html").is_file()
    missing = CliRunner().invoke(app, ["view", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no results folder" in missing.output


# -- transcripts that are not what they claim (redteam19b) ---------------------------------
GOLDEN_RUN = Path(__file__).parent / "golden" / "run"


def _golden_copy(tmp: Path) -> Path:
    run = tmp / "run"
    shutil.copytree(GOLDEN_RUN, run / "transcripts")
    return run


def _rewrite(path: Path, edit: Any) -> None:
    events = [json.loads(line) for line in path.read_text().splitlines()]
    edit(events)
    path.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if not p.is_dir()}


def test_a_trial_id_that_is_a_path_writes_nothing_outside_the_view(tmp_path: Path) -> None:
    """``view`` named each page by the header's trial_id: ``../../x`` wrote x.html outside
    the run folder. The page of such an id is named by its hash, linked from the index."""
    run = _golden_copy(tmp_path / "a" / "b")
    victim = sorted((run / "transcripts").glob("*.jsonl"))[1]
    evil = "../" * 4 + "escaped"

    def set_id(events: list[dict[str, Any]]) -> None:
        events[0]["trial"]["trial_id"] = evil

    _rewrite(victim, set_id)
    before = _files_under(tmp_path)
    index = build_view(run)
    out = run / "view"
    assert index == out / "index.html"
    assert {p for p in _files_under(tmp_path) - before if out not in p.parents} == set()
    rows = _embedded(index)["trials"]
    assert len(rows) == 4 and _embedded(index)["unreadable"] == []
    row = next(r for r in rows if r["trial_id"] == evil)
    assert re.fullmatch(r"id-[0-9a-f]{32}", row["page"])
    assert _embedded(out / "trials" / f"{row['page']}.html")["trial_id"] == evil
    plain = [r for r in rows if r is not row]
    assert all(r["page"] == r["trial_id"] for r in plain)
    assert sorted(p.stem for p in (out / "trials").glob("*.html")) == sorted(
        r["page"] for r in rows
    )
    # In a browser, every row of the index links to its page.
    dom = _dom(tmp_path, index)
    links = re.findall(r'<a href="trials/([^"]+)\.html">([^<]*)</a>', dom)
    assert sorted(links) == sorted((r["page"], html.escape(r["trial_id"])) for r in rows)


def test_a_page_in_the_view_that_is_a_link_is_replaced_not_written_through(
    tmp_path: Path,
) -> None:
    run = _golden_copy(tmp_path)
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (run / "view").mkdir()
    (run / "view" / "index.html").symlink_to(target)
    build_view(run)
    assert target.read_text() == "keep me"
    assert not (run / "view" / "index.html").is_symlink()


def test_a_transcript_the_analysis_calls_corrupt_is_listed_and_the_rest_shown(
    tmp_path: Path,
) -> None:
    """An action naming seat 7 of 3 made ``view`` die (IndexError) with no index at all."""
    run = _golden_copy(tmp_path)
    files = sorted((run / "transcripts").glob("*.jsonl"))

    def seat_7(events: list[dict[str, Any]]) -> None:
        next(e for e in events if e["type"] == "action")["seat"] = 7

    _rewrite(files[0], seat_7)
    index = build_view(run)
    data = _embedded(index)
    assert len(data["trials"]) == 3
    [bad] = data["unreadable"]
    assert bad["file"] == files[0].name and "is inconsistent" in bad["problem"]
    res = CliRunner().invoke(app, ["view", str(run), "--out", str(tmp_path / "v")])
    assert res.exit_code == 0 and res.exception is None, res.output


def test_an_unexpected_error_on_one_transcript_is_listed_and_the_rest_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stagbench.viewer.build as build

    run = _golden_copy(tmp_path)
    real = build.trial_data
    first = sorted((run / "transcripts").glob("*.jsonl"))[0].stem

    def flaky(t: Any, problems: Any = None) -> Any:
        if t.trial_id == first:
            raise IndexError("list index out of range")
        return real(t, problems)

    monkeypatch.setattr(build, "trial_data", flaky)
    data = _embedded(build_view(run))
    assert len(data["trials"]) == 3
    assert data["unreadable"] == [
        {
            "file": f"{first}.jsonl",
            "problem": "cannot be shown (IndexError: list index out of range)",
        }
    ]


def test_a_fifo_named_like_a_transcript_is_listed_never_opened(tmp_path: Path) -> None:
    run = _golden_copy(tmp_path)
    with fifo_watch(run / "transcripts" / "fifo.jsonl") as opened:
        data = _embedded(build_view(run))
    assert not opened
    assert len(data["trials"]) == 4
    [fifo] = data["unreadable"]
    assert fifo["file"] == "fifo.jsonl" and "not a regular file" in fifo["problem"]


GOLDEN_LLM_RUN = Path(__file__).parent / "golden_llm" / "v2"


def _llm_copy(tmp: Path) -> Path:
    run = tmp / "run"
    shutil.copytree(GOLDEN_LLM_RUN, run / "transcripts")
    return run


def test_a_reply_parsed_too_deep_to_embed_is_listed_and_the_rest_shown(tmp_path: Path) -> None:
    """A call's ``parsed`` nested 250 deep passes the reader (orjson loads 1024 levels) but
    not orjson's dump (255) inside the page: ``view`` died with a traceback and wrote no
    index (redteam rt26 finding 4)."""
    run = _llm_copy(tmp_path)
    files = sorted((run / "transcripts").glob("*.jsonl"))

    def deep(events: list[dict[str, Any]]) -> None:
        parsed: dict[str, Any] = {"action": "stag"}
        for _ in range(250):
            parsed = {"a": parsed}
        next(e for e in events if e["type"] == "model_call")["call"]["parsed"] = parsed

    _rewrite(files[0], deep)
    res = CliRunner().invoke(app, ["view", str(run)])
    assert res.exit_code == 0 and res.exception is None, res.output
    data = _embedded(run / "view" / "index.html")
    assert len(data["trials"]) == len(files) - 1
    [bad] = data["unreadable"]
    assert bad["file"] == files[0].name and "cannot be shown" in bad["problem"]
    assert "ecursion" in bad["problem"]
    assert files[0].stem not in {p.stem for p in (run / "view" / "trials").glob("*.html")}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=["022", "077", "002"])
def test_the_pages_get_the_mode_a_new_file_gets(tmp_path: Path, umask: int) -> None:
    """Pages were written 0600 (``mkstemp``), unreadable by others on the shared drive the
    README suggests, or by a web server (redteam rt26 finding 5)."""
    run = _golden_copy(tmp_path)
    old = os.umask(umask)
    try:
        index = build_view(run)
        (tmp_path / "plain").write_text("x")  # what open() gives under this umask
    finally:
        os.umask(old)
    want = (tmp_path / "plain").stat().st_mode & 0o777
    assert want == 0o666 & ~umask
    pages = [p for p in index.parent.rglob("*") if p.is_file()]
    assert len(pages) == 1 + 4 + 2  # the index, a page per trial, the script and the style
    assert {p.stat().st_mode & 0o777 for p in pages} == {want}


def test_a_message_is_labelled_by_its_senders_seat_not_its_place_in_chromium(
    tmp_path: Path,
) -> None:
    """``viewer.js`` found a sender's role at ``d.seats[sender]``: with the seats listed
    out of order the honest player was flagged "(adversary)" and the adversary was not
    (redteam rt26 finding 6). ``trial_data`` lists them in order; the script must not
    rely on it either, so the page here lists them reversed."""
    from stagbench.viewer.build import ASSETS, _page, trial_data

    t = read_transcript(GOLDEN_LLM_RUN / "5f3337029f50d399.jsonl")  # seat 1 the adversary
    data = trial_data(t)
    data["seats"] = data["seats"][::-1]
    out = tmp_path / "view"
    (out / "trials").mkdir(parents=True)
    (out / "assets").mkdir()
    for name in ASSETS:  # the package's script and style, as ``view`` copies them
        source = resources.files("stagbench.viewer") / "assets" / name
        (out / "assets" / name).write_text(source.read_text(encoding="utf-8"))
    page = out / "trials" / "reversed.html"
    page.write_text(_page("reversed", "trial", data, "../"))
    dom = _dom(tmp_path, page, "#round=1")
    assert 'data-rendered="yes"' in dom
    senders = re.findall(r'data-sender="(\d+)"><div class="who">(P\d)( \(adversary\))?', dom)
    assert {s for s, _, _ in senders} >= {"0", "1"}
    for seat, name, flag in senders:
        assert name == f"P{int(seat) + 1}" and bool(flag) == (seat == "1"), (seat, flag)


def test_a_malformed_escape_in_the_address_is_ignored_in_chromium(
    viewed: tuple[Path, Path], tmp_path: Path
) -> None:
    """``decodeURIComponent`` threw on ``#defence=%`` (a link a chat client cut) and the
    page stayed blank (redteam rt26 finding 7): the bad parameter is ignored, the good
    ones kept."""
    run, index = viewed
    dom = _dom(tmp_path, index, "#defence=%&disclosure=silent&x=%zz")
    assert 'data-rendered="yes"' in dom and "showing 4 of 8 trials" in dom
    page = index.parent / "trials" / f"{read_transcript(_trial(run, 'ring')).trial_id}.html"
    dom = _dom(tmp_path, page, "#round=%zz")
    assert 'data-rendered="yes"' in dom and '<section class="round current" id="round-1"' in dom
