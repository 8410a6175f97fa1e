"""Arguments holding text JSON cannot carry are refused at the call site, with the culprit."""

from __future__ import annotations

import pytest

from offload import InvalidArguments, Offload
from offload.backends.base import QueryParams


def test_a_lone_surrogate_in_an_argument_is_refused_with_a_readable_message() -> None:
    app = Offload("memory://")

    @app.task()
    def convert(name: str, options: dict[str, str]) -> None: ...

    listed = "report-\udcff.txt"  # what os.listdir gives for a name that is not UTF-8
    with pytest.raises(InvalidArguments, match=r"not valid Unicode .*report-\\udcff"):
        convert.enqueue(listed, {})
    with pytest.raises(InvalidArguments, match="not valid Unicode"):
        convert.enqueue("ok.txt", {"k\udcff": "v"})
    with pytest.raises(InvalidArguments, match="not valid Unicode"):
        convert.enqueue_many([convert.s("ok.txt", {}), convert.s(listed, {})])
    assert app.backend.blocking.query(QueryParams()).jobs == []  # nothing half-stored
    app.close()


def test_a_lone_surrogate_in_a_signature_is_refused_too() -> None:
    app = Offload("memory://")

    @app.task()
    def collect(outcomes: list[object], *extra: object) -> int:
        return len(outcomes)

    with pytest.raises(InvalidArguments, match="not valid Unicode"):
        collect.s("\udcff", 1)
    app.close()
