"""A job as people see it: secret arguments hidden, in the messages a task wrote too."""

from __future__ import annotations

import msgspec

from offload import Offload
from offload.present import REDACTED, job_dict
from offload.records import Attempt, AttemptOutcome, ErrorInfo, JobRecord
from offload.states import JobState


def _record(task: str, args: list[object], kwargs: dict[str, object]) -> JobRecord:
    boom = ErrorInfo(type="AuthError", message="key sk-live-0042 refused for bob",
                     traceback="Traceback ...\nAuthError: key sk-live-0042 refused")  # fmt: skip
    return JobRecord(
        id="j1", task=task, queue="default", state=JobState.DEAD,
        payload=msgspec.json.encode([args, kwargs]), error=boom,
        progress_message="calling with sk-live-0042",
        attempts=[Attempt(number=1, outcome=AttemptOutcome.FAILED, error=boom)],
    )  # fmt: skip


def test_secret_values_are_hidden_wherever_the_task_repeated_them() -> None:
    app = Offload("memory://")

    @app.task(secret=("api_key",))
    def call(user: str, api_key: str) -> None: ...

    shown = job_dict(_record(call.name, ["bob", "sk-live-0042"], {}), task=call)
    assert shown["args"] == ["bob", REDACTED]
    assert "sk-live-0042" not in msgspec.json.encode(shown).decode()
    assert shown["error"]["message"] == f"key {REDACTED} refused for bob"  # bob is not secret
    assert shown["progress_message"] == f"calling with {REDACTED}"
    by_name = job_dict(_record(call.name, ["bob"], {"api_key": "sk-live-0042"}), task=call)
    assert "sk-live-0042" not in msgspec.json.encode(by_name).decode()


def test_without_secrets_messages_are_untouched() -> None:
    app = Offload("memory://")

    @app.task
    def plain(user: str, api_key: str) -> None: ...

    shown = job_dict(_record(plain.name, ["bob", "sk-live-0042"], {}), task=plain)
    assert shown["error"]["message"] == "key sk-live-0042 refused for bob"
