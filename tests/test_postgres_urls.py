"""PostgreSQL URLs: every form libpq accepts, the socket forms on the test cluster, and
passwords that never show."""

from __future__ import annotations

import psycopg
import pytest

from offload import Offload
from offload.backends.postgres import parse_postgres_url
from servers import PostgresServer


def test_every_url_form_libpq_accepts_is_accepted() -> None:
    for url in (
        "postgresql:///mydb",
        "postgresql:///mydb?host=/var/run/postgresql",
        "postgresql://%2Fvar%2Frun%2Fpostgresql/mydb",
        "postgresql://u:secret@h1:5432,h2:5433/db?target_session_attrs=read-write",
        "postgres://u@[::1]:5/db?schema=jobs&sslmode=disable",
        "postgresql://",
    ):
        config = parse_postgres_url(url)
        psycopg.conninfo.conninfo_to_dict(config.conninfo)  # libpq's parser takes it
    config = parse_postgres_url("postgresql:///mydb?host=/var/run/postgresql&schema=jobs")
    assert config.schema == "jobs" and "schema" not in config.conninfo
    parsed = psycopg.conninfo.conninfo_to_dict(config.conninfo)
    assert parsed["dbname"] == "mydb" and parsed["host"] == "/var/run/postgresql"


def test_a_password_never_shows(postgres_server: PostgresServer) -> None:
    app = Offload("postgresql://u:s3cret@127.0.0.1:1/db?password=other&schema=x")
    assert "s3cret" not in app.display_url and "other" not in app.display_url
    assert "s3cret" not in repr(app)
    with pytest.raises(ValueError) as caught:
        parse_postgres_url("postgresql://u:s3cret@h/db?schema=bad;drop")
    assert "s3cret" not in str(caught.value)


def test_socket_urls_connect_to_the_cluster(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = postgres_server.create_database()
    sock, port = postgres_server.root, postgres_server.port
    urls = [
        f"postgresql:///{database}?host={sock}&port={port}&user=postgres",
        f"postgresql://postgres@/{database}?host={sock}&port={port}",
        f"postgresql://postgres@{sock.replace('/', '%2F')}:{port}/{database}",
    ]
    for url in urls:
        app = Offload(url)
        assert app.backend.blocking.stats() == [], url
        app.close()
    monkeypatch.setenv("PGHOST", sock)
    monkeypatch.setenv("PGPORT", str(port))
    monkeypatch.setenv("PGUSER", "postgres")
    app = Offload(f"postgresql:///{database}")
    assert app.backend.blocking.stats() == []
    app.close()


def test_the_deadline_option_and_libpq_settings_the_url_gives_win() -> None:
    from offload.backends.postgres_sync import _connection_kwargs

    assert parse_postgres_url("postgresql:///db").timeout_s == 30.0
    config = parse_postgres_url("postgresql:///db?timeout_s=2.5&connect_timeout=9")
    assert config.timeout_s == 2.5 and "timeout_s" not in config.conninfo
    kwargs = _connection_kwargs(config)
    assert "connect_timeout" not in kwargs  # the URL's own reaches libpq untouched
    assert kwargs["tcp_user_timeout"] == 2500 and kwargs["keepalives"] == 1
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match="timeout_s"):
            parse_postgres_url(f"postgresql:///db?timeout_s={bad}")
