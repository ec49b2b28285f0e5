"""The state directory: created private, owned by one process at a time through a lock file."""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import stat
import sys
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

LOCK_NAME = "vpcwatch.lock"


class StateDirError(Exception):
    """The state directory is unsafe, unusable, or owned by another process."""


class StateDirRead(StateDirError):
    """Readers alone hold the state directory (``alerts`` or ``query`` started while no
    collector ran, which read the store itself): a writer may wait for them."""


class StateDirBusy(StateDirError):
    """Another process holds the state directory's lock; ``owner`` says which."""

    def __init__(self, message: str, owner: str):
        super().__init__(message)
        self.owner = owner


def prepare(path: Path) -> Path:
    """Create ``path`` 0700 if needed, then ``make_private``."""
    if path.is_symlink():
        raise StateDirError(f"{path}: the state directory is a symlink; give its real path")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateDirError(f"{path}: cannot create the state directory: {exc.strerror}") from None
    return make_private(path)


def make_private(path: Path) -> Path:
    """Refuse a state directory that is a symlink, not ours, or writable by others; one that
    others can read or enter (an existing 0755 directory) is made 0700, with a warning: the
    store and its segments hold every flow and event. Readers check too."""
    try:
        info = path.lstat()
    except OSError as exc:
        raise StateDirError(f"{path}: cannot use the state directory: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise StateDirError(f"{path}: the state directory is a symlink; give its real path")
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirError(f"{path}: the state directory is not a directory")
    if info.st_uid != os.getuid():
        raise StateDirError(f"{path}: the state directory belongs to another user")
    if info.st_mode & 0o022:
        raise StateDirError(f"{path}: writable by other users; run: chmod go-w {path}")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
        log.warning("%s: the state directory was readable by other users; made it private "
                    "(0700)", path)
    _refuse_links(path)
    return path


def _refuse_links(path: Path) -> None:
    """vpcwatch never makes a symbolic link in the state directory: one there was planted,
    to have the lock, the store, segments or spill files written where it points. Nor a
    hard link: the files at its top (the lock, the store, its log) are written in place,
    and another name of one is another file written (found by an adversarial test: the
    lock's owner was written into a file linked there)."""
    try:
        with os.scandir(path) as entries:
            links = sorted((entry.name, entry.is_symlink()) for entry in entries
                           if entry.is_symlink() or _hard_linked(entry))
    except OSError as exc:
        raise StateDirError(f"{path}: cannot use the state directory: {exc.strerror}") from None
    if links and links[0][1]:
        raise StateDirError(f"{path / links[0][0]}: a symbolic link in the state directory "
                            "(vpcwatch never makes one, and writes nothing through one); "
                            "remove it")
    if links:
        raise StateDirError(f"{path / links[0][0]}: a file of the state directory with another "
                            "name elsewhere (a hard link: vpcwatch writes it in place, and "
                            "would write that other file too; a backup made with cp -al?); "
                            "copy it instead, or remove it")


def _hard_linked(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file(follow_symlinks=False) and entry.stat(
            follow_symlinks=False).st_nlink > 1
    except FileNotFoundError:  # (gone since it was listed: a WAL a checkpoint removed)
        return False


class StateLock:
    """An exclusive (writer) or shared (reader) lock on a state directory.

    The writer writes who it is into the lock file, so that a second process can say who
    owns the directory instead of failing with a database error.
    """

    def __init__(self, state_dir: Path, exclusive: bool = True):
        self.path = state_dir / LOCK_NAME
        self.exclusive = exclusive
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        try:  # (never through a link: it is written)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StateDirError(f"{self.path}: cannot open the lock file: {exc.strerror}"
                                ) from None
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                readers = self.exclusive and _only_read(self.path)
                owner = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
            finally:
                os.close(fd)
            owner = owner or "another process"
            if readers:  # (what the file says is the last writer's: it is gone)
                raise StateDirRead(f"{self.path.parent}: the state directory is being read by "
                                   "vpcwatch commands started while no collector ran (alerts, "
                                   "query)") from None
            verb = "is in use by" if self.exclusive else "is being written by"
            raise StateDirBusy(
                f"{self.path.parent}: the state directory {verb} {owner}; stop it or use "
                "another state_dir", owner
            ) from None
        if self.exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, owner_text(os.getpid(), socket.gethostname(), _command()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def collector_owner(state_dir: Path) -> str | None:
    """Who holds the state directory for writing (pid, host, command), or None: the
    collector stopped (or was killed: the kernel dropped its lock)."""
    try:
        StateLock(state_dir, exclusive=False).acquire().release()
    except StateDirBusy as busy:
        return busy.owner
    return None


def owner_command(owner: str) -> str:
    """The command ``owner_text`` wrote ("vpcwatch collect"), or '' for anything else."""
    head, _, command = owner.partition(" (")
    return command[:-1] if owner_pid(head) and command.endswith(")") else ""


def _only_read(path: Path) -> bool:
    """Is the lock file ``path`` held by readers alone (a shared lock is granted)?"""
    other = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(other)  # (its lock goes with it)
    return True


_name: str | None = None  # (name_process)


def name_process(name: str | None) -> None:
    """What the lock file calls this process (its command line's program and command; the
    default, the program and its first argument, was "vpcwatch -v" for the service)."""
    global _name
    _name = name


def _command() -> str:
    return _name or " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:2]))


def owner_text(pid: int, host: str, command: str) -> str:
    """What the lock file says of its writer (StateDirBusy.owner): read by ``owner_pid``."""
    return f"pid {pid} on {host} ({command})"


def owner_pid(owner: str | None) -> tuple[int, str] | None:
    """The pid and host that ``owner_text`` wrote, or None for anything else."""
    words = (owner or "").split()
    if len(words) > 3 and words[0] == "pid" and words[1].isdigit() and words[2] == "on":
        return int(words[1]), words[3]
    return None
