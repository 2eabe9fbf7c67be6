"""Atomic writes and machine facts: the one place for each.

Every file or folder is written beside its target under a hidden temporary name and renamed in, so a
reader (or a re-run after a kill) sees the old content or the new one, never half of one.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside the target, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def replace_folder_atomically(target: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a new folder beside ``target``; then the old target is renamed away, the new
    folder renamed in, and the old one deleted.

    A kill while writing leaves the target as it was (plus a hidden ``.NAME.tmp-*`` folder); a kill between
    the two renames leaves the old content under a hidden ``.NAME.old-*`` name, never lost. Deciding whether
    the target may be replaced at all is the caller's job.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private (0700); the result is a folder like any other
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # ours, and incomplete
        raise
    old = None
    if target.exists() or target.is_symlink():
        # moved into a fresh hidden folder, whatever it is (folder, file or link): rmtree of that folder
        # then deletes a link itself, never what it points at
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        target.replace(old / target.name)
    tmp.replace(target)
    if old is not None:
        shutil.rmtree(old)
    return target


# --------------------------------------------------------------------------------------------- machine facts


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def cpu_has_native_bf16() -> bool:
    """bf16 matrix instructions in hardware: AVX512-BF16 or AMX on x86, the BF16 extension on Arm.

    oneDNN also runs bf16 on AVX-512 CPUs without them, by emulation, 2-4x slower than fp32 (measured on an
    Intel Xeon with avx512_vnni and no avx512_bf16), so "oneDNN supports bf16" is not the question to ask.
    """
    import torch

    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # Arm: oneDNN needs the BF16 extension


def machine() -> str:
    """What a measurement ran on; native bf16 matters, since it decides what precision `auto` picks."""
    import torch

    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return f"{platform.machine()} {cpu_name()}, {os.cpu_count()} cores, {bf16}, torch {torch.__version__}" + (
        f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    )
