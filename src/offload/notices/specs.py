"""What a job may ask to be told about, and when: checked when the job is made."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec

from offload.errors import ConfigurationError
from offload.states import JobState

#: When a notice goes: on success, on failure (dead) or on any final state.
ON: dict[str, tuple[JobState, ...]] = {
    "success": (JobState.SUCCEEDED,),
    "failure": (JobState.DEAD,),
    "end": (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED),
}
_PREFIX = "notify:"
MAX_URL_CHARS = 2000


class Webhook(msgspec.Struct, frozen=True, kw_only=True):
    """POST a signed JSON event to ``url`` when the job ends (``on``: success, failure
    or end). Its signing secret is the app's (``webhook_secrets``), never the job's."""

    url: str
    on: str = "end"

    def __post_init__(self) -> None:
        check_webhook_url(self.url)
        if self.on not in ON:
            raise ConfigurationError(f"a notice's on= is one of {', '.join(ON)}, got {self.on!r}")

    def to_builtins(self) -> dict[str, Any]:
        return {"webhook": self.url, "on": self.on}

    def as_follow_up(
        self, app: Any, index: int, batch: str | None = None
    ) -> tuple[str, Any, tuple[JobState, ...]]:
        """(option, signature, states) for ``task.options(notify=...)``; a batch's notice
        follows its callback, whatever its end, and says how the batch went."""
        return _follow_up(app, index, self, batch)


class Email(msgspec.Struct, frozen=True, kw_only=True):
    """Mail ``to`` when the job ends (``on``: success, failure or end), with a signed link
    to the job's page and files. The address is checked now."""

    to: str
    on: str = "end"

    def __post_init__(self) -> None:
        from offload.notices.mail import check_address

        msgspec.structs.force_setattr(self, "to", check_address(self.to))  # normalised
        if self.on not in ON:
            raise ConfigurationError(f"a notice's on= is one of {', '.join(ON)}, got {self.on!r}")

    def to_builtins(self) -> dict[str, Any]:
        return {"email": self.to, "on": self.on}

    def as_follow_up(
        self, app: Any, index: int, batch: str | None = None
    ) -> tuple[str, Any, tuple[JobState, ...]]:
        return _follow_up(app, index, self, batch)


def _follow_up(
    app: Any, index: int, notice: Webhook | Email, batch: str | None
) -> tuple[str, Any, tuple[JobState, ...]]:
    from offload.notices.task import NOTIFY_TASK

    asked = notice.to_builtins()
    if batch is not None:
        asked["batch"] = batch
    then = app.tasks[NOTIFY_TASK].s(notice=asked)  # the job's id comes first
    states = ON["end"] if batch is not None else ON[notice.on]
    return notice_option(index, notice), then, states


def check_webhook_url(url: str) -> str:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS or not url.isprintable():
        raise ConfigurationError(f"a webhook URL is printable text up to {MAX_URL_CHARS} chars")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"a webhook URL is http(s)://host/..., got {url!r:.100}")
    if parts.username or parts.password:
        raise ConfigurationError("a webhook URL must not carry a user or password")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ConfigurationError(f"webhook URL {url!r:.100}: {exc}") from None
    return url


def notice_option(index: int, notice: Webhook | Email) -> str:
    """The follow-up option a notice is stored under: one id per notice per job."""
    return f"{_PREFIX}{index}:{notice.on}"


def states_of_option(option: str) -> tuple[JobState, ...] | None:
    """The final states a ``notice_option`` fires on (None: not a notice's option)."""
    if not option.startswith(_PREFIX):
        return None
    return ON.get(option.rsplit(":", 1)[-1])
