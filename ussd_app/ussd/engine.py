"""The menu engine: runs flows declared as data, one newest input at a time.

A flow is a dict of named states. A ``Screen`` shows text (and maybe numbered options) and
waits for input; its transitions are guarded ``Choice``s tried in order, with ``otherwise``
as the fallback reason. A ``Step`` is work without a screen (look something up, check a PIN,
record a request): it returns an outcome name and ``exits`` say where each outcome leads.
Secret input (a PIN) is a tag on the screen: the engine hands it to the next steps in memory
for this one request and never writes it into the conversation.

The engine owns what every flow shares: ``0`` back, ``00`` home, ``98`` more on long lists,
re-showing a screen with a short reason after wrong input, and the 160-character budget.
It knows nothing about money, people or databases.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..i18n import t
from . import gsm7

log = logging.getLogger(__name__)

BACK, HOME, MORE = "0", "00", "98"
RESUME = "_resume"  # the engine's own screen: "continue where you left off?"
MAX_STEPS = 12  # a flow that chains more steps than this without a screen is a bug
MAX_HISTORY = 30  # screens "0" can go back through; older ones (and their data marks) are dropped


def N_(message: str) -> str:
    """Marks a message id for extraction (``pybabel extract -k N_``); translated when shown."""
    return message


# Message ids whose wording depends on a count in the data: many -> (data key, the id for one).
_SINGULAR: dict[str, tuple[str, str]] = {}


def singular(many: str, key: str, one: str) -> None:
    """Show ``one`` instead of ``many`` when ``data[key] == 1`` ("1 try left", not "1 tries")."""
    _SINGULAR[many] = (key, one)


def say(lang: str, message: str, data: dict) -> str:
    """``message`` in ``lang`` with the conversation's data filled in, in the count's number."""
    if message in _SINGULAR:
        key, one = _SINGULAR[message]
        if data.get(key) == 1:
            message = one
    return t(lang, message, **data)


@dataclass(frozen=True)
class Option:
    """A numbered menu line: its label (a message id) and the state it leads to."""

    label: str
    to: str


@dataclass(frozen=True)
class Choice:
    """A guarded transition: ``guard(text)`` gives the parsed value, or None when it does not
    match. The value is saved in the conversation's data under ``save`` (never for secrets)."""

    guard: Callable[[str], Any]
    to: str
    save: str | None = None


@dataclass(frozen=True)
class Retry:
    """An exit that re-shows ``to`` with a short ``reason`` (a message id)."""

    to: str
    reason: str


@dataclass(frozen=True)
class Screen:
    about: str  # one line: what this screen is for (documentation, and the resume offer)
    say: str  # message id; ``{name}`` placeholders are filled from the conversation's data
    options: tuple[Option, ...] = ()
    items: str | None = None  # data key of a list [[key, label], ...] shown as numbered lines
    pick: tuple[str, str] | None = None  # (state, data key): where picking an item leads
    choices: tuple[Choice, ...] = ()
    otherwise: str = N_("Invalid choice.")
    secret: bool = False  # input is a PIN: never stored, never resumed at, redacted
    end: bool = False  # the answer is END: the conversation is over
    # Message id of the resume offer from here, saying what would be continued ("Continue
    # sending {amount_text} to {recipient_name}?"). A screen that leads straight to a PIN is
    # offered back only when it has one: nobody continues a payment they cannot see.
    resume: str | None = None


@dataclass(frozen=True)
class Step:
    about: str
    run: Callable[[Context], str]
    exits: dict[str, str | Retry]


State = Screen | Step


@dataclass
class Context:
    """What flows see of one request. ``data`` is kept between requests (in Redis), so it
    must never hold a secret; ``secret`` lives for this request only."""

    phone: str
    lang: str
    home: str
    data: dict = field(default_factory=dict)
    user: Any = None  # whatever the web side loaded for this phone; opaque to the engine
    secret: str | None = None


@dataclass
class Conversation:
    """Where one USSD session stands. Serialised to Redis as plain JSON."""

    state: str
    history: list[str] = field(default_factory=list)
    # The flow's data as it was when each screen of ``history`` was shown (same order): "0"
    # back to a screen puts it back, so nothing an abandoned branch set outlives going back.
    marks: list[dict] = field(default_factory=list)
    page: int = 0
    reason: str | None = None
    ended: bool = False
    resume: dict | None = None  # the snapshot offered on the RESUME screen

    def to_json(self) -> dict:
        return {
            "state": self.state,
            "history": self.history,
            "marks": self.marks,
            "page": self.page,
            "reason": self.reason,
            "ended": self.ended,
            "resume": self.resume,
        }

    @classmethod
    def from_json(cls, raw: dict) -> Conversation:
        return cls(
            state=raw["state"],
            history=list(raw.get("history") or []),
            marks=list(raw.get("marks") or []),
            page=int(raw.get("page") or 0),
            reason=raw.get("reason"),
            ended=bool(raw.get("ended")),
            resume=raw.get("resume"),
        )

    def push(self, state: str, mark: dict) -> None:
        # A session stored before marks existed has fewer marks than history: pad, so the
        # two stay in step (an empty mark is never restored, see ``back``).
        self.marks.extend({} for _ in range(len(self.history) - len(self.marks)))
        self.history.append(state)
        self.marks.append(mark)
        # Bounded: a session that walks in circles cannot grow its stored state without end.
        del self.history[:-MAX_HISTORY], self.marks[:-MAX_HISTORY]

    def back(self) -> dict | None:
        """Leave for the previous screen: the data as it was shown there, or None if unknown."""
        self.state = self.history.pop()
        mark = self.marks.pop() if len(self.marks) > len(self.history) else None
        del self.marks[len(self.history) :]
        return mark

    def forget_from(self, index: int) -> None:
        del self.history[index:]
        del self.marks[index:]


@dataclass(frozen=True)
class Reply:
    text: str
    end: bool

    @property
    def body(self) -> str:
        return ("END " if self.end else "CON ") + self.text


class FlowError(RuntimeError):
    """A flow is wired wrongly (unknown state, missing exit): a bug, not a user's mistake."""


class Engine:
    def __init__(self, flows: dict[str, dict[str, State]], *, lasting: tuple[str, ...] = ()):
        # Data keys that record what the person was shown rather than what they chose (a
        # registered name looked up): "0" back does not take them back, since the person saw it.
        self.lasting = lasting
        # States are addressed as "flow.state"; inside a flow a bare name means the same flow.
        self.states: dict[str, State] = {}
        for flow, states in flows.items():
            for name, state in states.items():
                self.states[f"{flow}.{name}"] = state
        # Screens one input away from a PIN: offered back only with their own resume question.
        self._before_pin = {
            name
            for name, state in self.states.items()
            if isinstance(state, Screen) and self._leads_to_pin(name)
        }

    # -- addressing -------------------------------------------------------------------------

    def resolve(self, current: str, target: str) -> str:
        full = target if "." in target else f"{current.split('.')[0]}.{target}"
        if full not in self.states:
            raise FlowError(f"no state {full!r} (from {current!r})")
        return full

    def state(self, name: str) -> State:
        try:
            return self.states[name]
        except KeyError:
            raise FlowError(f"no state {name!r}") from None

    # -- the two entry points ---------------------------------------------------------------

    def begin(self, ctx: Context, snapshot: dict | None = None) -> tuple[Conversation, Reply]:
        """A new session: the home screen, or the offer to resume an unfinished one."""
        if snapshot and snapshot.get("home") == ctx.home and self._offer(ctx, snapshot) is not None:
            conv = Conversation(state=RESUME, resume=snapshot)
            return conv, self.render(conv, ctx)
        conv = Conversation(state=ctx.home)
        return conv, self._arrive(conv, ctx, ctx.home)

    def handle(self, conv: Conversation, ctx: Context, text: str) -> Reply:
        """Apply the newest input ``text`` to the conversation and answer with a screen."""
        conv.reason = None
        if conv.state == RESUME:
            return self._handle_resume(conv, ctx, text)
        if text == HOME:
            ctx.data.clear()
            conv.forget_from(0)
            return self._arrive(conv, ctx, ctx.home)
        if text == BACK:
            if conv.page > 0:
                conv.page -= 1
            elif conv.history:
                mark = conv.back()
                if mark is not None:  # forget what was chosen and looked up after that screen
                    seen = {key: ctx.data[key] for key in self.lasting if key in ctx.data}
                    ctx.data.clear()
                    ctx.data.update(copy.deepcopy(mark))
                    ctx.data.update(seen)
                conv.page = 0
            return self.render(conv, ctx)
        # The data as this screen shows it, before its input changes anything: where "0" from
        # the next screen comes back to.
        mark = copy.deepcopy(ctx.data)
        screen = self.state(conv.state)
        if not isinstance(screen, Screen):
            raise FlowError(f"conversation parked on a step: {conv.state}")
        numbered = self._numbered(screen, ctx, conv.state)
        pages = self._pages(ctx, numbered, self._head(ctx, screen)) if numbered else []
        if text == MORE and pages and pages[min(conv.page, len(pages) - 1)][1]:
            conv.page += 1
            return self.render(conv, ctx)
        if numbered and text.isascii() and text.isdigit() and len(text) <= 3:
            for number, _label, target, value in numbered:
                if int(text) == number:
                    if value is not None and screen.pick:
                        ctx.data[screen.pick[1]] = value
                    return self._arrive(conv, ctx, target, mark=mark)
        for choice in screen.choices:
            value = choice.guard(text)
            if value is None:
                continue
            if screen.secret:
                ctx.secret = value
            elif choice.save:
                ctx.data[choice.save] = value
            return self._arrive(conv, ctx, self.resolve(conv.state, choice.to), mark=mark)
        conv.reason = screen.otherwise
        return self.render(conv, ctx)

    # -- moving -----------------------------------------------------------------------------

    def _arrive(self, conv: Conversation, ctx: Context, target: str, *, mark: dict | None = None) -> Reply:
        """Go to ``target``, running any steps on the way, and show the screen we land on.
        ``mark`` (the data as the screen we leave showed it) puts that screen in the history."""
        if mark is not None and conv.state != RESUME and conv.state != target:
            conv.push(conv.state, mark)
        reason = None
        for _ in range(MAX_STEPS):
            state = self.state(target)
            if isinstance(state, Screen):
                break
            outcome = state.run(ctx)
            if outcome not in state.exits:
                raise FlowError(f"{target} has no exit for outcome {outcome!r}")
            exit_ = state.exits[outcome]
            if isinstance(exit_, Retry):
                target, reason = self.resolve(target, exit_.to), exit_.reason
                # Re-showing an earlier screen: forget the history from there on, so "0"
                # goes back to what came before it, as if the user had just arrived.
                if target in conv.history:
                    conv.forget_from(conv.history.index(target))
            else:
                target, reason = self.resolve(target, exit_), None
        else:
            raise FlowError(f"more than {MAX_STEPS} steps in a row from {conv.state}")
        conv.state, conv.page, conv.reason = target, 0, reason
        if state.end:
            conv.ended = True
        if target == ctx.home:
            conv.forget_from(0)
        return self.render(conv, ctx)

    def _handle_resume(self, conv: Conversation, ctx: Context, text: str) -> Reply:
        snapshot = conv.resume
        conv.resume = None
        if text == "1" and snapshot:
            ctx.data.clear()
            ctx.data.update(snapshot.get("data") or {})
            conv.state = snapshot["state"]
            conv.history = list(snapshot.get("history") or [])
            conv.marks = [dict(mark) for mark in snapshot.get("marks") or []]
            conv.page = 0
            return self.render(conv, ctx)
        if text == "1":
            # Withdrawn meanwhile (the web side found its money recorded): nothing to continue,
            # and a habitual next "1" must not start anything either. The person dials again.
            ctx.data.clear()
            conv.forget_from(0)
            conv.state, conv.ended = ctx.home, True
            done = N_("What you started last time is already done. Check your SMS.")
            return Reply(fit(t(ctx.lang, done)), end=True)
        if text in ("2", HOME):
            ctx.data.clear()
            conv.forget_from(0)
            return self._arrive(conv, ctx, ctx.home)
        conv.resume, conv.reason = snapshot, N_("Invalid choice.")
        return self.render(conv, ctx)

    def snapshot(self, conv: Conversation, ctx: Context) -> dict | None:
        """What a dropped session may resume from, or None when it may not: never at a PIN
        screen, never once over, never from home (there is nothing to resume), never from a
        screen that leads to a PIN without saying what would be continued."""
        if conv.ended or conv.state in (RESUME, ctx.home) or not conv.history:
            return None
        state = self.state(conv.state)
        if not isinstance(state, Screen) or state.secret:
            return None
        # Keys starting with "_" are for this session only (a PIN hash between two screens).
        snapshot = {
            "home": ctx.home,
            "state": conv.state,
            "history": conv.history,
            "marks": [_lasting(mark) for mark in conv.marks],
            "data": _lasting(ctx.data),
        }
        return snapshot if self._offer(ctx, snapshot) is not None else None

    def _offer(self, ctx: Context, snapshot: dict) -> str | None:
        """The question of the resume offer for ``snapshot``, or None when it is not offered."""
        screen = self.states.get(snapshot.get("state"))
        if not isinstance(screen, Screen) or screen.secret:
            return None
        if screen.resume is None:
            if snapshot["state"] in self._before_pin:
                return None
            return t(ctx.lang, "You did not finish last time. Continue where you stopped?")
        try:
            return t(ctx.lang, screen.resume, **(snapshot.get("data") or {}))
        except (KeyError, IndexError, ValueError):  # data from an older version of the flow
            return None

    def _leads_to_pin(self, name: str) -> bool:
        """Whether some input on screen ``name`` lands on a PIN screen (through any steps)."""
        screen = self.states[name]
        seen: set[str] = set()
        todo = [self.resolve(name, o.to) for o in screen.options]
        todo += [self.resolve(name, c.to) for c in screen.choices]
        if screen.pick:
            todo.append(self.resolve(name, screen.pick[0]))
        while todo:
            target = todo.pop()
            if target in seen:
                continue
            seen.add(target)
            state = self.states[target]
            if isinstance(state, Screen):
                if state.secret:
                    return True
                continue
            for exit_ in state.exits.values():
                todo.append(self.resolve(target, exit_.to if isinstance(exit_, Retry) else exit_))
        return False

    # -- showing ----------------------------------------------------------------------------

    def _numbered(self, screen: Screen, ctx: Context, current: str) -> list[tuple[int, str, str, Any]]:
        """(number, shown label, target state, picked value) for every line of the menu."""
        lines = [
            (i, t(ctx.lang, o.label), self.resolve(current, o.to), None)
            for i, o in enumerate(screen.options, 1)
        ]
        if screen.items and screen.pick:
            target = self.resolve(current, screen.pick[0])
            for key, label in ctx.data.get(screen.items) or []:
                lines.append((len(lines) + 1, gsm7.clean(str(label)), target, key))
        return lines

    def _head(self, ctx: Context, screen: Screen) -> str:
        return say(ctx.lang, screen.say, ctx.data)

    def _pages(self, ctx: Context, numbered, head: str) -> list[tuple[list[str], bool]]:
        """Split the menu lines into pages that fit one screen each: (lines, more after).
        The split never depends on a reason being shown, so "98" always follows on."""
        """Split the menu lines into pages that fit one screen each: (lines, more after)."""
        lines = [f"{n}. {label}" for n, label, _to, _v in numbered]
        more, back = t(ctx.lang, "98. More"), t(ctx.lang, "0. Back")
        pages: list[tuple[list[str], bool]] = []
        start = 0
        while True:
            first = not pages
            budget_head = head if first else ""
            taken: list[str] = []
            for i in range(start, len(lines)):
                trial = taken + [lines[i]]
                rest = i + 1 < len(lines)
                footer = ([more] if rest else []) + ([] if first else [back])
                if gsm7.fits("\n".join(filter(None, [budget_head, *trial, *footer]))) or not taken:
                    taken = trial
                else:
                    break
            start += len(taken)
            pages.append((taken, start < len(lines)))
            if start >= len(lines):
                return pages

    def render(self, conv: Conversation, ctx: Context) -> Reply:
        reply = self.compose(conv, ctx)
        return Reply(fit(reply.text), reply.end)

    def compose(self, conv: Conversation, ctx: Context) -> Reply:
        """The screen for where ``conv`` stands, before the last guard of the length rule."""
        if conv.state == RESUME:
            question = self._offer(ctx, conv.resume or {}) or t(
                ctx.lang, "You did not finish last time. Continue where you stopped?"
            )
            text = question + "\n" + t(ctx.lang, "1. Yes\n2. No, start again")
            if conv.reason:
                text = t(ctx.lang, conv.reason) + "\n" + text
            return Reply(text, end=False)
        screen = self.state(conv.state)
        if not isinstance(screen, Screen):
            raise FlowError(f"cannot show a step: {conv.state}")
        head = self._head(ctx, screen)
        reason = say(ctx.lang, conv.reason, ctx.data) if conv.reason else None
        numbered = self._numbered(screen, ctx, conv.state)
        if not numbered:
            return Reply("\n".join(filter(None, [reason, head])), end=screen.end)
        pages = self._pages(ctx, numbered, head)
        conv.page = min(conv.page, len(pages) - 1)
        lines, more = pages[conv.page]
        footer = ([t(ctx.lang, "98. More")] if more else []) + ([t(ctx.lang, "0. Back")] if conv.page else [])
        # Page one carries the heading; a reason goes first, and when heading, reason and lines
        # do not all fit, the reason stands in for the heading.
        tops = [[reason, head], [reason], [head]] if conv.page == 0 else [[reason], []]
        for top in tops:
            text = "\n".join(filter(None, [*top, *lines, *footer]))
            if gsm7.fits(text):
                break
        return Reply(text, end=screen.end)


def _lasting(data: dict) -> dict:
    """``data`` without the keys for this session only (starting with "_": a PIN hash)."""
    return {k: v for k, v in data.items() if not k.startswith("_")}


def fit(text: str) -> str:
    """The last guard of the 160-character rule: a screen that would not fit is cut (the
    screen-walking test makes sure no designed screen ever needs this)."""
    text = gsm7.clean(text)
    if gsm7.fits(text):
        return text
    log.error("screen over %d GSM-7 characters was cut", gsm7.SCREEN_LIMIT)
    return gsm7.shorten(text, gsm7.SCREEN_LIMIT)
