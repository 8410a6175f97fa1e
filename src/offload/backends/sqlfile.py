"""Named SQL statements kept in resource files (``-- name: x`` starts each one)."""

from __future__ import annotations

from importlib import resources


def read_sql(package: str, path: str) -> str:
    return (resources.files(package) / path).read_text()


def load_migrations(package: str, folder: str) -> list[tuple[int, str]]:
    """The ``NNNN_name.sql`` scripts of ``folder`` in order, as (version, sql)."""
    scripts = [
        (int(entry.name.split("_", 1)[0]), entry.read_text())
        for entry in (resources.files(package) / folder).iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(scripts)


def load_queries(package: str, filename: str) -> dict[str, str]:
    text = (resources.files(package) / filename).read_text()
    queries: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("-- name:"):
            if name:
                queries[name] = "\n".join(lines).strip()
            name, lines = line.removeprefix("-- name:").strip(), []
        elif name and not line.startswith("--"):
            lines.append(line)
    if name:
        queries[name] = "\n".join(lines).strip()
    return queries
