"""The events the fold produces: one ``TypedDict`` per type, defined once.

Every event is a plain map with a ``type`` tag (a ``Literal``); an event meant for some
people only carries ``to``, a list of selectors (``pid:<pid>``, ``role:<role>``,
``booth:<lang>``, ``interpreters:<lang>``), and goes to whoever matches one of them
(``fold.visible``). Events go to
clients as they are, so these types are the wire's events too: :data:`EVENT_TYPES` maps
each tag to its type, for tools that describe the wire (``typing.get_type_hints`` reads the
fields, the docstring says what the event means).

Times (``ts``, ``at``, ``since``, ``until``, ``expires``, ``closes_at``) are log times in
milliseconds since the epoch, from the entry that produced the event.
"""

# No ``from __future__ import annotations`` here: Python 3.11 computes a TypedDict's
# required and optional keys only from evaluated annotations, and tools read them.
from typing import Literal, TypedDict, get_args, get_type_hints

from .state import FinalResult, InviteRecord, Person, Poll, Progress, PublicKey, PublicPoll

# --- core (rooms.py) ------------------------------------------------------------------------


class PersonJoined(TypedDict):
    """A connection joined: a new person, or a known one on another (or a new) connection."""

    type: Literal["person.joined"]
    person: Person
    """The whole record as the state holds it after the join (``conns`` included)."""
    conn: str
    """The connection that joined."""


class PersonLeft(TypedDict):
    """A connection closed; the person is offline once none is left."""

    type: Literal["person.left"]
    pid: str
    conn: str


class HandRaised(TypedDict):
    """A person raised their hand: they join the end of the queue."""

    type: Literal["hand.raised"]
    pid: str
    ts: int


class HandLowered(TypedDict):
    """A hand was lowered, by its owner or the chair."""

    type: Literal["hand.lowered"]
    pid: str
    by: str


class FloorGranted(TypedDict):
    """The chair gave a person the floor (their hand, if raised, is lowered)."""

    type: Literal["floor.granted"]
    pid: str
    by: str
    ts: int
    """When (log time, ms): the start of the speaking clock."""


class FloorRevoked(TypedDict):
    """A speaker yielded the floor, or the chair took it back."""

    type: Literal["floor.revoked"]
    pid: str
    by: str


class AgendaCurrent(TypedDict):
    """The chair moved to agenda item ``index`` (-1: before the first)."""

    type: Literal["agenda.current"]
    index: int
    ts: int


class NoticePosted(TypedDict):
    """The chair's announcement (an empty text clears it)."""

    type: Literal["notice"]
    text: str
    ts: int
    by: str


# --- channels (channels.py) -----------------------------------------------------------------


class ChannelChosen(TypedDict):
    """A person chose what they listen to: ``original`` or a channel's language."""

    type: Literal["channel.chosen"]
    pid: str
    lang: str
    to: list[str]


class ChannelAdded(TypedDict):
    """The chair added a language channel during the meeting."""

    type: Literal["channel.added"]
    lang: str
    ts: int
    by: str


class BoothAssigned(TypedDict):
    """An interpreter joined for the first time and was assigned to their invite's booth."""

    type: Literal["booth.assigned"]
    pid: str
    booth: str
    pair: list[str]


class AirTaken(TypedDict):
    """An interpreter went on air in a free channel (or replaced a disconnected one)."""

    type: Literal["air.taken"]
    lang: str
    pid: str
    ts: int
    replaced: str | None


class AirReleased(TypedDict):
    """A channel's interpreter went off air: released, cleared by the chair, or gone."""

    type: Literal["air.released"]
    lang: str
    pid: str
    reason: Literal["released", "cleared", "disconnected"]
    ts: int
    by: str | None


class AirHanded(TypedDict):
    """A handover completed: ``incoming`` is on air instead of ``outgoing``, in one step."""

    type: Literal["air.handed"]
    lang: str
    outgoing: str | None
    incoming: str
    ts: int


class HandoverRequested(TypedDict):
    """A booth partner asked the live interpreter to hand over."""

    type: Literal["handover.requested"]
    lang: str
    asker: str
    answerer: str
    ts: int
    expires: int


class HandoverOffered(TypedDict):
    """The live interpreter offered the air to a booth partner."""

    type: Literal["handover.offered"]
    lang: str
    asker: str
    answerer: str
    ts: int
    expires: int


class HandoverDeclined(TypedDict):
    """The one asked declined the pending handover."""

    type: Literal["handover.declined"]
    lang: str
    by: str


class HandoverCancelled(TypedDict):
    """The asker withdrew the pending handover, or one side disconnected."""

    type: Literal["handover.cancelled"]
    lang: str
    by: str
    reason: Literal["cancelled", "disconnected"]


class HandoverExpired(TypedDict):
    """Nobody answered the pending handover in time."""

    type: Literal["handover.expired"]
    lang: str


class BoothAway(TypedDict):
    """The live interpreter disconnected: still on air until ``until`` (the grace period)."""

    type: Literal["booth.away"]
    lang: str
    pid: str
    since: int
    until: int


class BoothBack(TypedDict):
    """The live interpreter reconnected within the grace period."""

    type: Literal["booth.back"]
    lang: str
    pid: str


class InputSelected(TypedDict):
    """An interpreter now listens to ``input``: the floor or a relay channel."""

    type: Literal["input.selected"]
    pid: str
    lang: str
    input: str


class OutputSelected(TypedDict):
    """An interpreter now speaks ``out``, one of their pair (retour)."""

    type: Literal["output.selected"]
    pid: str
    lang: str
    out: str


class Cough(TypedDict):
    """The live interpreter pressed (``on``) or released the cough key."""

    type: Literal["cough"]
    lang: str
    pid: str
    on: bool


class BoothSignal(TypedDict):
    """A booth asked the chair and speakers to slow down, speak up, … (a preset)."""

    type: Literal["booth.signal"]
    n: int
    """The room's number for this signal (a copy that sees only some keeps the room's)."""
    lang: str
    pid: str
    preset: str
    ts: int
    to: list[str]


class ChatPosted(TypedDict):
    """A message in a booth's chat or the all-booths chat."""

    type: Literal["chat.posted"]
    chat: str
    pid: str
    text: str
    ts: int
    to: list[str]


class CaptionPosted(TypedDict):
    """One caption line for the original or a channel."""

    type: Literal["caption"]
    lang: str
    pid: str
    text: str
    ts: int


# --- polls (polls.py, polls_core.py, polls_secret.py) ----------------------------------------


class PollCreated(TypedDict):
    """The chair drafted a poll."""

    type: Literal["poll.created"]
    poll: Poll
    seq: int
    by: str
    to: list[str]


class PollUpdated(TypedDict):
    """The chair edited a draft."""

    type: Literal["poll.updated"]
    poll: Poll
    by: str
    to: list[str]


class PollDeleted(TypedDict):
    """The chair deleted a draft."""

    type: Literal["poll.deleted"]
    id: str
    to: list[str]


class PollKeys(TypedDict):
    """A secret poll's ballot keys, one per weight class, are ready."""

    type: Literal["poll.keys"]
    id: str
    keys: dict[str, PublicKey]
    seal: str
    to: list[str]


class PollOpened(TypedDict):
    """Voting opened; ``poll`` is its public part, with the proxies as they stand now."""

    type: Literal["poll.opened"]
    poll: PublicPoll
    by: str


class PollTimer(TypedDict):
    """The chair set (or removed: ``null``) the time at which an open poll closes."""

    type: Literal["poll.timer"]
    id: str
    closes_at: int | None


class PollClosed(TypedDict):
    """Voting closed, by the chair or the timer (``by``: ``"timer"``)."""

    type: Literal["poll.closed"]
    id: str
    at: int
    by: str


class PollSealed(TypedDict):
    """A closed poll's count is final (every claimed ballot is in, or the wait is over)."""

    type: Literal["poll.sealed"]
    id: str
    at: int
    result: FinalResult
    to: list[str]


class PollPublished(TypedDict):
    """The chair published a sealed poll's result to everyone."""

    type: Literal["poll.published"]
    id: str
    at: int
    result: FinalResult | None


class ProxyGranted(TypedDict):
    """A member's vote is delegated to ``holder``."""

    type: Literal["proxy.granted"]
    member: str
    holder: str
    by: str
    at: int


class ProxyRevoked(TypedDict):
    """A member's proxy was withdrawn."""

    type: Literal["proxy.revoked"]
    member: str
    by: str
    at: int


class BallotCast(TypedDict):
    """An open ballot: ``by`` voted ``choice`` for ``voter`` with weight ``w``."""

    type: Literal["ballot.cast"]
    id: str
    voter: str
    by: str
    at: int
    w: int
    choice: list[str]
    to: list[str]


class BallotChanged(TypedDict):
    """An open ballot changed from ``old`` to ``choice`` (where the poll allows it)."""

    type: Literal["ballot.changed"]
    id: str
    voter: str
    by: str
    at: int
    w: int
    choice: list[str]
    old: list[str]
    to: list[str]


class BallotClaimed(TypedDict):
    """A secret ballot: ``voter`` took its ballot (a blinded token, nothing of the choice)."""

    type: Literal["ballot.claimed"]
    id: str
    voter: str
    by: str
    at: int
    w: int
    blinded: str
    to: list[str]


class BallotDeposited(TypedDict):
    """A sealed secret ballot is in the log (to no one: nodes keep it until the reveal)."""

    type: Literal["ballot.deposited"]
    id: str
    tracker: str
    sealed: str
    late: bool
    to: list[str]


class PollProgress(TypedDict):
    """The chair's live count: turnout, quorum and the running outcome."""

    type: Literal["poll.progress"]
    id: str
    at: int
    progress: Progress
    to: list[str]


# --- audio (audio.py) ------------------------------------------------------------------------


class AudioMuted(TypedDict):
    """A moderator muted a speaker's microphone."""

    type: Literal["audio.muted"]
    pid: str
    by: str


class AudioUnmuted(TypedDict):
    """A microphone was unmuted, by a moderator or (``by``: ``null``) as the floor ended."""

    type: Literal["audio.unmuted"]
    pid: str
    by: str | None


class RecordingStarted(TypedDict):
    """Recording started; ``node`` writes the files."""

    type: Literal["recording.started"]
    id: str
    node: str
    by: str
    since: int


class RecordingStopped(TypedDict):
    """Recording stopped."""

    type: Literal["recording.stopped"]
    id: str
    by: str
    ts: int


# --- stage (stage.py) ------------------------------------------------------------------------


class StageAdded(TypedDict):
    """The chair put ``pid`` on stage (a panelist: seen by everyone, may share a screen)."""

    type: Literal["stage.added"]
    pid: str
    by: str


class StageRemoved(TypedDict):
    """The chair took ``pid`` off the stage."""

    type: Literal["stage.removed"]
    pid: str
    by: str


class StageLayout(TypedDict):
    """The chair chose the layout everyone sees."""

    type: Literal["stage.layout"]
    layout: Literal["speaker", "grid", "screen"]
    by: str


class StagePinned(TypedDict):
    """Shown large for all: a pid on stage, ``"screen"`` or ``null`` (``by`` null: the room)."""

    type: Literal["stage.pinned"]
    target: str | None
    by: str | None


class ShareStarted(TypedDict):
    """``pid`` shares their screen (one share at a time)."""

    type: Literal["share.started"]
    pid: str
    ts: int


class ShareStopped(TypedDict):
    """The share ended: stopped by its publisher or the chair (``by``), or by the room."""

    type: Literal["share.stopped"]
    pid: str
    by: str | None
    reason: Literal["stopped", "left", "off_stage"]


# --- invites (invites.py) -------------------------------------------------------------------


class InviteMinted(TypedDict):
    """An invite was minted (a CLI one: first used): its record, for moderators only."""

    type: Literal["invite.minted"]
    invite: InviteRecord
    to: list[str]


class InviteRevoked(TypedDict):
    """The chair revoked an invite: its connections close (4006); for moderators only."""

    type: Literal["invite.revoked"]
    jti: str
    by: str
    ts: int
    to: list[str]


class RepresentativeAdded(TypedDict):
    """The chair added a representative of a member: invites naming them are admitted."""

    type: Literal["representative.added"]
    member: str
    name: str
    by: str


Event = (
    PersonJoined
    | PersonLeft
    | HandRaised
    | HandLowered
    | FloorGranted
    | FloorRevoked
    | AgendaCurrent
    | NoticePosted
    | ChannelChosen
    | ChannelAdded
    | BoothAssigned
    | AirTaken
    | AirReleased
    | AirHanded
    | HandoverRequested
    | HandoverOffered
    | HandoverDeclined
    | HandoverCancelled
    | HandoverExpired
    | BoothAway
    | BoothBack
    | InputSelected
    | OutputSelected
    | Cough
    | BoothSignal
    | ChatPosted
    | CaptionPosted
    | PollCreated
    | PollUpdated
    | PollDeleted
    | PollKeys
    | PollOpened
    | PollTimer
    | PollClosed
    | PollSealed
    | PollPublished
    | ProxyGranted
    | ProxyRevoked
    | BallotCast
    | BallotChanged
    | BallotClaimed
    | BallotDeposited
    | PollProgress
    | AudioMuted
    | AudioUnmuted
    | RecordingStarted
    | RecordingStopped
    | StageAdded
    | StageRemoved
    | StageLayout
    | StagePinned
    | ShareStarted
    | ShareStopped
    | InviteMinted
    | InviteRevoked
    | RepresentativeAdded
)
"""Any event the built-in slices produce."""


def tag_of(cls: type) -> str:
    """The ``type`` tag an event ``TypedDict`` declares."""
    (tag,) = get_args(get_type_hints(cls)["type"])
    assert isinstance(tag, str)
    return tag


EVENT_TYPES: dict[str, type] = {tag_of(cls): cls for cls in get_args(Event)}
"""Event type tag → its ``TypedDict``, in the order above."""
