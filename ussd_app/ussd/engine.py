"""The menu engine: runs flows declared as data, one newest input at a time.

A flow is a dict of named states. A ``Screen`` shows text (and maybe numbered options) and
waits for input; its transitions are guarded ``Choice``s tried in order, with ``otherwise``
as the fallback reason. A ``Step`` is work without a screen (look something up, check a PIN,
record a request): it returns an outcome name and ``exits`` say where each outcome leads.
Secret input (a PIN) is a tag on the screen: the engine hands it to the next steps in memory
for this one request and never writes it into the conversation.

The engine owns what every flow shares: ``0`` back, ``00`` home, ``98`` more on long lists,
re-showing a screen with a short reason after wrong input, and the 160-character budget.
It knows nothing about money, people or databases. Turning a screen into text (the message
filled in, pages, the length rule) is ``render.py``'s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..i18n import speaking, t
from . import gsm7
from .conversation import Conversation
from .render import fit, pages, say, screen_text

BACK, HOME, MORE = "0", "00", "98"
RESUME = "_resume"  # the engine's own screen: "continue where you left off?"
MAX_STEPS = 12  # a flow that chains more steps than this without a screen is a bug


def N_(message: str) -> str:
    """Marks a message id for extraction (``pybabel extract -k N_``); translated when shown."""
    return message


# The types ``copy.deepcopy`` hands back as they are (immutable, no parts to copy).
_ATOMS = frozenset({str, int, float, bool, type(None)})


def _copied(data: dict) -> dict:
    """``copy.deepcopy(data)``: a plain dict of str keys and str, number, bool or None values
    (a session's data is mostly that: choices, numbers, amounts, names) is copied as a new dict
    of the same objects, which is what deepcopy makes of it, without deepcopy's bookkeeping
    for each value (a memo, a dispatch: ~36 calls a menu hop); anything else is deepcopy's."""
    if type(data) is dict:
        for key, value in data.items():
            if type(key) is not str or type(value) not in _ATOMS:
                break
        else:
            return data.copy()
    return copy.deepcopy(data)


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


class Context:
    """What flows see of one request. ``data`` is kept between requests (in Redis), so it
    must never hold a secret; ``secret`` lives for this request only.

    ``user`` is whatever the web side has for this phone (opaque to the engine): given, or
    loaded by ``load_user`` the first time a flow asks, so a hop whose screens do not need it
    does not load it. ``phone`` is the caller's number in E.164 (a registered caller's is
    their row's); ``role``, ``account_id`` (their wallet) and ``tier`` are theirs too (None:
    not registered), known without the row, as is ``caller`` (what the web side knows of the
    caller without the row, opaque to the engine; None when it knows nothing more). A flow that
    changes the row asks the row afterwards: ``user_loaded`` says whether it is here.
    ``lock_user`` (optional) locks the caller's row without loading it (``lock_user_row``);
    what it read stays in ``locked`` (None: not locked that way)."""

    def __init__(
        self,
        phone: str,
        lang: str,
        home: str,
        data: dict | None = None,
        user: Any = None,
        secret: str | None = None,
        *,
        load_user: Callable[[], Any] | None = None,
        lock_user: Callable[[], Any] | None = None,
        role: str | None = None,
        account_id: int | None = None,
        tier: str | None = None,
        caller: Any = None,
    ):
        self.phone, self.lang, self.home, self.role = phone, lang, home, role
        self.account_id, self.tier, self.caller = account_id, tier, caller
        self.data = {} if data is None else data
        self.secret = secret
        self._user, self._load_user = user, load_user
        self._lock_user, self.locked = lock_user, None

    @property
    def user(self) -> Any:
        if self._load_user is not None:
            self._user, self._load_user = self._load_user(), None
        return self._user

    @user.setter
    def user(self, value: Any) -> None:
        self._user, self._load_user = value, None

    def load_user_locked(self) -> bool:
        """Load ``user`` with its row locked for this transaction (FOR UPDATE, read fresh) if
        no flow has loaded it yet; whether it did. A row loaded before is locked by whoever
        asked (``pin_guard.check_pin`` refreshes it FOR UPDATE)."""
        if self._load_user is None:
            return False
        self._user, self._load_user = self._load_user(for_update=True), None
        return self._user is not None

    def lock_user_row(self) -> Any:
        """Lock the caller's row for this transaction (FOR UPDATE) without loading it: what the
        web side read with the lock (opaque to the engine), kept in ``locked``; ``user`` is still
        loaded only if a flow asks (the row is this transaction's then: read as it is). None when
        it cannot (no ``lock_user``, the row loaded already, the number moved): then
        ``load_user_locked``."""
        if self._load_user is None or self._lock_user is None:
            return None
        self.locked = self._lock_user()
        return self.locked

    @property
    def user_loaded(self) -> bool:
        """Whether ``user`` is here (given, or loaded by a flow in this request)."""
        return self._load_user is None

    def __repr__(self) -> str:  # never the secret
        return f"Context(phone={self.phone!r}, lang={self.lang!r}, home={self.home!r})"


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
        # (state, the language ``t`` speaks): that screen's option lines (``_numbered``).
        self._option_lines: dict[tuple[str, str], tuple[tuple[int, str, str, Any], ...]] = {}
        # States are addressed as "flow.state"; inside a flow a bare name means the same flow.
        self.states: dict[str, State] = {}
        for flow, states in flows.items():
            for name, state in states.items():
                self.states[f"{flow}.{name}"] = state
        # Screens where some input can only end the session (a confirm screen's Cancel, a
        # choice carried out at once): a shortcut's walk stops on them (``walk``).
        self._decisions = {
            name
            for name, state in self.states.items()
            if isinstance(state, Screen) and any(self._ends_only(t) for t in self._targets(name))
        }
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
                    ctx.data.update(_copied(mark))
                    ctx.data.update(seen)
                conv.page = 0
            return self.render(conv, ctx)
        # The data as this screen shows it, before its input changes anything: where "0" from
        # the next screen comes back to.
        mark = _copied(ctx.data)
        screen = self.state(conv.state)
        if not isinstance(screen, Screen):
            raise FlowError(f"conversation parked on a step: {conv.state}")
        if text == MORE and self._more(conv, ctx, screen):
            conv.page += 1
            return self.render(conv, ctx)
        match = self._match(conv, ctx, screen, text)
        if match is not None:
            target, key, value = match
            if screen.secret:
                ctx.secret = value
            elif key is not None:
                ctx.data[key] = value
            return self._arrive(conv, ctx, target, mark=mark)
        conv.reason = screen.otherwise
        return self.render(conv, ctx)

    def _more(self, conv: Conversation, ctx: Context, screen: Screen) -> bool:
        """Whether the screen shown has a next page ("98" then turns it)."""
        numbered = self._numbered(screen, ctx, conv.state)
        split = pages(ctx.lang, numbered, say(ctx.lang, screen.say, ctx.data)) if numbered else []
        return bool(split and split[min(conv.page, len(split) - 1)][1])

    def _match(
        self, conv: Conversation, ctx: Context, screen: Screen, text: str
    ) -> tuple[str, str | None, Any] | None:
        """What ``text`` picks on ``screen``, applied or not: (the state it leads to, the data key
        its value is kept under or None, the value), or None when it matches nothing. Only the
        guards run (pure: text in, value out), so asking changes nothing."""
        numbered = self._numbered(screen, ctx, conv.state)
        if numbered and text.isascii() and text.isdigit() and len(text) <= 3:
            for number, _label, target, value in numbered:
                if int(text) == number:
                    key = screen.pick[1] if value is not None and screen.pick else None
                    return target, key, value
        for choice in screen.choices:
            value = choice.guard(text)
            if value is not None:
                return self.resolve(conv.state, choice.to), None if screen.secret else choice.save, value
        return None

    # -- a shortcut: inputs dialled with the service code, e.g. *384*7*1*0711000002*500# ---------

    def walk(self, conv: Conversation, ctx: Context, inputs: list[str]) -> tuple[Reply, int]:
        """Apply dialled ``inputs`` one by one, as if typed, from where ``conv`` stands (home,
        just begun), and show the first screen that still needs the person: (that screen, how
        many inputs were applied). The rest is dropped, never applied, kept or shown.

        It stops, whatever is left, on a screen (``stops_at``) that is a PIN screen, an end, a
        list of items (what it holds is the data's, unseen by whoever wrote the dial string) or
        one where an input ends the session (a confirm screen's Cancel: the confirm screen is
        always shown); on a screen re-shown with a reason (a wrong input, a refusal); and
        before an input that would lead to a PIN screen: no walk lands on one, so a PIN in the
        dial string is never taken as one, and the PIN is asked on a screen the person saw
        coming. ``0``, ``00`` and ``98`` do what they do when typed."""
        applied = 0
        for text in inputs:
            if self.stops_at(conv):
                break
            if text not in (BACK, HOME):
                screen = self.state(conv.state)
                turn = text == MORE and self._more(conv, ctx, screen)
                match = None if turn else self._match(conv, ctx, screen, text)
                if match is not None and self._to_pin(match[0]):
                    break
            self.handle(conv, ctx, text)
            applied += 1
        return self.render(conv, ctx), applied

    def stops_at(self, conv: Conversation) -> bool:
        """Whether a walk stops where ``conv`` stands, before any further input (see ``walk``)."""
        if conv.ended or conv.reason is not None or conv.state == RESUME:
            return True
        screen = self.state(conv.state)
        return screen.secret or screen.end or screen.items is not None or conv.state in self._decisions

    def _landings(self, target: str) -> set[str]:
        """The screens ``target`` can land on: itself if a screen, else through its steps' exits."""
        seen: set[str] = set()
        found: set[str] = set()
        todo = [target]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            state = self.states[name]
            if isinstance(state, Screen):
                found.add(name)
                continue
            for exit_ in state.exits.values():
                todo.append(self.resolve(name, exit_.to if isinstance(exit_, Retry) else exit_))
        return found

    def _to_pin(self, target: str) -> bool:
        return any(self.states[name].secret for name in self._landings(target))

    def _ends_only(self, target: str) -> bool:
        return all(self.states[name].end for name in self._landings(target))

    def _targets(self, name: str) -> list[str]:
        screen = self.states[name]
        targets = [self.resolve(name, o.to) for o in screen.options]
        targets += [self.resolve(name, c.to) for c in screen.choices]
        if screen.pick:
            targets.append(self.resolve(name, screen.pick[0]))
        return targets

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
        return any(self._to_pin(target) for target in self._targets(name))

    # -- showing ----------------------------------------------------------------------------

    def _numbered(self, screen: Screen, ctx: Context, current: str) -> list[tuple[int, str, str, Any]]:
        """(number, shown label, target state, picked value) for every line of the menu."""
        if not screen.options:
            lines = []
        else:
            # A screen's option lines are the same every time it is shown in one language
            # (the labels translated, the targets resolved): made once each (``i18n.speaking``
            # names the words ``t`` gives), where a menu hop made them twice.
            key = (current, speaking(ctx.lang))
            options = self._option_lines.get(key)
            if options is None:
                options = self._option_lines[key] = tuple(
                    (i, t(ctx.lang, o.label), self.resolve(current, o.to), None)
                    for i, o in enumerate(screen.options, 1)
                )
            lines = list(options)
        if screen.items and screen.pick:
            target = self.resolve(current, screen.pick[0])
            for key, label in ctx.data.get(screen.items) or []:
                lines.append((len(lines) + 1, gsm7.clean(str(label)), target, key))
        return lines

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
        head = say(ctx.lang, screen.say, ctx.data)
        reason = say(ctx.lang, conv.reason, ctx.data) if conv.reason else None
        numbered = self._numbered(screen, ctx, conv.state)
        text, conv.page = screen_text(ctx.lang, head, reason, numbered, conv.page)
        return Reply(text, end=screen.end)


def _lasting(data: dict) -> dict:
    """``data`` without the keys for this session only (starting with "_": a PIN hash)."""
    return {k: v for k, v in data.items() if not k.startswith("_")}
