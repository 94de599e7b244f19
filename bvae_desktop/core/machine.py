"""How much memory and disk this machine has to spare, so a file that would exhaust either is refused first.

Standard library only (no psutil): /proc/meminfo on Linux, GlobalMemoryStatusEx on Windows, the
physical memory size elsewhere (macOS compresses and swaps, so "free" says little there).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def available_memory_bytes() -> int | None:
    """Memory new allocations can get without swapping; None when this platform does not say."""
    if sys.platform.startswith("linux"):
        value = _meminfo_available()
        if value is not None:
            return value
    if sys.platform == "win32":
        return _windows_available()
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def free_disk_bytes(path: str | os.PathLike[str]) -> int | None:
    """Free bytes on the file system that holds `path` (or its nearest existing parent); None if unknown."""
    where = Path(path).absolute()
    while not where.exists() and where.parent != where:
        where = where.parent
    try:
        return int(shutil.disk_usage(where).free)
    except OSError:
        return None


def format_bytes(count: float) -> str:
    """1536 -> "1.5 KiB": sizes in messages a person reads."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1024
    return f"{count:,.1f} TiB"  # unreachable; keeps type checkers content


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _windows_available() -> int | None:
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [  # the layout of MEMORYSTATUSEX
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    try:
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return int(status.ullAvailPhys)
    except (AttributeError, OSError):
        return None
    return None
