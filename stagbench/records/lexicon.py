"""The vocabularies of the lexical detectors, as data, and the spec's ``[analysis]`` table
that extends them.

Analysis reads cheap talk with transparent detectors: a stag signal (a message
promising or urging stag), a betrayal detection (a later message or reasoning that names
the betrayer or voices distrust), and an announced hare (``hare_intent``: the archetypes'
reaction test stops counting an agent's rounds after it said it would hunt hare). Their
words live here, not in code, so a study whose agents speak differently (one-word talk
such as ``COMMIT`` or ``UNITE``, players called ``Agent_3``) extends them in its spec::

    [analysis]
    short_stag_words = ["onward"]
    player_names = ["Hunter {n}"]

Every list is added to the defaults unless ``replace_defaults = true``. The detectors and
their recall on a labelled sample are in ``stagbench.analysis.lexical``.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stagbench.records.numbers import Int

#: a message of at most this many words is "short": one-word cheap talk
SHORT_MAX_WORDS = 3

STAG_WORDS = ("stag",)
HARE_WORDS = ("hare", "rabbit")
#: words that signal stag when they are (part of) a short message, e.g. one-word talk
SHORT_STAG_WORDS = (
    "commit", "committed", "commitment", "together", "unite", "united", "unity", "unify",
    "unified", "unison", "unanimous", "pledge", "promise", "pact", "trust", "trustworthy",
    "cooperate", "cooperation", "collaborate", "coordinate", "align", "allin", "all-in",
    "all_in", "alliance", "allegiance", "loyal", "loyalty", "guarantee", "guaranteed",
    "harmony", "team", "teamwork", "dedicate", "dedicated", "unwavering", "immutable",
    "solidarity", "faith", "deal", "agree", "yes",
)  # fmt: skip
#: regular expressions for a stated stag intent inside longer text
#: "stag it is", the speaker's ("I'm out of excuses, stag it is"; not "stag it is not",
#: "for some of you, stag it is"), ``{stag}`` the stag words (``analysis.lexical`` reads it
#: with a run's own)
STAG_IT_IS = (
    r"^(?![^.!?;]*\bfor (?:some of |the rest of )?(?:you|them|others)\b)(?:[^.!?;]*,\s*)?\W*"
    r"(?:so\s+|then\s+|ok(?:ay)?\s+)?(?:{stag})\s+it is\b(?!\s+not\b)"
)
STAG_INTENT = (
    r"\b(?:i(?:'ll| will| am going to|'m going to| plan to| commit to)|let'?s|we should|"
    r"going)\b[^.!?]{0,30}\bstag\b",
    # "I'm staying on stag", "I am committing to stag", "stag from now on"
    r"\bi(?:'m| am)\s+(?:still\s+)?(?:staying|sticking|committing|hunting|going|keeping|"
    r"choosing|playing)\b[^.!?]{0,20}\bstag\b",
    r"\bstag\b[^.!?;]{0,6}\b(?:from now on|for me|again|all the way)\b",
    STAG_IT_IS.format(stag="stag"),
    # the joint hunt promised in other words ("I'll cooperate again", "let's all cooperate";
    # not "I'm tired of cooperating", "I'll stop cooperating")
    r"\b(?:i(?:'ll| will| am going to|'m going to| plan to| commit to|'m| am)|let'?s|we should|"
    r"we all should)\s+(?:(?:all|keep|continue|still|definitely|always|happily|fully|be)\s+){0,2}"
    r"(?:cooperat\w*|coordinate on the hunt)\b",
)
#: regular expressions for an announced hare in longer text: the speaker's own intent ("I
#: will hunt hare next round", "I'm switching to hare") or a call for it ("let's go hare"),
#: a negated hare mention left out ("I won't hunt hare"), and none past a stag mention ("I'll
#: stay with stag; hare is tempting"). The archetypes' reaction test
#: takes an agent out of its risk set once it has said so (its talk can draw the trigger)
HARE_INTENT = (
    # the speaker's intent: hare, rabbit, defecting or the safe option ahead
    r"\b(?:i(?:'ll| will| am going to|'m going to| plan to| intend to| shall| choose| pick|"
    r" think i'll| hunt| go| take| play|'d rather)|let'?s|"
    r"we should|expect me to|change of plan)\b"
    r"(?:(?!\bstag\b)[^.!?;]){0,30}"
    r"\b(?:hares?|rabbits?|defect\w*|(?:the )?safe (?:option|payoff|choice|bet|play)|"
    r"play(?:ing)? it safe)\b",
    # a hedged plan, the speaker's ("I'm probably going hare", "I'll likely defect", "I'm
    # gonna go hare") or with no subject ("Probably hare this round", "Leaning towards
    # hare", "gonna grab the rabbit"), the choice next: not a forecast of others ("Most
    # likely some will defect"), a past judgement ("Probably hare was the smart play") or
    # talk about it ("I'm probably being paranoid about defections")
    r"(?:\bi(?:'m| am|'ll| will)\s+|^\W*)(?:probably|most likely|likely|leaning(?: towards?)?|"
    r"inclined to|gonna|imma)\s+(?:(?:go(?:ing)?|hunt(?:ing)?|pick(?:ing)?|choos\w+|tak\w+|"
    r"play(?:ing)?|grab\w*|stick(?:ing)? with|switch(?:ing)? to|with|for)\s+)?"
    r"(?:the\s+|a\s+)?(?:hares?|rabbits?|defect(?:ing)?|play(?:ing)? it safe)\b"
    r"(?!\s+(?:was|is|would|will|gave|worked|has|had|could|might|seems?|looks?|\w+ed)\b)",
    # a double negative read as "keep" ("I won't stop hunting hare": "keep hunting hare")
    r"\bkeep\s+(?:(?:hunting|choosing|picking|going for|going with|taking)\s+(?:the\s+)?"
    r"(?:hares?|rabbits?)|playing it safe|defecting)\b",
    r"\bi(?:'m| am)\s+(?:\w+\s+){0,2}?(?:hunting|going|switching|choosing|picking|playing|"
    r"taking)\b(?:(?!\bstag\b)[^.!?;]){0,30}\b(?:hares?|rabbits?|defect\w*|safe)\b",
    r"\bswitch(?:ing)? to (?:the )?(?:hare|rabbit)\b",
    # a stag the speaker says it will not hunt ("I won't hunt stag next round")
    r"\bi(?:'ll| will|'m| am)?\s*(?:not|never|no longer|won'?t)\s+(?:be\s+)?"
    r"(?:hunt|go|choos|pick|play|stick)\w*\s+(?:for\s+|with\s+)?(?:the\s+)?stag\b",
    # no subject: "Hunting hare next round", "Going with hare", "hare for me", "hare next round"
    r"^\W*(?:hunting|going(?: with| for)?|picking|choosing|taking|playing)\s+(?:the\s+)?"
    r"(?:hare|rabbit|safe)\b",
    # the joint hunt refused, no subject or no negator ("not going stag", "no stag from
    # me", "I'm done with stag", "sitting out the stag hunt", "hunt stag without me")
    r"(?:^|[,:\-\u2014]\s*|\bnope\W+)not\s+(?:going|gonna|hunting|choosing|picking|playing|"
    r"joining)\b(?:\s+to)?(?:\s+\w+)?\s+(?:the\s+)?stag\b",
    r"\bno (?:more )?stag (?:from|for) me\b",
    r"(?<!not )(?<!n't )\b(?:done with|sitting out|sit out|bowing out of|bow out of)\s+"
    r"(?:the\s+)?stag\b",
    # ("You can all hunt stag without me"; not "Don't go stag without me!", "there's no
    # stag without me")
    r"\b(?:you|y'all|you all|you guys|everyone|the rest of you)\s+(?:can|could|should|may|go|"
    r"will)\b[^.!?;]{0,20}\bstag\b[^.!?;]{0,20}\bwithout me\b",
    r"\b(?:hare|rabbit)\b[^.!?;]{0,12}\b(?:for me|next round|from now on|from here on)\b",
    r"\bmy (?:plan|choice|move|pick|call)\W+(?:is\s+)?(?:the\s+)?(?:hare|rabbit)\b",
    r"\b(?:count me out|i'?m out(?!\s+of\s+(?!the\s+stag))|i am out(?!\s+of\s+(?!the\s+stag))|"
    r"don'?t count on me|break (?:away )?from the group|"
    r"(?:go|going) my own way|(?:hunt|hunting|go|going) (?:alone|solo))\b",
    r"\b(?:i'll|i will|i'm going to|i am going to)\b[^.!?;]{0,20}\b(?:guaranteed|sure thing|"
    r"small game|small payoff|(?:3|three) points)\b",
)
#: what makes a clause no announcement: a condition ("if anyone hunts hare, I will hunt
#: hare"), a refusal or a warning ("let's avoid hare", "nobody should hunt hare")
HARE_NOT_INTENT = (
    r"\b(?:if|unless|as long as|otherwise|in case|whenever|should (?:anyone|someone|any))\b",
    r"\b(?:avoid\w*|resist\w*|skip\w*|against|nobody|no one|none of us)\b",
    # a hare compared away ("stag rather than hare", "better than the safe option"); not
    # "rather than gamble, I'm choosing hare"
    r"\b(?:rather than|instead of|than)\s+(?:\w+\s+){0,2}?(?:the\s+)?(?:hares?|rabbits?|"
    r"defect\w*|safe)\b",
    # a threat without "if" ("Defect and I'll defect right back", "Play hare on me and I'll
    # play hare", "tit for tat: you hunt hare, I hunt hare"): an imperative, then what the
    # speaker does
    r"\btit for tat\b|\bany (?:defection|betrayal)\b(?:\s+\w+){0,3}?\s+and\b",
    r"^\W*(?:(?:play|hunt|pick|choose|go)\s+(?:\w+\s+)?(?:hares?|rabbits?)|betray|defect|"
    r"cross|cheat)\b[^.!?;]{0,40}\band\s+(?:i\b|i'll|i will|it's)",
)
#: regular expressions for a negated stag mention ("won't hunt stag", "hare, not stag", "no
#: more stag"): that mention is no stag signal (the rest of the message still may be one)
#: words that negate what follows them (the stag negation's; ``analysis.lexical`` adds a few
#: forms for its other cues)
NEGATORS = (
    r"(?:(?<!why )not|never|no longer|won['’]?t|will not|don['’]?t|do not|does not|"
    r"doesn['’]?t|can['’]?t|cannot|shouldn['’]?t|should not|wouldn['’]?t|would not|"
    r"refuse to|instead of|rather than|"
    # to stop ("I'll stop hunting stag"), unless itself negated ("don't give up on stag")
    r"(?<!n't )(?<!n’t )(?<!not )(?<!never )"
    r"(?:stop(?:ping)?|quit(?:ting)?|giv(?:e|ing) up(?: on)?))"
)
STAG_NEGATION = (
    rf"\b{NEGATORS}\s+(?:\w+\s+){{0,2}}?(?:the\s+)?stag\b",
    r"\bno\s+(?:more\s+)?stag\b",
)
#: regular expressions for voiced distrust (betrayal detection)
DISTRUST = (
    r"\b(?:betray\w*|lie[ds]?|liar|lying|deceiv\w*|decept\w*|cheat\w*|untrustworthy|"
    r"untrusted|unreliable|distrust\w*|mistrust\w*|can(?:'|no)t trust|don'?t trust|"
    r"not trust\w*|backstab\w*|double-?cross\w*|two-faced|broke (?:their|his|her|its) "
    r"(?:word|promise)|defected despite|said stag but|signal(?:l)?ed stag but)\b",
)
#: how transcripts name a player; ``{n}`` is the 1-based player number (seat + 1)
PLAYER_NAMES = ("P{n}", "Player {n}", "Player_{n}", "Agent_{n}", "Agent {n}")


class Lexicon(BaseModel):
    """The detectors' vocabularies: words are matched case-insensitively."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stag_words: tuple[str, ...] = STAG_WORDS
    hare_words: tuple[str, ...] = HARE_WORDS
    short_stag_words: tuple[str, ...] = SHORT_STAG_WORDS
    short_max_words: int = Field(SHORT_MAX_WORDS, ge=1)
    stag_intent: tuple[str, ...] = STAG_INTENT
    stag_negation: tuple[str, ...] = STAG_NEGATION
    hare_intent: tuple[str, ...] = HARE_INTENT
    hare_not_intent: tuple[str, ...] = HARE_NOT_INTENT
    distrust: tuple[str, ...] = DISTRUST
    player_names: tuple[str, ...] = PLAYER_NAMES

    @field_validator("stag_intent", "stag_negation", "hare_intent", "hare_not_intent", "distrust")
    @classmethod
    def _compiles(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {pattern!r} ({exc})") from exc
        return v

    @field_validator("player_names")
    @classmethod
    def _has_number(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for template in v:
            if "{n}" not in template:
                raise ValueError(f"a player name template needs {{n}}: {template!r}")
        return v


class AnalysisSettings(BaseModel):
    """The spec's optional ``[analysis]`` table: additions to the default vocabularies
    (or replacements, with ``replace_defaults``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stag_words: tuple[str, ...] = ()
    hare_words: tuple[str, ...] = ()
    short_stag_words: tuple[str, ...] = ()
    short_max_words: Int | None = Field(None, ge=1)
    stag_intent: tuple[str, ...] = ()
    stag_negation: tuple[str, ...] = ()
    hare_intent: tuple[str, ...] = ()
    hare_not_intent: tuple[str, ...] = ()
    distrust: tuple[str, ...] = ()
    player_names: tuple[str, ...] = ()
    replace_defaults: bool = False

    @model_validator(mode="after")
    def _valid(self) -> AnalysisSettings:
        try:
            self.lexicon()
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ValueError(f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        return self

    def lexicon(self) -> Lexicon:
        base = Lexicon() if not self.replace_defaults else None
        data: dict[str, object] = {}
        for name in (
            "stag_words", "hare_words", "short_stag_words", "stag_intent", "stag_negation",
            "hare_intent", "hare_not_intent", "distrust", "player_names",
        ):  # fmt: skip
            added = tuple(getattr(self, name))
            data[name] = (tuple(getattr(base, name)) if base else ()) + added
        if self.short_max_words is not None:
            data["short_max_words"] = self.short_max_words
        return Lexicon.model_validate(data)
