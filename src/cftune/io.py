"""Output locations, atomic writes, one writer per folder, machine facts and durations: the one place for each.

Every command checks where it will write before it does any work (`check_output_file`,
`check_output_folder`). Every file or folder is written beside its target under a hidden temporary name and
renamed in, so a reader (or a re-run after a kill) sees the old content or the new one, never half of one.
A folder that a long job fills (a training run, a report) has one writer at a time (`FolderLock`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

from cftune.errors import DiskFullError, OutputPathError, RunBusyError

TEMP_MARK = ".cftune-tmp-"  # .{target name}.cftune-tmp-{pid}[.ids|.raw]: the name says whose and for what
TEMP_SUFFIXES = (".ids", ".raw")  # embed's side files
LOCK_NAME = ".cftune.lock"  # in a folder one process writes at a time (FolderLock)


def temp_path(target: Path, suffix: str = "") -> Path:
    """The hidden name beside ``target`` under which this process writes it before renaming it in."""
    assert suffix in ("", *TEMP_SUFFIXES), suffix
    return target.with_name(f".{target.name}{TEMP_MARK}{os.getpid()}{suffix}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # someone else's process, or no pid at all: keep its files
        return True
    return True


def remove_stale_temp_files(target: Path) -> list[Path]:
    """Delete what a killed cftune process left while writing ``target`` (its temp names, its pid gone).

    Only names `temp_path` makes for this very target match; a live process's files are kept.
    """
    target = Path(target)
    if os.name != "posix" or not target.parent.is_dir():  # os.kill(pid, 0) would terminate it on Windows
        return []
    suffixes = "|".join(re.escape(s) for s in TEMP_SUFFIXES)
    pattern = re.compile(re.escape(f".{target.name}{TEMP_MARK}") + rf"(\d+)({suffixes})?")
    removed = []
    for path in target.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if match and not _pid_alive(int(match[1])):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yields the temporary path to write ``path``'s content to; renamed onto ``path`` when the block ends
    without an error, deleted when it raises. Readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    tmp = temp_path(path)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def replace_folder_atomically(target: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a new folder beside ``target``; then the old target is renamed away, the new
    folder renamed in, and the old one deleted.

    A kill while writing leaves the target as it was, plus a hidden temp folder that the next write of the
    same target deletes; a kill between the two renames leaves the old content under a hidden
    ``.NAME.old-*`` name, never lost. Deciding whether the target may be replaced at all is the caller's job.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(target)
    tmp = temp_path(target)
    shutil.rmtree(tmp, ignore_errors=True)  # this process's own, from an attempt that failed
    tmp.mkdir()
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


# --------------------------------------------------------------------------------------------- output locations


def _nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else the closest of its parents that does (where a mkdir -p would start)."""
    while not (path.exists() or path.is_symlink()) and path != path.parent:
        path = path.parent
    return path


def _check_creatable(path: Path, what: str) -> None:
    """``path`` does not exist yet; its parents can be made and written to."""
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise OutputPathError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: folder {existing} is not writable")


def check_output_file(path: str | os.PathLike, what: str = "out") -> Path:
    """A file a command may write (replacing an earlier one): not a folder, in a folder that exists or can be
    made, and writable. Cheap: call it before any model loads."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"`{what}` {path}: is a folder; name the file to write")
    if path.exists():
        if not os.access(path.parent, os.W_OK | os.X_OK):  # written beside the target and renamed in
            raise OutputPathError(f"`{what}` {path}: folder {path.parent} is not writable")
    else:
        _check_creatable(path, what)
    return path


def check_output_folder(folder: str | os.PathLike, *, ours: Callable[[Path], bool], what: str = "out",
                        advice: str = "choose a new or empty folder") -> Path:
    """A folder a command may fill: new, empty, or one that cftune wrote for this purpose (``ours``, by the
    marker file it left there). Anything else holds someone's files, and is refused before any work."""
    folder = Path(folder)
    if not (folder.exists() or folder.is_symlink()):
        _check_creatable(folder, what)
        return folder
    if not folder.is_dir():
        raise OutputPathError(f"`{what}` {folder}: is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"`{what}` {folder}: folder is not writable")
    # cftune's own bookkeeping (a lock, a temp file of a killed write) does not make a folder someone else's
    entries = sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME and TEMP_MARK not in p.name)
    if entries and not ours(folder):
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise OutputPathError(f"`{what}` {folder}: holds files cftune did not write ({shown}); {advice}")
    return folder


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in blocks (weights files run to gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(2**22):
            digest.update(block)
    return digest.hexdigest()


def write_marker(folder: Path, name: str, content: dict) -> None:
    """The file that tells a later run that cftune wrote ``folder`` (see ``check_output_folder``)."""
    if not (folder / name).is_file():
        write_atomic(folder / name, json.dumps(content, indent=2) + "\n")


# --------------------------------------------------------------------------------------------- one writer


class FolderLock:
    """One writer per folder: an exclusive lock on ``FOLDER/.cftune.lock`` (``flock``), held while a job runs.

    The kernel drops the lock when its process ends, however it ends (kill -9 included), so a lock is never
    left stale; the file's content, the holder's pid and command, is only for the message. Where there is no
    ``flock`` (Windows), no lock is taken.
    """

    def __init__(self, folder: Path, what: str = "run folder"):
        self.path, self.what = Path(folder) / LOCK_NAME, what
        self.handle: typing.TextIO | None = None

    def __enter__(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self._take()
        if handle is None:
            return self
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} ({' '.join(sys.argv[:3])})\n")
        handle.flush()
        self.handle = handle
        return self

    def check_free(self) -> None:
        """RunBusyError now if a live process holds the folder (a cheap check before other checks)."""
        if self.path.is_file() and (handle := self._take()) is not None:
            handle.close()

    def _take(self) -> typing.TextIO | None:
        """The lock file, opened and locked by this process; None where there is no flock."""
        try:
            import fcntl
        except ImportError:
            return None
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open as long as the lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunBusyError(f"{self.path.parent}: this {self.what} is in use by {holder}; wait for it to end, "
                               "or choose another `out`") from None
        return handle

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the file releases the lock
            self.handle = None


# --------------------------------------------------------------------------------------------- disk full


def is_disk_full(err: BaseException) -> bool:
    """Whether an exception, or one it came from, is the disk filling up.

    torch's zip writer reports it without errno ("unexpected pos 8448 vs 8342", "file write failed"), so
    those messages count too."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(seen, RuntimeError) and ("unexpected pos" in str(seen) or "file write failed" in str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def disk_full_error(folder: Path, after: str) -> DiskFullError:
    free = shutil.disk_usage(_nearest_existing(folder)).free / 2**20
    return DiskFullError(f"{folder}: no space left on the disk while writing ({free:.0f} MiB free now); "
                         f"free some space, then {after}")


# --------------------------------------------------------------------------------------------- machine facts


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


# oneDNN's ISA limits (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16: with one of them, bf16 is emulated
ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI")


def cpu_has_native_bf16() -> bool:
    """bf16 matrix instructions in hardware: AVX512-BF16 or AMX on x86, the BF16 extension on Arm.

    oneDNN also runs bf16 on AVX-512 CPUs without them, by emulation, slower than fp32 (results/
    inference-speed/), so "oneDNN supports bf16" is not the question to ask.
    """
    import torch

    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        if os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper() in ONEDNN_ISAS_WITHOUT_BF16:
            return False  # the hardware has it, but oneDNN was told not to use it
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # Arm: oneDNN needs the BF16 extension


def machine() -> str:
    """What a measurement ran on; native bf16 matters, since it decides what precision `auto` picks."""
    import torch

    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return f"{platform.machine()} {cpu_name()}, {os.cpu_count()} cores, {bf16}, torch {torch.__version__}" + (
        f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    )


def format_duration(seconds: float) -> str:
    """How long something takes, in the unit a person would say it in: 45 s, 3.5 min, 1.2 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
