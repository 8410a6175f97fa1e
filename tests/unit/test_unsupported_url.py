"""A URL offload cannot open is refused without showing its password."""

from __future__ import annotations

import pytest

from offload.backends import open_backend


@pytest.mark.parametrize("url", ["mysql://u:s3cr3tPW@h/db", "redis+unix://:s3cr3tPW@/x/redis.sock"])
def test_an_unsupported_url_is_refused_with_its_password_masked(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported offload URL") as caught:
        open_backend(url)
    assert "s3cr3tPW" not in str(caught.value) and "***" in str(caught.value)
