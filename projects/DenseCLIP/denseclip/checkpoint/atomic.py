"""Atomic file writes: a file is either its old complete version or its new complete version,
whatever happens while it is written (the process killed, the disk full).

The data goes to a temporary file in the same folder, which is flushed, fsync'ed and renamed
over the target (``os.replace`` is atomic within a file system); the folder is fsync'ed so that
the rename survives a power loss. On an error the temporary file is removed and the target is
left untouched. A process killed mid-write leaves only the temporary file
(``.NAME.<pid>.<random>.partial``), which nothing reads.
"""

import os
import uuid
from typing import IO

__all__ = ["AtomicWriter", "AtomicWritePathManager"]


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicWriter:
    """``with AtomicWriter(path, "wb") as f: f.write(...)``: ``path`` appears complete when the
    block ends without an error, and is left as it was otherwise. ``mode``: "w" or "wb"."""

    def __init__(self, path: str, mode: str = "wb"):
        if mode not in ("w", "wb"):
            raise ValueError(f"AtomicWriter: expected mode 'w' or 'wb', got {mode!r}")
        self.path = path
        folder, name = os.path.split(os.path.abspath(path))
        self._folder = folder
        self._temporary = os.path.join(
            folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
        )
        # O_EXCL: never clobber; 0o666 minus the umask: the permissions open() would give
        fd = os.open(self._temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self._file: IO = os.fdopen(fd, mode)

    def __enter__(self) -> IO:
        return self._file

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:
            self._discard()
            if isinstance(exc, OSError):
                raise self._error(exc) from exc
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temporary, self.path)
        except OSError as error:
            self._discard()
            raise self._error(error) from error
        _fsync_folder(self._folder)

    def _error(self, error: OSError) -> OSError:
        return type(error)(
            error.errno,
            f"could not write {self.path}: {error.strerror or error}; the partial file was "
            f"removed and {self.path} was left as it was",
        )

    def _discard(self) -> None:
        try:
            self._file.close()
        except OSError:  # flushing the rest fails the same way (e.g. the disk is still full)
            pass
        try:
            os.remove(self._temporary)
        except FileNotFoundError:
            pass


class AtomicWritePathManager:
    """An iopath ``PathManager`` whose ``open`` writes local files with :class:`AtomicWriter`
    (modes "w" and "wb"); everything else is the wrapped manager's."""

    def __init__(self, path_manager):
        self._path_manager = path_manager

    def open(self, path: str, mode: str = "r", **kwargs):
        if mode in ("w", "wb") and "://" not in path:
            return AtomicWriter(path, mode)
        return self._path_manager.open(path, mode, **kwargs)

    def __getattr__(self, name):
        return getattr(self._path_manager, name)
