"""The lexical detectors: one-word cheap talk and other harnesses' player names are read,
the vocabularies are data a spec extends, and their recall is measured on a labelled
sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stagbench.agents.models.base import ChatMessage
from stagbench.agents.models.providers.mock import register_mock
from stagbench.analysis import design, metrics, tables
from stagbench.analysis.lexical import DEFAULT, HELD_OUT, Detector, evaluate, tokens
from stagbench.analysis.tables import agent_rounds
from stagbench.errors import SpecError
from stagbench.records import AnalysisSettings, Lexicon
from stagbench.runs.spec import parse_spec
from stagbench.runs.store import spec_hash

from analysis_helpers import run_spec

#: the old detector: stag and hare as words, a stated intent, P<n> names only
OLD = Lexicon(short_stag_words=(), hare_words=("hare",), player_names=("P{n}",), short_max_words=1)


@pytest.mark.parametrize(
    "word",
    [
        "COMMIT",
        "UNITE",
        "PACT",
        "together",
        "cooperate",
        "stag",
        "ALLSTAG",
        "TogetherStag",
        "all-in",
        "AllIn",
        "STAG10",
        "stagifall",
        "Pledge",
        "trust",
    ],
)
def test_one_word_cheap_talk_signals_stag(word: str) -> None:
    assert DEFAULT.signals_stag(word)


@pytest.mark.parametrize(
    "text",
    [
        "hare",
        "HARE",
        "StagOrHare",
        "Punish",
        "share",
        "adapt",
        "",
        None,
        "I will hunt hare this round.",
        "Stag or hare? You decide.",
    ],
)
def test_what_is_not_a_stag_signal(text: str | None) -> None:
    assert not DEFAULT.signals_stag(text)


def test_longer_messages_keep_the_intent_rule() -> None:
    assert DEFAULT.signals_stag("I will hunt stag this round.")
    assert DEFAULT.signals_stag("Let's all go for the stag, not the hare!")
    assert not DEFAULT.signals_stag("We will all commit to something, probably the hare.")
    assert tokens("TogetherStag all-in") == ["together", "stag", "all", "in"]


def test_betrayers_are_named_the_way_other_harnesses_name_them() -> None:
    assert DEFAULT.detects("Agent_3 said stag but hunted hare.", 2)
    assert DEFAULT.detects("I will watch Player 3 closely", 2)
    assert DEFAULT.detects("P3 cannot be trusted", 2)
    assert not DEFAULT.detects("Agent_33 and P31 hunted stag", 2)
    assert not DEFAULT.detects("Agent_2 hunted stag again", 2)
    assert DEFAULT.detects("Someone deceived us.", None)
    custom = Detector(AnalysisSettings(player_names=("Hunter #{n}",)).lexicon())
    assert custom.detects("Hunter #3 went for the hare", 2)
    assert custom.detects("Agent_3 did too", 2)  # the defaults stay


def test_vocabularies_extend_or_replace_the_defaults() -> None:
    extended = AnalysisSettings(short_stag_words=("onward",)).lexicon()
    assert "onward" in extended.short_stag_words and "commit" in extended.short_stag_words
    assert Detector(extended).signals_stag("ONWARD") and not DEFAULT.signals_stag("ONWARD")
    only = AnalysisSettings(replace_defaults=True, stag_words=("deer",)).lexicon()
    assert only.short_stag_words == () and only.stag_words == ("deer",)
    assert Detector(only).signals_stag("deer") and not Detector(only).signals_stag("COMMIT")
    with pytest.raises(ValueError):
        AnalysisSettings(distrust=("(unclosed",))
    with pytest.raises(ValueError):
        AnalysisSettings(player_names=("Agent",))


def test_recall_on_the_labelled_sample() -> None:
    new = evaluate().set_index(["detector", "sample"])
    old = evaluate(Detector(OLD)).set_index(["detector", "sample"])
    print("\n" + new.to_string() + "\n" + old.to_string())
    assert new.loc[("stag signal", "all"), "recall"] >= 0.95
    assert new.loc[("stag signal", "all"), "precision"] >= 0.95
    assert new.loc[("betrayal detection", "all"), "recall"] >= 0.9
    # one-word talk was nearly invisible to the old vocabulary, Agent_n names too
    assert old.loc[("stag signal", "bct-words"), "recall"] < 0.3
    assert old.loc[("betrayal detection", "bct-style"), "recall"] < 0.7


SPEC = """
name = "vocab"
[game]
rounds = 2
[factors]
models = ["scripted/always-stag"]
{analysis}
"""


def test_the_spec_analysis_table_is_validated_and_not_part_of_the_design() -> None:
    plain = parse_spec(SPEC.format(analysis=""))
    extended = parse_spec(SPEC.format(analysis='[analysis]\nstag_words = ["deer"]'))
    assert extended.analysis.lexicon().stag_words[-1] == "deer"
    assert spec_hash(plain) == spec_hash(extended)  # the same trials: resumable
    with pytest.raises(SpecError, match="analysis"):
        parse_spec(SPEC.format(analysis='[analysis]\nstag_wrods = ["deer"]'))


def test_the_report_reads_with_the_run_vocabulary(tmp_path: Path) -> None:
    text = SPEC.format(analysis="[analysis]\nreplace_defaults = true\nstag_words = ['hunt']")
    out = run_spec(text, tmp_path / "vocab")
    lexicon = design.lexicon(out)
    assert lexicon.stag_words == ("hunt",)
    plain, _ = agent_rounds(out)
    mine, _ = agent_rounds(out, lexicon=lexicon)
    # "I will hunt stag this round." is a stag signal either way; drop the stag word and
    # only the run's vocabulary (hunt) still reads it as one
    assert plain["signalled_stag"].all() and mine["signalled_stag"].all()
    assert Detector(lexicon).signals_stag("hunt") and not DEFAULT.signals_stag("hunt")
    (out / "spec.toml").write_text(text.replace("replace_defaults = true", "bogus = 1"))
    with pytest.raises(Exception, match="analysis"):
        design.lexicon(out)


def test_a_negated_stag_mention_is_no_stag_signal() -> None:
    """ "I won't hunt stag" announces hare: counting it as a stag promise made every
    honest always-hare agent a betrayer. What is left after the negated mention still
    counts, and a spec can add negation patterns of its own."""
    for text in (
        "I won't hunt stag this round.",
        "I won’t hunt stag this round.",  # a typographic apostrophe
        "I will not go for the stag again.",
        "I will hunt hare, not stag.",
        "Not stag this time.",
        "No more stag for me.",
        "Never stag again.",
    ):
        assert not DEFAULT.signals_stag(text), text
    for text in (
        "I won't hunt hare; I will hunt stag.",
        "Why not stag? It pays the most.",
        "Don't give up on the stag, friends.",
    ):
        assert DEFAULT.signals_stag(text), text
    assert DEFAULT.signals_stag("Stag? Nope.")  # outside the default patterns
    custom = Detector(AnalysisSettings(stag_negation=(r"\bstag\? nope\b",)).lexicon())
    assert not custom.signals_stag("Stag? Nope.")
    with pytest.raises(ValueError):
        AnalysisSettings(stag_negation=("(unclosed",))


@pytest.mark.parametrize(
    ("text", "stag"),
    [
        ("I won't stop hunting stag.", True),
        ("I won’t stop hunting stag.", True),  # a typographic apostrophe
        ("I am not going to stop hunting stag", True),
        ("I'm not going to quit the stag hunt now.", True),
        ("I will never stop choosing stag, trust me.", True),
        ("Don't stop hunting stag, everyone!", True),
        ("I refuse to stop hunting stag.", True),
        ("I'm not giving up on stag.", True),
        # the stop verb alone, or past a conjunction, still negates
        ("I will stop hunting stag.", False),
        ("I'm not sure but I'll stop hunting stag.", False),
        ("I won't hunt stag.", False),
    ],
)
def test_a_double_negative_is_a_stag_promise(text: str, stag: bool) -> None:
    """ "I won't stop hunting stag" promises stag: the stop verb under a negation keeps the
    speaker on. It was read as a refusal (no stag signal, so no betrayal when broken, and
    talk that opened the speaker's hare in the archetypes' reaction test)."""
    det = Detector()
    assert det.signals_stag(text) is stag
    assert det.promises_no_stag(text) is not stag
    assert det.withdraws(text) is not stag


@pytest.mark.parametrize(
    "text",
    [
        "I won't stop hunting hare.",
        "I'm not going to stop choosing hare.",
        "I will never give up on hare.",
    ],
)
def test_a_double_negative_about_hare_announces_it(text: str) -> None:
    assert Detector().announces_hare(text) and not Detector().signals_stag(text)


NEGATION = """
name = "negation"
seed = 3
repetitions = 3
[game]
rounds = 3
[factors]
models = [["mock/refuser", "scripted/always-stag"]]
"""


def test_announcing_hare_by_negation_is_no_betrayal(tmp_path: Path) -> None:
    """Agents that say "I won't hunt stag" and hunt hare kept their word: no betrayal
    events, no observed betrayals (the red-team run had 400 and 80)."""

    def refuser(messages: list[ChatMessage], purpose: str | None) -> str:
        if purpose == "talk":
            return json.dumps({"message": "I won't hunt stag this round."})
        return json.dumps({"reasoning": "safe", "action": "hare"})

    register_mock("refuser", refuser)
    run = run_spec(NEGATION, tmp_path / "run", llm=True)
    df, _ = tables.agent_rounds(run)
    assert (df["action"] == "hare").sum() > 0
    assert len(metrics.betrayal_events(df)) == 0
    at = metrics.agent_trials(df)
    assert at["betrayal_round"].isna().all() and (at["trigger_kind"] != "betrayal").all()


def test_talk_naming_the_run_vocabulary_hare_opens_it() -> None:
    """The no-stag reading names the game's choices in the run's own hare words (it named
    hare and rabbit whatever the vocabulary said)."""
    text = "The bunny looks good to me now."
    bunny = Detector(AnalysisSettings(hare_words=["bunny"]).lexicon())
    assert bunny.promises_no_stag(text) and not Detector().promises_no_stag(text)
    assert bunny.promises_no_stag("Rabbits look good to me now.")  # the defaults stay


def test_a_broken_double_negative_promise_is_a_betrayal(tmp_path: Path) -> None:
    """Agents that say "I won't stop hunting stag" and hunt hare broke a promise: every
    such round is a betrayal event (the stop verb had turned the promise into a refusal:
    none were counted)."""

    def keeper(messages: list[ChatMessage], purpose: str | None) -> str:
        if purpose == "talk":
            return json.dumps({"message": "I won't stop hunting stag this round."})
        return json.dumps({"reasoning": "safe", "action": "hare"})

    register_mock("keeper", keeper)
    run = run_spec(NEGATION.replace("mock/refuser", "mock/keeper"), tmp_path / "run", llm=True)
    df, _ = tables.agent_rounds(run)
    hares = int(((df["action"] == "hare") & (df["role"] == "honest")).sum())
    assert hares > 0
    assert len(metrics.betrayal_events(df)) > 0
    at = metrics.agent_trials(df)
    assert (at["trigger_kind"] == "betrayal").any()


@pytest.mark.parametrize(
    ("text", "announces"),
    [
        ("I will hunt hare next round.", True),
        ("I'm switching to hare.", True),
        ("Let's go hare", True),
        ("If anyone defects I will hunt hare.", False),  # a condition, not a plan
        ("I'll defect next round.", True),
        ("I won't hunt stag next round.", True),
        ("Hunting hare next round, sorry everyone.", True),
        ("I will hunt stag this round. / Actually, hare next round for me.", True),
        ("I will hunt stag. Let's all avoid hare.", False),
        ("I'm not going to hunt hare.", False),
        ("HARE now", True),
        ("I will not hunt hare.", False),
        ("I won't hunt hare, trust me", False),
        ("no hare", False),
        ("Let's all hunt stag, not hare.", False),
        ("Stag beats hare for all of us.", False),
        ("I'll stick with stag; hare is tempting but no.", False),
        ("I am worried someone hunts hare", False),
        ("P2 hunted hare last round, I do not trust P2.", False),
        (None, False),
        (float("nan"), False),  # a table's missing message
    ],
)
def test_an_announced_hare(text: object, announces: bool) -> None:
    """What takes an agent out of the archetypes' risk set: its own stated intent to hunt
    hare (or a call for it), not a negated or third-person mention."""
    assert Detector().announces_hare(text) is announces


def test_the_hare_intent_vocabulary_extends() -> None:
    settings = AnalysisSettings(hare_intent=[r"\bbunny time\b"])
    det = Detector(settings.lexicon())
    assert det.announces_hare("ok everyone, bunny time for me") and det.announces_hare(
        "I will hunt hare next round."
    )
    with pytest.raises(ValueError, match="not a regular expression"):
        AnalysisSettings(hare_intent=["(unclosed"])


@pytest.mark.parametrize(
    ("text", "open_"),
    [
        # rt34's announcements the vocabulary alone missed (each brought a false label back)
        ("My next move is hare.", True),
        ("I'm not going to cooperate next round.", True),
        ("I'll stop hunting stag next round.", True),
        ("Next round I won't be joining the stag hunt.", True),
        ("Count me out of the stag hunt next round.", True),
        ("Unless something changes, I'll hunt hare next round.", True),
        # promises, threats and small talk leave the agent in
        ("I will hunt stag this round.", False),
        ("I'm staying on stag.", False),
        ("If anyone defects, I'll hunt hare next round.", False),
        ("Please don't switch to hare, we all lose.", False),
        ("I will never defect.", False),
        ("Hello everyone, good luck!", False),
        # rt35: cooperative chatter, which cost talkative reactors their labels
        ("I'll keep cooperating.", False),
        ("Remember: hare is the safe option but stag is better for all.", False),
        ("Never give up on the stag!", False),
        ("Don't count on me for stag next round.", True),
        ("I'm abandoning the stag plan next round.", True),
        (None, False),
    ],
)
def test_talk_that_promises_no_stag(text: object, open_: bool) -> None:
    """What the archetypes' reaction test reads as talk that may draw a trigger
    (``agent_trials.talk_no_stag``): a hare announced, or the game's choices named without
    a stag promise or a wish for the joint hunt; the red teams' lists (written apart, then
    used to tune it: in-sample) are read right 42/42 and 21/25 (rt34), 34/34 and 21/25
    (rt33), 20/20 and 30/32 (rt35: cooperative chatter that had cost reactors their
    labels)."""
    assert Detector().promises_no_stag(text) is open_


@pytest.mark.parametrize(
    ("text", "stag"),
    [
        # a refusal or an announced hare beside a stag mention promises no stag (each was
        # read as a stag signal: a betrayal when the speaker then hunted hare as it said)
        ("Count me out of the stag hunt.", False),
        ("I'm done with stag.", False),
        ("You can all hunt stag without me.", False),
        ("Stag is tempting, but I'm going hare.", False),
        ("I'm going hare this round; maybe stag later.", False),
        ("The risk of stag is too high for me. I'll take the hare.", False),
        # ... unless the rest states a stag intent
        ("Hare worked for me before, but let's all go stag now.", True),
        ("I will hunt stag this round. / Actually, hare next round for me.", True),
        # a negated hare is no veto (each was read as no stag signal)
        ("Don't go hare, everyone! Stag!", True),
        ("No hare for me, stag all the way.", True),
        ("Let's avoid hare and stick to stag.", True),
        # a question answered, or a call
        ("Who's with me on stag? I'm in.", True),
        ("Why not stag? It pays the most.", True),
        # an eager negator is no refusal; a person stopped is no double negative
        ("I can't wait to hunt stag with you all!", True),
        ("I won't stop you from hunting stag, but I'm going hare.", False),
        # a call of stag words beside a refusal or a quoted announcement
        ("I won't cooperate with a betrayer like P2. Stag with the rest of you.", True),
        ("P3 wrote 'I'll defect', ignore it. Stag for everyone.", True),
        # rhetorical hares are no refused hares; giving up cooperation is no promise of it
        ("Stag is risky. Isn't hare the smarter play here?", False),
        ("Stag failed twice. Can't argue with hare at this point.", False),
        ("I'm tired of cooperating with people who defect. Hare.", False),
        ("I'll reconsider cooperating next round. For now, hare.", False),
        ("I'm out of excuses, stag it is.", True),
        # rt38: a bare "No" before a verb of leaving keeps on; idioms for hare keep its veto;
        # a refused call, another's "stag it is"
        ("No backing out of stag now.", True),
        ("Never underestimate the hare, but stag could work.", False),
        ("Stag with the rest of you? Not this time. I'm going hare.", False),
        ("For some of you, stag it is. For me, hare.", False),
        ("Stag it is not, I'm going hare.", False),
        ("Don't worry I'm not going hare.", False),
        ("P2 and P3 are going stag. I'm going hare.", False),
        ("Are we all going stag again? Let's do it!", True),  # a call, not a question
        # double negatives past an apostrophe or with a second negator
        ("No way I'm abandoning the stag plan.", True),
        ("I'm not done with stag yet.", True),
        ("I can't not go stag.", True),
        ("Let’s go stag.", True),  # a typographic apostrophe
        # the joint hunt promised in other words
        ("I'll cooperate again this round.", True),
        ("Let's all cooperate this time.", True),
        ("I won't cooperate this round.", False),
    ],
)
def test_what_a_stag_promise_is_beside_other_clauses(text: str, stag: bool) -> None:
    """The stag signal behind betrayal counts, on the classes a held-out set written apart
    (242 messages) found misread."""
    assert Detector().signals_stag(text) is stag


@pytest.mark.parametrize(
    ("text", "announces"),
    [
        ("Let’s go hare this round.", True),  # a typographic apostrophe
        ("I’ll defect.", True),
        ("I'll defect.", True),  # short: the clause is read too
        ("Defecting? Not a chance. Stag all the way!", False),
        ("Defecting only hurts us all.", False),
        ("I'm probably being paranoid about defections, but stag it is.", False),
        ("Probably hare was the smart play last round, but I'm going stag now.", False),
        ("I'm gonna be honest: defecting crossed my mind, but I'm staying on stag.", False),
        ("I'm gonna go hare.", True),
        ("Probably hare this round, sorry.", True),
        ("I'm leaning towards hare.", True),
        ("Likely someone will defect.", False),  # a forecast, not a plan
        ("No stag from me this round.", True),
        ("My pick is hare.", True),
        ("Hunting hare next round and I'll be back on stag after.", True),
        # talk of others' hare or a dismissed hare announces none
        ("Most likely some will be tempted by hare, but I'm sticking with stag.", False),
        ("I'll keep hunting stag. Defecting now would be silly.", False),
        ("Everybody should forget about hare. I'm hunting stag.", False),
        ("I can't stop thinking about the hare, but I'll stay with stag.", False),
        ("I won't stop playing it safe.", True),
        # threats without "if"
        ("Defect and I'll defect right back.", False),
        ("Tit for tat: you hunt hare, I hunt hare.", False),
        ("Any defection and I'll play it safe for the rest of the game.", False),
        # the condition is the first clause's, the plan the second's
        ("Stag would be great if we trusted each other, but I'm going hare.", True),
        ("Rather than gamble, I'm choosing hare.", True),
        ("I'll hunt stag rather than hare.", False),
        ("I'll hunt hare, but only if someone defects first.", False),  # one condition
    ],
)
def test_announced_hare_wordings(text: str, announces: bool) -> None:
    assert Detector().announces_hare(text) is announces


@pytest.mark.parametrize(
    ("text", "open_"),
    [
        ("Are you hunting hare?", False),
        ("Stag or hare, everyone?", False),
        ("Play hare on me and I'll play hare right back.", False),
        ("Anyone who defects gets hare from me forever.", False),
        ("I'm going to go with hare next round, otherwise I risk getting nothing.", True),
        # a hare named beside a not-intent word still opens it ("no one" vetoes the
        # announcement reading, not the naming)
        ("I'll hunt hare next round, no one can blame me.", True),
        ("Who wants hare? Me.", True),  # a question answered
        ("Defecting this round.", True),
        ("Nobody wins by going it alone. Stag together!", False),
        ("Let's skip straight to stag this round.", False),
        ("Let's skip back to stag.", False),
        ("There's no stag without me, so count on me.", False),
        ("Y'all go 'head and cooperate, I'll be huntin' hare.", True),
    ],
)
def test_questions_and_threats_name_the_choices_without_opening_a_hare(
    text: str, open_: bool
) -> None:
    """Naming hare in a question or a threat leaves the speaker in the reaction test's risk
    set (a reactor that threatens every round had its tested rounds left out)."""
    assert Detector().promises_no_stag(text) is open_


@pytest.mark.parametrize(
    ("text", "refuses"),
    [
        ("Leave me out of the stag plan.", True),
        ("I'm opting out of stag this time.", True),
        ("I'll pass on stag.", True),
        ("Stag isn't for me this round.", True),
        ("I'm withdrawing from the stag hunt.", True),
        ("I'm skipping stag this round.", True),
        ("I'm sitting this round out.", True),
        ("I'm done cooperating.", True),
        ("Don't expect me to hunt stag.", True),
        # kept on, or a hare left
        ("Don't skip stag!", False),
        ("I won't withdraw from the stag hunt.", False),
        ("I'm not backing out of stag.", False),
        ("Let's skip hare and go stag.", False),
    ],
)
def test_leaving_the_joint_hunt_is_no_stag_promise(text: str, refuses: bool) -> None:
    """Words of leaving the hunt ("opting out of", "pass on", "skipping") refuse it: such
    talk opens the speaker's hare, and its stag mention is no promise (each refusal that
    names stag was a stag signal, a betrayal when the speaker hunted hare as it said)."""
    det = Detector()
    assert det.promises_no_stag(text) is refuses
    assert det.signals_stag(text) is (not refuses)


@pytest.mark.parametrize(
    ("text", "withdraws"),
    [
        ("Count me out this time.", True),
        ("Actually, I'll defect.", True),
        ("Change of plan: I'm done with stag.", True),
        ("Agreed, see you there.", False),
        ("I won't stop hunting stag.", False),
    ],
)
def test_a_later_phase_takes_a_promise_back_in_the_announcement_words(
    text: str, withdraws: bool
) -> None:
    """A later talk phase that announces a hare or refuses the hunt takes the round's stag
    promise back (it was left standing: a betrayal counted for an agent that said it)."""
    assert Detector().withdraws(text) is withdraws


@pytest.mark.parametrize("replace", [False, True])
def test_a_stag_promise_beside_a_refusal_in_the_run_vocabulary(replace: bool) -> None:
    """Beside a refused clause a stated intent keeps the promise in the run's own stag
    words too (the default intent patterns name stag only)."""
    settings = AnalysisSettings(stag_words=["deer"], hare_words=["bunny"], replace_defaults=replace)
    det = Detector(settings.lexicon())
    assert det.signals_stag("I'll hunt deer; I won't join P2's scheme.")
    assert not det.signals_stag("I won't hunt deer; I'm going bunny.")


TALK = Path(__file__).parent / "data" / "talk"


@pytest.mark.parametrize(("name", "floor"), [("set_a", 0.9), ("set_b", 0.85)])
def test_accuracy_on_the_labelled_talk_sets(name: str, floor: float) -> None:
    """The stag signal and the no-stag reading on two hand-labelled sets of LLM-style
    talk (``tests/data/talk/README.md``): set_b was written apart and never tuned on; at
    the floors' commit they read 0.930/0.934 (set_a) and 0.869/0.859 (set_b), against
    0.810/0.756 and 0.775/0.784 before. Refusals that name stag are no stag signal."""
    path = TALK / "set_a.jsonl" if name == "set_a" else HELD_OUT  # (set_b: packaged)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    det = Detector()
    stag = sum(det.signals_stag(r["text"]) is r["stag_signal"] for r in rows) / len(rows)
    no_stag = sum(det.promises_no_stag(r["text"]) is r["announces_hare"] for r in rows) / len(rows)
    assert stag >= floor and no_stag >= floor, (stag, no_stag)
    refusals = [r for r in rows if r["category"].startswith("refusal")]
    assert sum(det.signals_stag(r["text"]) for r in refusals) <= 2
