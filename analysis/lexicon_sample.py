"""A labelled sample for the lexical detectors, labelled by hand.

``SIGNALS``: (message, promises or urges stag?, source). ``bct-words`` are every distinct
one-word message of the Byzantine Cheap Talk sample (``/work/shared/bct-sample``) except
the ones a reader cannot call either way (``NOW``, ``ALWAYS``, ``All``, ``Success``,
``Victory``, ``LEAD``, ``LEADERSHIP``, ``FOLLOW``, ``FINAL``, ``LastChance``, ``Persist``,
``Lock``, ``Ten``); the default vocabulary was written while reading them, so their recall
is in-sample. ``sentences`` are messages in the style of stagbench's own agents and of
other harnesses, written apart from the vocabulary; ``negations`` say they will not hunt
stag (and a few that urge stag around a negation), written with the negation patterns.

``DETECTION``: (later text of an honest agent, the betrayer's seat, does the text
recognise the betrayal?, source). Naming the betrayer without distrust (``Agent_4 said
stag``) is labelled False: the lexical detector counts it, which its precision shows.
"""

from __future__ import annotations

_POSITIVE_WORDS = """
stag STAG Stag commit together Together UNITE unite Unite united Commit pledge COMMIT trust
TOGETHER ALLIN Trust TRUST ALLSTAG Pledge cooperate AllStag AllIn Unity guarantee Guarantee
GUARANTEE Promise allin unanimous Cooperate Unify ALIGN PACT LOYAL COOPERATE STAGNOW unity
ALLIANCE United commitment alliance all4stag ALLEGIANCE UNITED UNANIMOUS unified all_in
guaranteed UNITY allstag UnitedWeStand coordinate Dedicate TogetherAgain Unison Unwavering
TOGETHERNOW Allin trustworthy all-in IMMUTABLE STAGTOGETHER COLLABORATE STAG10 STAGONLY Pact
Harmony TogetherStag stagifall FINALSTAG ALWAYSSTAG ALL-IN UNITENOW
"""
_NEGATIVE_WORDS = """
hare HARE Hare Punish retaliate adapt Adapt change Pivot PIVOT conditional StagOrHare
"""

_SENTENCES: list[tuple[str, bool]] = [
    ("I will hunt stag this round.", True),
    ("I will hunt hare this round.", False),
    ("Let's all hunt stag together!", True),
    ("Let's all go for the stag, not the hare!", True),
    ("We should all commit to the stag hunt this time.", True),
    ("Stag again, everyone.", True),
    ("I'm going with stag, trust me.", True),
    ("Count me in for the stag.", True),
    ("I plan to hunt the stag if you all do.", True),
    ("Everyone hunted stag last round; let's keep the streak going with stag.", True),
    ("I am going to hunt stag and I expect you to do the same.", True),
    ("Hare is the safer choice after last round.", False),
    ("I'm taking the hare this time.", False),
    ("P3 lied to us, so I will hunt hare.", False),
    ("Not sure what to do yet.", False),
    ("I don't trust P4 any more.", False),
    ("Someone hunted hare last round and we all lost.", False),
    ("Stag or hare? You decide.", False),
    ("Good luck everyone.", False),
    ("Three of us hunted stag and one hunted hare.", False),
    ("Commit to stag with me.", True),
    ("All in on stag!", True),
    ("Together we get ten points each: stag.", True),
    ("I will play it safe with the rabbit.", False),
    ("Hunt the stag with me, all four of us.", True),
]

#: negated stag mentions (written with the negation patterns, so in-sample): an agent that
#: says it will not hunt stag promises nothing, and hunting hare then is no betrayal
_NEGATIONS: list[tuple[str, bool]] = [
    ("I won't hunt stag this round.", False),
    ("I will not go for the stag again.", False),
    ("I will hunt hare, not stag.", False),
    ("No more stag for me.", False),
    ("Never stag again.", False),
    ("I don't trust you, so no stag from me.", False),
    ("I will hunt hare instead of stag.", False),
    ("I won't hunt hare; I will hunt stag.", True),
    ("Why not stag? It pays the most.", True),
    ("Don't give up on the stag, friends.", True),
    # double negatives: promises the stop verb had turned into refusals
    ("I won't stop hunting stag.", True),
    ("I'm not going to quit the stag hunt now.", True),
    ("I will never stop choosing stag.", True),
]

SIGNALS: list[tuple[str, bool, str]] = (
    [(w, True, "bct-words") for w in _POSITIVE_WORDS.split()]
    + [(w, False, "bct-words") for w in _NEGATIVE_WORDS.split()]
    + [(t, label, "sentences") for t, label in _SENTENCES]
    + [(t, label, "negations") for t, label in _NEGATIONS]
)

DETECTION: list[tuple[str, int, bool, str]] = [
    ("Agent_4 said stag but hunted hare; I can't trust them.", 3, True, "bct-style"),
    ("Given Agent_1's defection despite signalling stag, I will hunt hare.", 0, True, "bct-style"),
    ("Agent_3 broke their word last round, so hare is safer.", 2, True, "bct-style"),
    ("Agent_2 cannot be relied on after round 1.", 1, True, "bct-style"),
    ("Someone deceived us in round 2; I will protect my score.", 3, True, "bct-style"),
    ("Agent_4 and Agent_2 both said 'stag', indicating strong intent.", 3, False, "bct-style"),
    ("All four players hunted stag last round and it worked.", 3, False, "bct-style"),
    ("The words all signal cooperation, so I will hunt stag.", 0, False, "bct-style"),
    ("Last round everyone cooperated; I see no reason to change.", 1, False, "bct-style"),
    ("P4 promised stag and lied. I do not trust P4.", 3, True, "stagbench-style"),
    ("P3 cannot be trusted after that.", 2, True, "stagbench-style"),
    ("Player 2 betrayed the group.", 1, True, "stagbench-style"),
    ("They broke their promise, I am done with stag.", 3, True, "stagbench-style"),
    ("P2, you said stag and played hare. Why?", 1, True, "stagbench-style"),
    ("Let's all hunt stag again.", 3, False, "stagbench-style"),
    ("P33 is fine, stag again.", 2, False, "stagbench-style"),
    ("I will keep hunting stag no matter what.", 0, False, "stagbench-style"),
]
