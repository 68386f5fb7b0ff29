"""The records every layer shares, at the bottom of the house: what a trial is
(``TrialSpec`` and its parts), what a transcript holds (a header and its events), what a
results folder's manifest says, and the one reader of them all.

Nothing here imports any other part of stagbench but ``stagbench.errors``.
"""

from stagbench.records.events import (
    TRANSCRIPT_FORMAT,
    TRANSCRIPT_VERSION,
    ActionEvent,
    BodyEvent,
    ChatMessage,
    Event,
    Header,
    MessageEvent,
    ModelCallEvent,
    ModelCallRecord,
    RoundEndEvent,
    SeatInfo,
    Transcript,
    TrialEndEvent,
    full_messages,
    maker,
)
from stagbench.records.lexicon import AnalysisSettings, Lexicon
from stagbench.records.manifest import MANIFEST_FORMAT, MANIFEST_VERSION, Manifest
from stagbench.records.reader import (
    check_events,
    check_header,
    file_identity,
    load_events,
    migrate,
    migrate_manifest,
    parse_manifest,
    parse_transcript,
    read_events,
    read_manifest,
    read_transcript,
    validate_events,
)
from stagbench.records.trial import (
    AdversarySpec,
    AgentSettings,
    Disclosure,
    GameConfig,
    PayloadSpec,
    TrialSpec,
    same_trial,
)

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "TRANSCRIPT_FORMAT",
    "TRANSCRIPT_VERSION",
    "ActionEvent",
    "AdversarySpec",
    "AnalysisSettings",
    "AgentSettings",
    "BodyEvent",
    "ChatMessage",
    "Disclosure",
    "Event",
    "GameConfig",
    "Header",
    "Lexicon",
    "Manifest",
    "MessageEvent",
    "ModelCallEvent",
    "ModelCallRecord",
    "PayloadSpec",
    "RoundEndEvent",
    "SeatInfo",
    "Transcript",
    "TrialEndEvent",
    "TrialSpec",
    "check_events",
    "check_header",
    "full_messages",
    "load_events",
    "migrate",
    "migrate_manifest",
    "parse_manifest",
    "parse_transcript",
    "read_events",
    "file_identity",
    "read_manifest",
    "read_transcript",
    "same_trial",
    "maker",
    "validate_events",
]
