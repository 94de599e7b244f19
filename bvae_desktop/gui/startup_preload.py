"""Load torch's C++ core (libtorch_cpu) without holding the GIL, so the start-up window keeps repainting.

`import torch` loads the extension module torch._C, and CPython holds the GIL while the dynamic loader
maps it and the libraries it needs; libtorch_cpu alone took 0.4-0.9 s here, and the start-up window's
event loop froze that long (it needs the GIL to run its Python slots). ctypes releases the GIL around
every foreign call, so calling libc's dlopen through it loads libtorch_cpu first without the freeze;
torch._C then finds it loaded. libtorch_cpu uses no Python API (no Py* symbols), so loading it without
the GIL is safe. Only libtorch_cpu: a CUDA build's libraries are left to torch, which sets them up in its
own order. Linux only; any failure changes nothing (the import then loads the library as before).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from pathlib import Path

TORCH_CPU_LIBRARY = "libtorch_cpu.so"


def torch_cpu_library() -> Path | None:
    """Where torch's libtorch_cpu.so is, found without importing torch; None when it is not there."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "lib" / TORCH_CPU_LIBRARY
        if candidate.is_file():
            return candidate
    return None


def _libc_dlopen() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """libc's dlopen as a ctypes function (glibc < 2.34 keeps it in libdl.so.2)."""
    for library in (None, "libdl.so.2"):
        try:
            dlopen = ctypes.CDLL(library).dlopen
        except (OSError, AttributeError):
            continue
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        return dlopen
    return None


def preload_torch_cpu(platform: str = sys.platform) -> bool:
    """Load libtorch_cpu.so without the GIL, before `import torch`; True when it is now loaded."""
    if "torch" in sys.modules or not platform.startswith("linux"):
        return False
    library = torch_cpu_library()
    dlopen = _libc_dlopen() if library is not None else None
    if library is None or dlopen is None:
        return False
    return dlopen(os.fsencode(library), os.RTLD_NOW | os.RTLD_LOCAL) is not None
