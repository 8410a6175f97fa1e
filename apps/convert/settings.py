"""What an operator may change, read once from the environment with the documented
defaults; every limit a person can hit is stated on the upload page."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise SystemExit(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class Limits:
    """Bounds on what one person may send and what one conversion may use."""

    max_files: int = 20
    max_file_bytes: int = 25 * MIB
    max_total_bytes: int = 100 * MIB
    #: What the members of an Office or OpenDocument file may expand to, all together.
    max_unpacked_bytes: int = 300 * MIB
    max_image_pixels: int = 60_000_000
    convert_timeout_s: int = 60
    convert_memory_bytes: int = 2048 * MIB
    #: Documents of one upload converted by one LibreOffice run (offload's micro-batching;
    #: 1 starts LibreOffice afresh for every file). See the README for the figures.
    batch_size: int = 8
    #: LibreOffice runs one worker process runs at once (the machine's cores by default).
    slots: int = max(1, os.cpu_count() or 1)
    #: What one client address may send in an hour (per web process).
    uploads_per_hour: int = 60
    mb_per_hour: int = 2000
    #: How soon a killed worker's conversions are taken up again (offload's lease).
    lease_s: int = 30
    #: How long archives and their links live.
    keep_s: int = 24 * 3600


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    limits: Limits
    #: "tonight": the off-peak window conversions may start in.
    night_window: str = "22:00-06:00"
    #: Refuse to convert without the sandbox unless an operator says otherwise.
    sandbox: str = "bwrap"
    #: Claims take people in turn (a fair queue) rather than first come, first served.
    fair: bool = False


def from_env() -> Settings:
    limits = Limits(
        max_files=_int("CONVERT_MAX_FILES", Limits.max_files),
        max_file_bytes=_int("CONVERT_MAX_FILE_MB", Limits.max_file_bytes // MIB) * MIB,
        max_total_bytes=_int("CONVERT_MAX_TOTAL_MB", Limits.max_total_bytes // MIB) * MIB,
        convert_timeout_s=_int("CONVERT_TIMEOUT_S", Limits.convert_timeout_s),
        convert_memory_bytes=_int("CONVERT_MEMORY_MB", Limits.convert_memory_bytes // MIB) * MIB,
        slots=_int("CONVERT_SLOTS", Limits.slots),
        batch_size=_int("CONVERT_BATCH", Limits.batch_size),
        lease_s=_int("CONVERT_LEASE_S", Limits.lease_s),
        uploads_per_hour=_int("CONVERT_UPLOADS_PER_HOUR", Limits.uploads_per_hour),
        mb_per_hour=_int("CONVERT_MB_PER_HOUR", Limits.mb_per_hour),
        keep_s=_int("CONVERT_KEEP_H", Limits.keep_s // 3600) * 3600,
    )
    sandbox = os.environ.get("CONVERT_SANDBOX", "bwrap")
    if sandbox not in ("bwrap", "none"):
        raise SystemExit(f"CONVERT_SANDBOX is bwrap or none, got {sandbox!r}")
    return Settings(
        data_dir=Path(os.environ.get("CONVERT_DATA_DIR") or "convert-data").resolve(),
        limits=limits,
        night_window=os.environ.get("CONVERT_NIGHT", "22:00-06:00"),
        sandbox=sandbox,
        fair=os.environ.get("CONVERT_FAIR", "0") == "1",
    )
