"""Files vpcwatch trusts, and files it writes.

A configuration, a rule file (SQL that vpcwatch runs) or a blocklist that another user can
change is another user's way in: each is refused when others may write it. Files vpcwatch
writes for the user (a copied row) are written private and never through a link planted
where they go.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

MAX_TEXT_FILE = 64 << 20  # bytes: a configuration, rule file or blocklist larger is refused


def shared_write_problem(path: Path) -> str | None:
    """Why ``path`` may be changed by another user (with the command that fixes it), or None:
    it must be the user's own (or root's).

    Writable by its group counts only when the group is not the owner's private group (the
    group named after the user, with no other member, as ``useradd`` makes by default and a
    0002 umask leaves group-writable)."""
    info = path.stat()
    if info.st_uid not in (os.getuid(), 0):
        return f"owned by another user (uid {info.st_uid}), who can change it"
    if info.st_mode & stat.S_IWOTH:
        return f"writable by every user; run: chmod o-w {path}"
    if info.st_mode & stat.S_IWGRP and not _private_group(info.st_gid, info.st_uid):
        return f"writable by its group; run: chmod g-w {path}"
    return None


def _private_group(gid: int, uid: int) -> bool:
    try:
        group, user = grp.getgrgid(gid), pwd.getpwuid(uid)
    except KeyError:
        return False
    return user.pw_gid == gid and group.gr_name == user.pw_name and set(group.gr_mem) <= {
        user.pw_name}


def open_private(path: Path) -> BinaryIO:
    """``path`` opened for writing, mode 0600, emptied, refusing to write through what was
    planted there: a symbolic link or a hard link (in a shared directory, its target would
    be overwritten), a FIFO (its reader would get the text; without one, the open would
    block), a device, another user's file. Opened without emptying and without waiting,
    then checked, then emptied: the file checked is the file written."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
             | getattr(os, "O_CLOEXEC", 0))
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "is a symbolic link; not written through it",
                          str(path)) from None
        if exc.errno == errno.ENXIO:  # (a FIFO no one reads)
            raise OSError(errno.ENXIO, "is a FIFO; not written", str(path)) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != os.getuid():
            raise OSError(errno.EPERM, "is not a file of the user's own with one name (a hard "
                          "link, a FIFO, a device, another user's file); not written", str(path))
        os.set_blocking(fd, True)
        os.ftruncate(fd, 0)
        os.fchmod(fd, 0o600)  # (an existing file keeps its mode otherwise)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as ``open_private`` opens it."""
    with open_private(path) as out:
        out.write(text.encode("utf-8"))


def replace_private(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` whole or not at all: ``write`` fills a private temporary file beside
    it, renamed over it (a reader sees the old file or the new one, never half of one)."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open_private(temporary) as out:
        write(out)
    os.replace(temporary, path)


def read_small(path: Path, limit: int, follow_links: bool = False) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes, read without
    waiting and, unless ``follow_links`` (a file the user names: a configuration mounted
    by Kubernetes is a link), without following a link (OSError otherwise: a FIFO would
    be waited on for ever, ``/dev/zero`` read without end)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags if follow_links else flags | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise OSError(errno.EINVAL, f"is not a regular file of at most {limit} bytes",
                          str(path))
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # (it grew meanwhile)
        raise OSError(errno.EFBIG, f"holds more than {limit} bytes", str(path))
    return data


def own_directory(path: Path) -> os.stat_result:
    """``path``'s status when it is a directory of this user's, not a link to one (OSError
    otherwise: what is written into it, or removed from it, would be so where a link
    planted there points)."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(errno.EPERM, "is not a directory of the user's own (a link to one?); "
                      "vpcwatch writes nothing through it: remove it", str(path))
    return info


def read_text_file(path: Path, limit: int = MAX_TEXT_FILE) -> str:
    """A text file the user names (a configuration, a rule file, a blocklist): UTF-8, a
    byte order mark before it allowed (editors on Windows write one), read as
    ``read_small`` reads it, links followed (OSError, UnicodeDecodeError)."""
    return read_small(path, limit, follow_links=True).decode("utf-8").removeprefix("\ufeff")
