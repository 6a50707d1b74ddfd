"""The room state's shape: one ``TypedDict`` per slice and per record, defined once.

The state stays plain JSON-able data — it is the snapshot format, the digest input and what
a browser holds — so these are TypedDicts (types of plain dicts), never classes with
behaviour. A key marked ``NotRequired`` may be absent: from a person's view (``fold.view``)
and a client's copy (the ballot box, running totals, the command ids), or where the record
says so (a person's ``booth`` when their invite names none).

::

    State  meta      Meta            the fold's bookkeeping
           core      CoreState       rooms.py: people, hands, speakers, agenda, notice
           channels  ChannelsState   channels.py: channels, booths, choices, captions, chats
           polls     PollsState      polls.py: the roll, proxies, polls and their ballots
           audio     AudioState      audio.py: muted microphones, the recording
           stage     StageState      stage.py: who is on stage, the layout, the pin, the share
           invites   InvitesState    invites.py: invites minted and revoked, representatives
"""

# No ``from __future__ import annotations`` here: Python 3.11 computes a TypedDict's
# required and optional keys only from evaluated annotations, and tools read them.
from typing import Literal, NotRequired, TypedDict

# --- meta -----------------------------------------------------------------------------------


class Meta(TypedDict):
    """The fold's bookkeeping: the last entry folded and the command ids seen."""

    room: str
    last: str | None
    n: int
    outcomes: NotRequired[dict[str, dict[str, str] | None]]
    """cid → ``None`` (accepted) or the refusal; not in views."""


# --- core (rooms.py) ------------------------------------------------------------------------


class Person(TypedDict):
    """Someone in the room, online while ``conns`` is not empty."""

    pid: str
    name: str
    role: str
    org: str | None
    country: str | None
    lang: str | None
    conns: list[str]
    since: int
    booth: NotRequired[str]
    """The booth (channel language) an interpreter's or captioner's invite names."""
    pair: NotRequired[list[str]]
    """The languages an interpreter's invite says they work between."""


class AgendaEntry(TypedDict):
    title: str
    titles: dict[str, str]
    start: str
    minutes: int


class Notice(TypedDict):
    text: str
    ts: int


class CoreState(TypedDict):
    title: str
    floor: str
    people: dict[str, Person]
    hands: list[str]
    raised: dict[str, int]
    """pid → when that hand in the queue went up (log time, ms): the chair's waiting times."""
    speakers: list[str]
    floor_since: dict[str, int]
    """pid → when that speaker got the floor (log time, ms): the chair's speaking clock."""
    agenda: list[AgendaEntry]
    current: int
    notice: Notice | None


# --- channels (channels.py) -----------------------------------------------------------------


class Handover(TypedDict):
    kind: Literal["request", "offer"]
    asker: str
    answerer: str
    ts: int
    expires: int


class Away(TypedDict):
    pid: str
    since: int
    until: int


class LastOff(TypedDict):
    pid: str
    reason: str
    ts: int


class Channel(TypedDict):
    """One language channel and its booth's on-air state."""

    lang: str
    added: int | None
    live: str | None
    since: int | None
    cough: bool
    handover: Handover | None
    away: Away | None
    last_off: LastOff | None


class Interpreter(TypedDict):
    pid: str
    booth: str
    pair: list[str]
    input: str
    out: str


class Line(TypedDict):
    """A caption line or a chat message."""

    n: int
    pid: str
    text: str
    ts: int


class Signal(TypedDict):
    n: int
    lang: str
    pid: str
    preset: str
    ts: int
    to: list[str]


class ChannelSettings(TypedDict):
    handover_ms: int
    grace_ms: int


class ChannelsState(TypedDict):
    floor: str
    fallback: str
    settings: ChannelSettings
    channels: dict[str, Channel]
    interpreters: dict[str, Interpreter]
    choice: dict[str, str]
    captions: dict[str, list[Line]]
    chats: dict[str, list[Line]]
    signals: list[Signal]
    sign: list[str]
    """The channels that are sign-language video (booth rules, no audio), from the config."""


# --- polls (polls.py, polls_core.py, polls_secret.py, polldefs.py, tally.py) -----------------


class PollOption(TypedDict):
    id: str
    text: dict[str, str]


class Quorum(TypedDict):
    of: str
    fraction: str
    weighted: bool


class Threshold(TypedDict):
    rule: str
    abstentions: str


class PollDefinition(TypedDict):
    """A poll's question, options and rules, as :func:`polldefs.normalise` returns them."""

    question: dict[str, str]
    kind: str
    max: int
    options: list[PollOption]
    electorate: str
    secret: bool
    change: bool
    seconds: int | None
    quorum: Quorum | None
    threshold: Threshold
    mix: int


class ConfigPoll(PollDefinition):
    """A poll prepared in the assembly file: a definition with its id."""

    id: str


class PublicKey(TypedDict):
    """A ballot key (RSA modulus in hex, public exponent)."""

    n: str
    e: int


class PublicPoll(PollDefinition):
    """What everyone may see of a poll once it is open."""

    id: str
    state: str
    opened_at: int | None
    closes_at: int | None
    closed_at: int | None
    sealed: bool
    published_at: int | None
    keys: dict[str, PublicKey] | None
    seal: str | None
    """The poll's public seal key (an uncompressed P-256 point, hex): devices encrypt
    their secret ballots to it (server/seal.py)."""
    proxies: dict[str, str]


class VoteRecord(TypedDict):
    """Who cast a voter's ballot, when, with what weight (and, if open, what choice)."""

    by: str
    at: int
    w: int
    choice: NotRequired[list[str]]
    blinded: NotRequired[str]


class SealedBallot(TypedDict):
    """A secret ballot as the log holds it until the reveal: encrypted, by tracker."""

    sealed: str
    """hex; nobody without the poll's seal key can read it (server/seal.py)"""
    late: bool
    """arrived after the close (a change in it is not taken)"""


class Revealed(TypedDict):
    """One counted secret ballot in a published result: a choice and a weight, no token."""

    choice: str | list[str]
    """One option id; a list for a ``multiple`` poll."""
    w: int


class Amount(TypedDict):
    n: int
    w: int


class OptionTotal(TypedDict):
    id: str
    n: int
    w: int


class QuorumResult(TypedDict):
    of: str
    fraction: str
    weighted: bool
    required: int | str
    have: int
    met: bool


class ThresholdResult(TypedDict):
    rule: str
    abstentions: str
    basis: int
    lead: int
    needed: int | str
    met: bool


class Result(TypedDict):
    """Totals, quorum, threshold and outcome from a poll's counts (:func:`tally.result`)."""

    options: list[OptionTotal]
    ballots: int
    weight: int
    eligible: Amount
    present: Amount
    quorum: QuorumResult | None
    threshold: ThresholdResult
    outcome: str
    winner: str | None


class Progress(Result):
    """The chair's live count: a result so far, with the turnout (for a secret poll, the
    turnout only: every option at zero, ``outcome`` ``"secret"``)."""

    turnout: Amount
    not_voted: NotRequired[list[str]]
    """A roll poll's members (ids, roll order) with no ballot yet, a claim counting as one:
    who took part is not secret, only what they chose."""


class RollCallLine(TypedDict):
    voter: str
    name: str
    by: str
    choice: str | list[str]
    """One option id; a list for a ``multiple`` poll."""
    w: int


class FinalResult(Result):
    """A sealed poll's result: a secret one lists the trackers of the sealed ballots
    received and, separately, the counted ballots (unless ``too_few``); an open one the
    roll call, which ``poll.published`` leaves out (the chair has it from ``poll.sealed``,
    the minutes from the exports)."""

    turnout: Amount
    missing: int
    opened_at: int | None
    closed_at: int | None
    sealed_at: int
    trackers: NotRequired[list[str]]
    revealed: NotRequired[list[Revealed]]
    counted: NotRequired[int]
    invalid: NotRequired[int]
    late: NotRequired[int]
    mix: NotRequired[int]
    keys: NotRequired[dict[str, PublicKey] | None]
    roll_call: NotRequired[list[RollCallLine]]


class Poll(PublicPoll):
    """A poll in the state. The ballot box and running totals are on nodes (and, but for
    the box, in the chair's view) only."""

    voted: dict[str, VoteRecord]
    pending: NotRequired[dict[str, int]]
    """weight class → claims (ballots taken) in a secret poll"""
    ballots: NotRequired[dict[str, SealedBallot]]
    """a secret poll's sealed ballots by tracker (nodes only)"""
    counts: NotRequired[dict[str, list[int]]]
    """option → ``[n, w]``"""
    cast: NotRequired[list[int]]
    """``[n, w]``"""
    progress: NotRequired[Progress | None]
    progress_at: NotRequired[int | None]
    dirty: NotRequired[bool]
    result: NotRequired[FinalResult | None]


class RollMember(TypedDict):
    name: str
    country: str
    w: int


class Voting(TypedDict):
    proxy_chains: bool
    max_proxies: int | None
    key_bits: int


class PollsState(TypedDict):
    roll: dict[str, RollMember]
    voting: Voting
    proxies: dict[str, str]
    polls: dict[str, Poll]
    order: list[str]
    seq: NotRequired[int]
    """The chair's copy only: polls created so far (ids are ``p<seq>``)."""


# --- audio (audio.py) ------------------------------------------------------------------------


class Recording(TypedDict):
    id: str
    node: str
    by: str
    since: int


class AudioState(TypedDict):
    muted: list[str]
    recording: Recording | None


# --- stage (stage.py) ------------------------------------------------------------------------


class Share(TypedDict):
    """The one screen share: whose, since when."""

    pid: str
    since: int


class StageState(TypedDict):
    layout: Literal["speaker", "grid", "screen"]
    """The chair's layout for everyone: speaker with a strip, a grid, the screen with the
    speaker beside it."""
    panel: list[str]
    """Whom the chair put on stage, in order (moderators and the floor are on it anyway)."""
    pin: str | None
    """A pid on stage, or ``"screen"``, shown large for everyone; ``None``: the speaker."""
    share: Share | None


# --- invites (invites.py) -------------------------------------------------------------------


class InviteRecord(TypedDict):
    """One invite for the room, as minted: for whom, which role and member, by whom."""

    jti: str
    role: str
    name: str
    org: str | None
    country: str | None
    booth: str | None
    lang: str | None
    exp: int
    """Unix seconds."""
    by: str | None
    """The pid of the moderator who minted it; ``None``: minted by ``hemicycle invite``
    (recorded when first used)."""
    at: int
    revoked: bool


class InvitesState(TypedDict):
    invites: dict[str, InviteRecord]
    """By invite id; empty in everyone's view but a moderator's."""
    reps: dict[str, list[str]]
    """Member id → the names that may represent it (configured, then added by the chair)."""


# --- the room -------------------------------------------------------------------------------


class State(TypedDict):
    """One room's state: one key per slice."""

    meta: Meta
    core: CoreState
    channels: ChannelsState
    polls: PollsState
    audio: AudioState
    stage: NotRequired[StageState]
    """Present when the node folds the stage slice (it always does; tools may not)."""
    invites: NotRequired[InvitesState]
    """Present when the node folds the invites slice (it always does; tools may not)."""
