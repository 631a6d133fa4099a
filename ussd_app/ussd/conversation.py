"""Where one USSD session stands, as stored in Redis (``sessions.py``) between requests: the
screen, the screens ``0`` goes back through with the data each of them showed, the page of a
long list, the reason a screen is re-shown with, whether the session is over, and the snapshot
offered on the resume screen. Plain JSON; the engine (``engine.py``) moves it."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_HISTORY = 30  # screens "0" can go back through; older ones (and their data marks) are dropped


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
        # Keys for this hop only ("_": a PIN's hash between two entries) are never kept in a
        # mark: a finished PIN change would otherwise leave the user's live hash in Redis.
        self.marks.append({k: v for k, v in mark.items() if not k.startswith("_")})
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
