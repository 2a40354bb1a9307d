"""Safe extraction of user-supplied .zip archives into a private directory."""

from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from quant_core.errors import InputError

MAX_ENTRIES = 20_000
MAX_TOTAL_BYTES = 2 * 1024**3  # uncompressed
MAX_RATIO = 200  # uncompressed / compressed, per entry and overall


def extract_zip(archive: Path, dest: Path) -> Path:
    """Extracts `archive` into the new directory `dest` after checking every entry.

    Refuses absolute paths, `..`, links and special files, and caps entry count,
    total size and compression ratio, all before writing a byte.

    Raises:
        InputError: if the file is not a readable zip or breaks a rule.
    """
    name = archive.name
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            _check_entries(name, infos)
            dest.mkdir(parents=True, exist_ok=False)
            for info in infos:
                if not info.is_dir():
                    target = dest.joinpath(*PurePosixPath(info.filename).parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        _copy_capped(src, out, info.file_size, name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError,
            zlib.error) as err:
        raise InputError(f"{name}: not a readable .zip archive ({err})") from None
    return dest


def _check_entries(name: str, infos: list[zipfile.ZipInfo]) -> None:
    """Applies the path, type and size rules to every entry."""
    if len(infos) > MAX_ENTRIES:
        raise InputError(f"{name}: {len(infos)} entries, more than the limit of {MAX_ENTRIES}")
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        raise InputError(f"{name}: unpacks to {total / 1e6:.0f} MB, more than the {MAX_TOTAL_BYTES / 1e6:.0f} MB limit")
    if total > 1_000_000 and total > MAX_RATIO * max(packed, 1):
        raise InputError(f"{name}: compression ratio {total / max(packed, 1):.0f}:1 looks like a zip bomb")
    for info in infos:
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if info.filename.startswith(("/", "\\")) or ".." in path.parts or ":" in info.filename:
            raise InputError(f"{name}: entry {info.filename!r} points outside the archive")
        if info.flag_bits & 0x1:
            raise InputError(f"{name}: entry {info.filename!r} is encrypted; password-protected archives are "
                             "not supported")
        mode = info.external_attr >> 16
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise InputError(f"{name}: entry {info.filename!r} is a link or special file")


def _copy_capped(src, out, declared: int, name: str) -> None:
    """Copies at most the declared size (a lying header cannot inflate the output)."""
    written = 0
    while chunk := src.read(1 << 20):
        written += len(chunk)
        if written > declared:
            raise InputError(f"{name}: an entry is larger than its header says")
        out.write(chunk)
