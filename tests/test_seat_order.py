"""A header's seats are looked up by their number, never by their place in its list
(redteam rt26 finding 6: ``[seat 1, seat 0, ...]`` gave seat 0's calls seat 1's system
prompt, in the viewer and in the replay provider's keys), and a view refuses such a
header, as the audit does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from stagbench.agents.models.providers.replay import ReplayAPI
from stagbench.errors import TranscriptError
from stagbench.records import ModelCallEvent, Transcript, read_transcript
from stagbench.viewer import build_view
from stagbench.viewer.build import trial_data

#: a v2 transcript whose adversary (seat 1) has no system prompt and the others have one
SOURCE = Path(__file__).parent / "golden_llm" / "v2" / "5f3337029f50d399.jsonl"


def _reordered(tmp: Path) -> Path:
    """SOURCE with its header's first two seat entries swapped, nothing else changed."""
    lines = SOURCE.read_text().splitlines()
    head: dict[str, Any] = json.loads(lines[0])
    seats = head["seats"]
    assert [s["seat"] for s in seats] == [0, 1, 2, 3]
    seats[0], seats[1] = seats[1], seats[0]
    out = tmp / "transcripts" / SOURCE.name
    out.parent.mkdir(parents=True)
    out.write_text("\n".join([json.dumps(head, separators=(",", ":")), *lines[1:]]) + "\n")
    return out


def _prompts(t: Transcript) -> list[tuple[int, list[tuple[str, str]]]]:
    return [
        (e.seat, [(m.role, m.content) for m in t.full_messages(e)])
        for e in t.events
        if isinstance(e, ModelCallEvent)
    ]


def test_the_source_tells_the_seats_apart() -> None:
    """The case means something: seat 0 has a system prompt, seat 1 (the adversary) none."""
    t = read_transcript(SOURCE)
    assert t.header.seats[0].system and t.header.seats[1].system is None
    assert t.header.seats[1].role == "adversary"
    assert any(seat == 0 for seat, _ in _prompts(t))


def test_a_call_gets_its_own_seats_system_prompt(tmp_path: Path) -> None:
    original, reordered = read_transcript(SOURCE), read_transcript(_reordered(tmp_path))
    assert reordered.header.seats[0].seat == 1  # the list is out of order ...
    assert _prompts(reordered) == _prompts(original)  # ... and nothing reads it by place
    for seat in range(4):
        assert reordered.header.seat_info(seat) == original.header.seats[seat]
    with pytest.raises(TranscriptError, match="no seat 4"):
        reordered.header.seat_info(4)


def test_the_replay_provider_keys_each_call_by_its_own_seats_prompt(tmp_path: Path) -> None:
    original = ReplayAPI(str(SOURCE))
    reordered = ReplayAPI(str(_reordered(tmp_path)))
    assert set(reordered.replies) == set(original.replies)


def test_the_viewers_data_lists_the_seats_by_number(tmp_path: Path) -> None:
    original, reordered = read_transcript(SOURCE), read_transcript(_reordered(tmp_path))
    data, want = trial_data(reordered), trial_data(original)
    assert [s["seat"] for s in data["seats"]] == [0, 1, 2, 3]
    assert data["seats"] == want["seats"] and data["rounds"] == want["rounds"]


def test_the_view_lists_a_header_out_of_seat_order_as_unreadable(tmp_path: Path) -> None:
    path = _reordered(tmp_path / "run")
    shutil.copy(SOURCE.parent / "369ab10be6a3923c.jsonl", path.parent)
    index = build_view(tmp_path / "run")
    text = index.read_text()
    raw = text.split('id="data">', 1)[1].split("</script>", 1)[0]
    data = json.loads(raw)
    assert [t["trial_id"] for t in data["trials"]] == ["369ab10be6a3923c"]
    [bad] = data["unreadable"]
    assert bad["file"] == SOURCE.name and "out of seat order" in bad["problem"]
