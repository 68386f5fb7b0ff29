"""The lexical detectors, built from the vocabularies of ``stagbench.records.Lexicon``, and
their recall and precision on a labelled sample (``analysis.lexicon_sample``).

- ``signals_stag(text)``: the message promises or urges stag. A short message (one-word
  cheap talk such as ``COMMIT``, ``UNITE``, ``AllStag``) signals stag when one of its words
  is a stag word or a short stag word (compounds count: ``ALLSTAG``, ``TogetherNow``) and
  none is a hare word. A longer one signals stag when it states a stag intent, or names
  stag and not hare. A negated stag mention ("I won't hunt stag", "hare, not stag", "no
  more stag") is taken out first: it signals nothing, and what is left must still signal.
- ``detects(text, seat)``: the text names the player in ``seat`` (``P3``, ``Agent_3``,
  ``Player 3``, ...) or voices distrust.

Negation, for every detector that reads a cue (the stag signal here, the endorsement of
``analysis.injection``): a negated mention of the cue (``negated``: a negator, then the cue
within two words) is taken out of the text first (``without``): it says nothing, and what is
left must say it on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from stagbench.records import Lexicon
from stagbench.records.lexicon import NEGATORS as NEGATOR_WORDS
from stagbench.records.lexicon import STAG_IT_IS

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_TOKEN = re.compile(r"[a-z]+|[0-9]+")


def tokens(text: str) -> list[str]:
    """Lower-case words of ``text``; camel case and digits split (``TogetherStag`` ->
    together, stag; ``STAG10`` -> stag, 10)."""
    return _TOKEN.findall(_CAMEL.sub(" ", text).lower())


#: what negates the cue after it (within two words): the negators of the default stag
#: negation (``stagbench.records.lexicon.STAG_NEGATION``), with the past and ``is``/``are``
NEGATORS = (  # the stag negation's negators (records' lexicon), and a few more forms
    NEGATOR_WORDS[:-1] + r"|didn['’]?t|did not|isn['’]?t|aren['’]?t|wasn['’]?t|weren['’]?t)"
)


def negated(cue: str) -> re.Pattern[str]:
    """A negated mention of ``cue`` (a regular expression): a negator, at most two words,
    the cue ("don't believe", "do not really trust", "never follow", "not honest")."""
    return re.compile(rf"\b{NEGATORS}\s+(?:\w+\s+){{0,2}}?(?:{cue})", re.I)


#: verbs of leaving the joint hunt ("opting out of the stag hunt", "I'll pass on stag")
_WITHDRAWS = (
    r"abandon(?:s|ed|ing)?|drop(?:s|ped|ping)?(?: out of)?|opt(?:s|ed|ing)? out(?: of)?|"
    r"pass(?:es|ed|ing)? on|back(?:s|ed|ing)? out(?: of)?|withdraw(?:s|n|ing)?(?: from)?|"
    r"sit(?:s|ting)? out(?: of)?|skip(?:s|ped|ping)?|step(?:s|ped|ping)? (?:away|back|out)"
    r"(?: from| of)?|leave me out of|bow(?:s|ed|ing)? out of"
)
#: a double negative: a negator ("no way", "nobody", "no reason to" too), at most two
#: words (none a conjunction, which starts a clause of its own: "not sure but I'll stop"),
#: then a verb of giving up or a second negator ("I won't stop hunting stag", "not going
#: to quit the stag", "never give up on stag", "I'm not done with stag", "I can't not go
#: stag"): the speaker keeps on, and reads so (``affirmed``) before any negation is looked
#: for. Without it the stop verb negated the stag: a promise read as a refusal (no stag
#: signal, no betrayal when it was broken; talk that opened the speaker's hare).
_KEEPS_ON = re.compile(
    rf"(?:(?:\b{NEGATORS}|\bno way|\bnobody|\bno one|\bno reason to|\bno need to)\s+"
    r"(?:(?!(?:but|and|or|so|yet|then|though|unless|until)\b)[\w']+\s+){0,2}?"
    rf"(?:stop(?:s|ped|ping)?|quit(?:s|ting)?|giv(?:e|es|ing) up(?:\s+on)?|{_WITHDRAWS}|"
    r"done with)|\bno\s+(?:more\s+)?(?:stop(?:ping)?|quitting|giving up|"
    rf"{_WITHDRAWS})|\b{NEGATORS}\s+(?:(?:want|going|plan|intend|need|have|gonna)\s+(?:to\s+)?|be\s+)?"
    r"not)\b"
    # not a person stopped ("I won't stop you from hunting stag, but I'm going hare")
    r"(?!\s+(?:you|anyone|anybody|them|him|her|people|others|me|us|the others)\b)",
    re.I,
)


_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


@lru_cache(maxsize=1 << 16)
def affirmed(text: str) -> str:
    """``text`` as the detectors read it: typographic apostrophes as plain ones (the
    vocabularies' patterns are written with ``'``: "Let’s go hare" was no announcement),
    and its double negatives (``_KEEPS_ON``) as "keep" ("I won't stop hunting hare":
    "keep hunting hare", which ``Lexicon.hare_intent`` reads as a plan; "can't stop
    thinking about the hare" names no plan)."""
    return _KEEPS_ON.sub("keep", text.translate(_APOSTROPHES))


def without(negation: re.Pattern[str] | None, text: str) -> str:
    """``text`` with the negated mentions ``negation`` matches taken out (each a space)."""
    return text if negation is None else negation.sub(" ", text)


#: where a message's clauses part (the announced-hare reading takes each apart): at its
#: stops, and at "but" ("Stag would be great if we trusted each other, but I'm going
#: hare": the condition is the first clause's, the plan the second's)
_CLAUSE = re.compile(r"[.!?;]+|\bbut\b(?!\s+(?:only\s+)?(?:if|unless|when)\b)", re.I)
#: any question, from a clause's start (linear time)
_ASKED_ANY = re.compile(r"(?:^|(?<=[.!;?]))[^.!?;]*\?")
#: a question unanswered at the message's end, or answered no (what it names is asked, not
#: planned: "Are you hunting hare?", "Hare? No. Stag."; "Who wants hare? Me." is a plan)
_ASKED = re.compile(
    r"(?:^|(?<=[.!;]))[^.!?;]*\?+\s*(?:$|(?:no|nope|nah|never|not me|not a chance|no way|i think "
    r"not|of course not)\b[^.!?;]*)",
    re.I,
)
#: a threat as an imperative, then what the speaker does ("Play hare on me and I'll play
#: hare right back", "Defect and I'll defect"; not "Choose whatever you like and I'll
#: choose hare")
_IF_YOU = (
    r"^\W*(?:(?:play|hunt|pick|choose|go)\s+(?:\w+\s+)?(?:hares?|rabbits?)|betray|defect|"
    r"cross|cheat)\b[^.!?;]{0,40}\band\s+(?:i\b|i'll|i will|it's)"
)
#: what others said, reported or quoted ("Someone said 'let's play it safe'", "anyone
#: saying we should play it safe"): no announcement of the speaker's
_REPORTED = re.compile(
    # a quote of two words or more, its marks not an apostrophe inside a word ("I'll")
    r"(?:\b(?:say(?:s|ing)?|said|wrote|writes)\s*,?\s*|:\s*)(?:"
    r"'(?=[^'\n]{0,300}\s)(?:[^'\n]|'(?=\w)){1,300}?'(?!\w)|"
    r"\"(?=[^\"\n]{0,300}\s)[^\"\n]{1,300}\")|"
    r"\b(?:anyone|someone|somebody|people|they|he|she|"
    r"others?|p\d+|player \d+|agent_?\d+)\s+(?:\w+\s+)?(?:say(?:s|ing)?|said|wrote|writes|"
    r"suggest\w*|claim\w*)\b[^.!?;:]{0,60}",
    re.I,
)
#: a threat without "if", in the no-stag reading's naming of the choices ("anyone who
#: defects gets hare from me", "any defection and I'll play it safe"): it opens no hare
_THREAT = re.compile(
    r"\b(?:tit for tat|an eye for|from anyone|anyone who \w+s\b|any (?:defection|betrayal)|"
    r"one hare from|cross me)\b|" + _IF_YOU,
    re.I,
)
#: words a call of stag may hold besides stag words ("Stag for everyone!")
_FILLERS = frozenset(
    ("for", "with", "the", "rest", "of", "you", "us", "all", "everyone", "everybody", "again",
     "now", "then", "please", "guys", "folks", "team", "friends", "let", "s", "go", "on",
     "and", "p", "player", "agent")
)  # fmt: skip
#: a clause that states a condition, not a plan ("unless" is a plan with a way out)
_CONDITIONAL = re.compile(
    r"\b(?:if|as long as|in case|whenever|should (?:anyone|someone|any))\b", re.I
)
#: the game's other choice named in talk, besides the vocabulary's hare words
_CHOICES = r"defect\w*|betray\w*|safe\w*"
#: talk that wants the joint hunt ("I'll keep cooperating", "stag is better for all"): with
#: it, a hare named in passing opens nothing
_COOPERATIVE = re.compile(
    r"\b(?:cooperat\w*|together|team\w*|trust\w*|each other|all of us)\b|"
    r"\bstag\b[^.!?;]{0,20}\b(?:better|best|pays|wins)\b",
    re.I,
)


def _words_re(words: Iterable[str]) -> re.Pattern[str] | None:
    alts = [re.escape(w) for w in words if w]
    if not alts:
        return None
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(alts) + r")(?![a-z0-9])", re.I)


def _any_re(patterns: Iterable[str]) -> re.Pattern[str] | None:
    alts = [f"(?:{p})" for p in patterns]
    return re.compile("|".join(alts), re.I) if alts else None


def _norm(words: Iterable[str]) -> set[str]:
    """Each vocabulary entry as one lower-case token (``all-in`` -> ``allin``)."""
    return {"".join(tokens(w)) for w in words if tokens(w)}


def _phases(text: str, one: bool) -> list[str]:
    """A round's message read phase by phase (joined by " / "), or ``one`` phase's whole."""
    return [text] if one else text.split(" / ")


class Detector:
    """Compiled detectors for one ``Lexicon`` (results cached per text)."""

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        self.lexicon = lexicon = lexicon or Lexicon()
        self._stag = _words_re(lexicon.stag_words)
        self._hare = _words_re(lexicon.hare_words)
        self._intent = _any_re(lexicon.stag_intent)
        self._negated = _any_re(lexicon.stag_negation)
        self._distrust = _any_re(lexicon.distrust)
        self._hare_intent = _any_re(lexicon.hare_intent)
        self._hare_not_intent = _any_re(lexicon.hare_not_intent)
        hare = "|".join(re.escape(w) for w in lexicon.hare_words if w)
        self._refused = re.compile(  # the joint hunt refused (not twice: "never give up on")
            rf"\b(?:{NEGATORS}|don't expect me to)\s+"
            r"(?!wait|hesitate|regret|forget|doubt|worry|mind|let)"
            rf"(?:(?!stop|quit|giv|abandon|and\b|but\b|or\b|{hare or 'hare'})\w+\s+){{0,3}}?"
            r"(?:cooperat\w*|join\w*|(?:the\s+)?stag\b)|"
            # a verb of leaving with the hunt as its object ("opting out of the stag hunt",
            # "skipping stag"; not "skip straight to stag", "drop into stag mode")
            rf"\b(?:{_WITHDRAWS})\s+(?:the\s+|this\s+|our\s+|my\s+)?(?:cooperat\w*|stag\b)|"
            r"\bstag\b[^.!?;]{0,12}\b(?:isn't for me|is not for me|is off the table|is dead to "
            r"me)\b|\b(?:you|y'all|you all|you guys|everyone|the rest of you)\s+(?:can|could|"
            r"should|may|go|will)\b[^.!?;]{0,20}\bstag\b[^.!?;]{0,12}\bwithout me\b|"
            r"\bi(?:'m| am|'ll| will)\s+(?:be\s+)?(?:done cooperating|"
            r"go(?:ing)? it alone|sit(?:ting)? (?:this|the) (?:one|round) out)\b",
            re.I,
        )
        self._hare_negated = (  # (three words between: "not going to hunt hare"; "no
            # hare for me", "nobody hunt hare", "no one should defect")
            re.compile(
                rf"\b(?:{NEGATORS}\s+(?:\w+\s+){{0,3}}?|no\s+(?:more\s+)?|avoid(?:ing)?\s+|"
                rf"(?:nobody|no one|none of us)\s+(?:\w+\s+){{0,2}}?)"
                rf"(?:the\s+)?(?:{hare}|defect\w*|safe)",
                re.I,
            )
            if hare
            else None
        )
        self._hare_refused = (
            re.compile(
                r"\b(?:(?:not|never|won't|will not|don't|do not|nobody|no one|none of us)\s+"
                r"(?:(?:should|will|would|must|be|i'm|i am|gonna|going to)\s+)?(?:(?:go(?:ing)?|"
                r"hunt(?:ing)?|pick(?:ing)?|choos\w*|play(?:ing)?|tak\w*|switch\w*(?:\s+to)?|"
                r"touch\w*|consider\w*|risk\w*|try\w*|want\w*|\w+ing|for|with)\s+)?"
                r"(?:for\s+|with\s+|to\s+)?|no\s+(?:more\s+)?|avoid(?:ing)?\s+)"
                rf"(?:the\s+)?(?:(?:{hare})\b|defect\w*|safe\b)",
                re.I,
            )
            if hare
            else None
        )
        self._choices = re.compile(  # (a hare word and its plural: "hares", "rabbits")
            rf"\b(?:(?:{hare})s?|{_CHOICES})\b" if hare else rf"\b(?:{_CHOICES})\b", re.I
        )
        stag = "|".join(re.escape(w) for w in lexicon.stag_words if w)
        self._word_intent = (  # a stag intent in the vocabulary's own words ("I'll hunt deer")
            re.compile(
                r"\b(?:i(?:'ll| will| am going to|'m going to| plan to| commit to)|let'?s|"
                r"we should|i(?:'m| am)\s+(?:\w+\s+){0,2}?(?:staying|sticking|going|hunting|"
                rf"choosing|playing|picking))\b[^.!?]{{0,30}}\b(?:{stag})\b|"
                + STAG_IT_IS.format(stag=stag),
                re.I,
            )
            if stag
            else None
        )
        self._stag_set = _norm(lexicon.stag_words)
        self._short_set = _norm(lexicon.short_stag_words) | self._stag_set
        self._hare_set = _norm(lexicon.hare_words)
        self._names: dict[int, re.Pattern[str]] = {}
        self.signals_stag = lru_cache(maxsize=1 << 16)(self._signals_stag)
        self.withdraws = lru_cache(maxsize=1 << 16)(self._withdraws)
        self.announces_hare = lru_cache(maxsize=1 << 16)(self._announces_hare)
        self.promises_no_stag = lru_cache(maxsize=1 << 16)(self._promises_no_stag)
        self._detects_text = lru_cache(maxsize=1 << 16)(self._detects)
        # per clause (the readers above share them: each message's clauses are read once)
        self._announced = lru_cache(maxsize=1 << 16)(self._announces_in)
        self._in_short = lru_cache(maxsize=1 << 16)(partial(self._in, vocab=self._short_set))
        self._refuses = lru_cache(maxsize=1 << 16)(self._refuses_in)

    # -- stag signals -------------------------------------------------------------------
    @staticmethod
    def _in(token: str, vocab: set[str]) -> bool:
        """The token is a vocabulary word, or a compound that starts or ends with one (of
        four letters or more: ``allstag``, ``stagnow``, ``togethernow``)."""
        if token in vocab:
            return True
        return any(len(w) >= 4 and (token.startswith(w) or token.endswith(w)) for w in vocab)

    def _hare_token(self, token: str) -> bool:
        if token in self._hare_set or any(token.startswith(h) for h in self._hare_set):
            return True
        # a compound naming both (``stagorhare``) is no promise either way
        return any(h in token for h in self._hare_set) and self._in(token, self._short_set)

    def _signals_stag(self, text: str | None) -> bool:
        """A message that promises or urges stag: read as ``affirmed`` gives it; a clause
        that announces a hare or refuses the joint hunt leaves only a stated stag intent
        beside it as a promise (``Lexicon.stag_intent``, or the intent words before a stag
        word of the vocabulary), or a call of stag words alone ("Stag for everyone!");
        otherwise a short message naming a stag word and no hare word, or a longer one
        stating a stag intent or naming stag and no hare, once negated stag and hare
        mentions are taken out."""
        if not text:
            return False
        # a clause that announces a hare or refuses the joint hunt promises no stag ("Count
        # me out of the stag hunt", "I'm done with stag"); a negated stag mention neither
        text = affirmed(text)
        if self._promising(text) is not text:
            # beside such a clause, only a stated stag intent or call promises it ("I'm going
            # hare; maybe stag later": no; "Hare worked for me, but let's all go stag now",
            # "P3 wrote 'I'll defect', ignore it. Stag for everyone.": yes); its questions
            # taken out first (a question is no call, and the cut drops the marks)
            kept = without(self._negated, self._promising(_ASKED_ANY.sub(" ", text)))
            return any(
                (self._word_intent is not None and self._word_intent.search(c)) or self._call(c)
                for c in _CLAUSE.split(kept)
            )
        text = without(self._negated, text)
        # a refused hare is no hare ("Don't go hare, everyone! Stag!"; not "Isn't hare the
        # smarter play?", "Can't argue with hare")
        text = without(self._hare_refused, text)
        words = tokens(text)
        if not words:
            return False
        if len(words) <= self.lexicon.short_max_words:
            if any(self._hare_token(t) for t in words):
                return False
            if any(self._in(t, self._short_set) for t in words):
                return True
            return "".join(words) in self._short_set  # "all in", "all-in"
        if self._intent is not None and self._intent.search(text):
            return True
        if self._stag is None or not self._stag.search(text):
            return False
        return self._hare is None or not self._hare.search(text)

    def _call(self, clause: str) -> bool:
        """A clause of stag words and fillers only ("Stag!", "Stag with the rest of you")."""
        words = tokens(clause)
        if not words or words[0] == "you":  # "You all go stag": a call on others
            return False
        stag = [t for t in words if not (t in _FILLERS or t.isdigit())]
        return bool(stag) and all(self._in_short(t) for t in stag)

    def _promising(self, text: str) -> str:
        """``text`` without its clauses that refuse the joint hunt, or announce a hare
        (``_announced``) and state no stag intent ("I'll hunt stag now, hare next round";
        a negated one is taken out after): what is left may promise stag.
        ``text`` itself (the same object) when no clause was taken out."""
        clauses = _CLAUSE.split(text)
        kept = [
            c
            for c in clauses
            if not self._refuses(c)
            and (not self._announced(c) or (self._intent is not None and self._intent.search(c)))
        ]
        return text if len(kept) == len(clauses) else ". ".join(kept)

    def _withdraws(self, text: str | None) -> bool:
        """A message that takes a stag promise back: it names hare, negates a stag
        mention ("I won't hunt stag"), announces a hare or refuses the hunt. Talk of
        neither ("Agreed, see you there") leaves an earlier promise of the round standing."""
        if not text:
            return False
        text = affirmed(text)
        if self._negated is not None and self._negated.search(text):
            return True
        if self._hare is not None and self._hare.search(text):
            return True
        if any(self._hare_token(t) for t in tokens(text)):
            return True
        # "Count me out this time", "Actually, I'll defect", "I'm done with stag"
        return any(self._announced(c) or self._refuses(c) for c in _CLAUSE.split(text))

    def _announces_hare(self, text: object, one: bool = False) -> bool:
        """A message that says its speaker will hunt hare (or defect, or not hunt stag),
        or calls for it. Each talk phase's message (a round's are joined by " / "; ``one``:
        ``text`` is one phase's, its own " / " no boundary) and each clause of it (split
        at . ! ? ;) is read apart: a short one naming hare and no
        negation ("hare", "HARE now"), or a stated intent (``Lexicon.hare_intent``), once
        negated hare mentions are taken out ("I will not hunt hare" announces nothing);
        a clause with a condition or a refusal (``Lexicon.hare_not_intent``: "if anyone
        hunts hare, I will hunt hare", "let's avoid hare") announces nothing. No text
        (None, or a table's NaN): no."""
        if not isinstance(text, str) or not text:
            return False
        for message in _phases(affirmed(text), one):
            words = tokens(message)
            if words and len(words) <= self.lexicon.short_max_words:
                no = {"no", "not", "never", "dont", "don", "t", "won", "nothing", "avoid"}
                if any(self._hare_token(t) for t in words) and not no & set(words):
                    return True
            if any(self._announced(clause) for clause in _CLAUSE.split(message)):
                return True
        return False

    def _refuses_in(self, clause: str) -> bool:
        """One clause refuses the joint hunt ("I'm not going to cooperate", "I'll pass on
        stag")."""
        return self._refused.search(clause) is not None

    def _announces_in(self, clause: str) -> bool:
        """One clause states a hare intent (``Lexicon.hare_intent``), once negated hare
        mentions are taken out, and no condition or refusal (``hare_not_intent``)."""
        if self._hare_intent is None:
            return False
        if self._hare_not_intent is not None and self._hare_not_intent.search(clause):
            return False
        clause = without(_REPORTED, clause)  # others' words, reported or quoted
        return bool(self._hare_intent.search(without(self._hare_negated, clause)))

    def _promises_no_stag(self, text: object, one: bool = False) -> bool:
        """A message that leaves its speaker's hare open (what the archetypes' reaction
        test reads as talk that may draw a trigger): it announces a hare
        (``announces_hare``); or a clause refuses the joint hunt ("I'm not going to
        cooperate", "I won't be joining the stag hunt"); or a clause, not a conditional
        one, names a hare word (``Lexicon.hare_words``), defect, betray or the safe
        choice (negated hare mentions taken out) in a message that is no stag signal and
        wants no joint hunt ("I'll keep cooperating", "stag is better for all"). No text,
        or small talk: no. ``one``: ``text`` is one talk phase's (``announces_hare``)."""
        if not isinstance(text, str) or not text.strip():
            return False
        if self.announces_hare(text, one):
            return True
        named = False
        for message in _phases(affirmed(text), one):
            for clause in _CLAUSE.split(message):
                if _CONDITIONAL.search(clause):
                    continue
                if self._refuses(clause):
                    return True
            # the choices named outside an unanswered question ("Are you hunting hare?")
            # and threats ("Anyone who defects gets hare from me")
            for clause in _CLAUSE.split(_ASKED.sub(" ", message)):
                if _CONDITIONAL.search(clause) or _THREAT.search(clause):
                    continue
                named = named or bool(self._choices.search(without(self._hare_negated, clause)))
        return named and not self.signals_stag(text) and not _COOPERATIVE.search(text)

    # -- betrayal detection ---------------------------------------------------------------
    def names(self, seat: int) -> re.Pattern[str]:
        """How the transcripts may name the player in ``seat``."""
        if seat not in self._names:
            alts = [re.escape(t.format(n=seat + 1)) for t in self.lexicon.player_names]
            self._names[seat] = re.compile(
                r"(?<![A-Za-z0-9_])(?:" + "|".join(alts) + r")(?![0-9])", re.I
            )
        return self._names[seat]

    def detects(self, text: object, seat: int | None) -> bool:
        """Names the betrayer (in ``seat``) or voices distrust."""
        if not isinstance(text, str) or not text:
            return False
        return self._detects_text(text, seat)  # talk repeats: each text and seat once

    def _detects(self, text: str, seat: int | None) -> bool:
        if seat is not None and self.names(seat).search(text):
            return True
        return bool(self._distrust is not None and self._distrust.search(text))


DEFAULT = Detector()


def detector_for(lexicon: Lexicon | None) -> Detector:
    """The detector of ``lexicon`` (the shared default one for ``None`` or the default)."""
    return DEFAULT if lexicon is None or lexicon == DEFAULT.lexicon else Detector(lexicon)


#: hand-labelled talk a helper wrote apart from the detectors (``tests/data/talk``)
HELD_OUT = Path(__file__).with_name("talk_heldout.jsonl")
HELD_OUT_SOURCE = "held-out"


def held_out() -> list[dict[str, Any]]:
    """The held-out labelled talk: ``text``, ``stag_signal``, ``announces_hare`` (the
    speaker's hare announced or the hunt refused), ``category``."""
    return [orjson.loads(line) for line in HELD_OUT.read_bytes().splitlines() if line.strip()]


def evaluate(detector: Detector | None = None) -> pd.DataFrame:
    """Recall and precision of the detectors on the labelled sample: one row per detector
    and sample part (where the sample came from). The stag signal and the no-stag talk
    reading (``promises_no_stag``, against the speaker's announced hare or refusal) are
    measured on the held-out talk too (``HELD_OUT_SOURCE``: written apart from the
    vocabularies and never used to tune them)."""
    from stagbench.analysis.lexicon_sample import DETECTION, SIGNALS

    det = detector or DEFAULT
    rows = []
    kept = held_out()
    sig = pd.DataFrame(
        [*SIGNALS, *((r["text"], r["stag_signal"], HELD_OUT_SOURCE) for r in kept)],
        columns=["text", "label", "source"],
    )
    sig["said"] = [det.signals_stag(t) for t in sig["text"]]
    dec = pd.DataFrame(DETECTION, columns=["text", "seat", "label", "source"])
    dec["said"] = [det.detects(t, s) for t, s in zip(dec["text"], dec["seat"], strict=True)]
    open_ = pd.DataFrame(
        [(r["text"], r["announces_hare"], HELD_OUT_SOURCE) for r in kept],
        columns=["text", "label", "source"],
    )
    open_["said"] = [det.promises_no_stag(t) for t in open_["text"]]
    for name, frame in (
        ("stag signal", sig),
        ("betrayal detection", dec),
        ("no-stag talk", open_),
    ):
        sample = frame[frame["source"] != HELD_OUT_SOURCE]  # "all": the bundled sample
        parts = [("all", sample)] if len(sample) else []
        for source, g in [*parts, *frame.groupby("source")]:
            pos = g[g["label"]]
            hits = g[g["said"]]
            rows.append(
                {
                    "detector": name,
                    "sample": source,
                    "n": len(g),
                    "positives": len(pos),
                    "recall": float(pos["said"].mean()) if len(pos) else float("nan"),
                    "precision": float(hits["label"].mean()) if len(hits) else float("nan"),
                }
            )
    return pd.DataFrame(rows)
