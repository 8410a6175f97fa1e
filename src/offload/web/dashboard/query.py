"""The jobs search as people type it into a form: empty fields are no filter, times are
UTC ``datetime-local`` values, and each mistake becomes a message, not a 500."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request

from offload.errors import InvalidQuery
from offload.states import JobState

FIELDS = ("state", "queue", "task", "owner", "batch", "text", "after", "before")
_MAX_FIELD_CHARS = 200


def _moment(name: str, raw: str) -> datetime:
    for pattern in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(raw, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise InvalidQuery(f"{name}: write a UTC time as 2026-12-03T14:30, got {raw!r:.40}")


@dataclass
class Search:
    """A jobs search from a form: what was typed (to show it again) and the filters."""

    typed: dict[str, str] = field(default_factory=dict)
    states: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, params: Any) -> Search:
        typed = {}
        for name in FIELDS:
            if name == "state":
                continue
            value = str(params.get(name, "")).strip()
            if len(value) > _MAX_FIELD_CHARS:
                raise InvalidQuery(f"{name} is limited to {_MAX_FIELD_CHARS} characters")
            if value:
                typed[name] = value
        states = [s for s in params.getlist("state") if s] if hasattr(params, "getlist") else []
        known = {s.value for s in JobState}
        for state in states:
            if state not in known:
                raise InvalidQuery(f"unknown state {state!r:.40}: use one of {', '.join(known)}")
        return cls(typed=typed, states=sorted(set(states)))

    @classmethod
    def of_request(cls, request: Request) -> Search:
        return cls.of(request.query_params)

    def filters(self, scope: str | None) -> dict[str, Any]:
        """Keyword filters for ``app.admin``; ``scope`` is the viewer's owner (None: all)."""
        out: dict[str, Any] = {k: v for k, v in self.typed.items() if k not in ("after", "before")}
        if self.states:
            out["state"] = self.states
        if "after" in self.typed:
            out["created_after"] = _moment("created after", self.typed["after"])
        if "before" in self.typed:
            out["created_before"] = _moment("created before", self.typed["before"])
        if scope is not None:
            if out.get("owner", scope) != scope:
                raise InvalidQuery("you can search your own jobs only")
            out["owner"] = scope
        return out

    @property
    def empty(self) -> bool:
        return not self.typed and not self.states

    def query(self, **more: str) -> str:
        """The search as a query string (to link a page, a bulk action, the next page)."""
        pairs = [("state", s) for s in self.states] + list(self.typed.items())
        pairs += [(k, v) for k, v in more.items() if v]
        return urlencode(pairs)

    def hidden(self) -> list[tuple[str, str]]:
        """The search as form fields (a bulk action's confirmation carries it)."""
        return [("state", s) for s in self.states] + list(self.typed.items())
