"""Reading checkpoint files without running code they carry.

A checkpoint is a pickle, and unpickling calls whatever the file names (``os.system``,
``open``...). Every file a user names is read here, by what it holds, never by plain pickle:

- ``.pth`` / ``.pt`` (:func:`load_torch_file`): ``torch.load(weights_only=True)``, which builds
  only tensors, Python containers, numbers and strings, plus :data:`NUMPY_GLOBALS`;
- ``.pkl`` (:func:`load_pickle_file`; detectron2 model zoo, Caffe2 / Detectron1 ``blobs``):
  a restricted unpickler that builds only Python's containers, numbers and strings, and
  :data:`PICKLE_GLOBALS` (the numpy objects, OrderedDict, Python's other data types);
- TorchScript archives (CLIP releases) go through ``torch.jit.load`` only (:mod:`.clip`).

A file that would build anything else is refused (:class:`UntrustedCheckpointError`) before
that object exists. A user who trusts such a file opts in with the environment variable
``DENSECLIP_TRUST_CHECKPOINTS=1`` (:func:`checkpoints_trusted`): it is then read with
unrestricted pickle.
"""

import codecs
import collections
import logging
import os
import pickle
import pickletools
import re
import zipfile
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core.numeric import _frombuffer

__all__ = [
    "NUMPY_GLOBALS",
    "PICKLE_GLOBALS",
    "TRUST_VARIABLE",
    "UntrustedCheckpointError",
    "checkpoints_trusted",
    "load_pickle_file",
    "load_torch_file",
]

logger = logging.getLogger(__name__)

#: The environment variable that makes checkpoint files be read with unrestricted pickle.
TRUST_VARIABLE = "DENSECLIP_TRUST_CHECKPOINTS"


def checkpoints_trusted() -> bool:
    """Whether the user trusts every checkpoint file: ``DENSECLIP_TRUST_CHECKPOINTS=1``."""
    return os.environ.get(TRUST_VARIABLE) == "1"


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint file whose unpickling would build an object no checkpoint format holds.

    Attributes:
        path: the file. names: the objects it names (``module.name``).
    """

    def __init__(self, path: str, names: List[str]):
        self.path, self.names = path, names
        super().__init__(
            f"{path}: refused to load: unpickling it would create {', '.join(names)}; a "
            "checkpoint holds only tensors, Python containers, numbers and strings, and numpy "
            "arrays and scalars, and loading anything else can run code the file carries. If "
            f"you trust the file and where it came from, set {TRUST_VARIABLE}=1 to load it with "
            "unrestricted pickle"
        )


# the dtype classes of numeric and boolean numpy values (numpy >= 1.25 has one class per dtype)
_NUMERIC_DTYPE_CLASSES = {
    type(np.dtype(code)) for code in np.typecodes["AllInteger"] + np.typecodes["AllFloat"] + "?"
}

#: The numpy objects checkpoints hold: numeric arrays and scalars, e.g. detectron2 / Caffe2
#: ``.pkl`` weights, or an mmcv evaluation hook's ``meta['hook_msgs']['best_score']`` in the
#: official releases (pickle protocol 5 stores arrays by ``_frombuffer``). Each entry is (the
#: object, the name a pickle stores); numpy 1.x writes ``numpy.core.*``, numpy 2
#: ``numpy._core.*``.
NUMPY_GLOBALS: Tuple[Tuple[Callable, str], ...] = (
    tuple(
        (obj, f"numpy.{core}.{name}")
        for core in ("core", "_core")
        for obj, name in (
            (_multiarray.scalar, "multiarray.scalar"),
            (_multiarray._reconstruct, "multiarray._reconstruct"),
            (_frombuffer, "numeric._frombuffer"),
        )
    )
    + ((np.dtype, "numpy.dtype"), (np.ndarray, "numpy.ndarray"))
    + tuple((cls, f"{cls.__module__}.{cls.__qualname__}") for cls in _NUMERIC_DTYPE_CLASSES)
)

#: Python's data types that pickle protocols 0-2 store by name (``__builtin__`` is how Python
#: 3 writes ``builtins`` there, for Python 2); ``_codecs.encode`` is how Python 3 stores
#: ``bytes`` there (e.g. the data of an array).
_BUILTIN_DATA_TYPES = (bytes, bytearray, complex, set, frozenset)

#: Every object a ``.pkl`` checkpoint may name, by the name its pickle stores: the numpy ones,
#: Python's data types, OrderedDict.
PICKLE_GLOBALS: Dict[str, Callable] = {
    **{name: obj for obj, name in NUMPY_GLOBALS},
    **{
        f"{module}.{t.__name__}": t
        for module in ("builtins", "__builtin__")
        for t in _BUILTIN_DATA_TYPES
    },
    "_codecs.encode": codecs.encode,
    "collections.OrderedDict": collections.OrderedDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only :data:`PICKLE_GLOBALS` besides Python's own containers,
    numbers and strings; ``latin1`` decodes Python 2 strings, as detectron2 reads ``.pkl``."""

    def __init__(self, file, path: str):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return PICKLE_GLOBALS[f"{module}.{name}"]
        except KeyError:
            raise UntrustedCheckpointError(self._path, [f"{module}.{name}"]) from None


def _warn_trusted(path: str) -> None:
    logger.warning(f"Loading {path} with unrestricted pickle ({TRUST_VARIABLE}=1)")


def load_pickle_file(path: str) -> Any:
    """The content of a plain pickle file (a ``.pkl`` checkpoint of the detectron2 or Caffe2
    model zoo), unpickled by the restricted unpickler.

    Raises:
        UntrustedCheckpointError: the file names an object outside :data:`PICKLE_GLOBALS`.
    """
    with open(path, "rb") as f:
        if checkpoints_trusted():
            _warn_trusted(path)
            return pickle.load(f, encoding="latin1")
        try:
            return _RestrictedUnpickler(f, path).load()
        except UntrustedCheckpointError as refusal:
            refused = _refused_in_pickle(path) or refusal.names
        raise UntrustedCheckpointError(path, refused)


def load_torch_file(path: str) -> Any:
    """The content of a ``torch.save`` file on the CPU, loaded ``weights_only`` with
    :data:`NUMPY_GLOBALS` allowed.

    Raises:
        UntrustedCheckpointError: the file names another object.
        pickle.UnpicklingError, RuntimeError, EOFError: not a readable torch file (torch's
            errors, e.g. a truncated file).
    """
    if checkpoints_trusted():
        _warn_trusted(path)
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(list(NUMPY_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        names = _refused_names(path, error)
        if names:
            raise UntrustedCheckpointError(path, names) from None
        raise


# how torch's weights_only unpickler names what it refused (a global; a type it would build)
_REFUSED_PATTERNS = (r"GLOBAL (\S+) was not an allowed global", r"but got <class '([^']+)'>")


def _refused_names(path: str, error: Exception) -> List[str]:
    """The objects outside the allowlist that ``path`` names, or [] when ``error`` is not a
    refusal (a damaged file): from the archive's pickle (torch's zip format), torch's message
    (its legacy format), or the file read as one pickle (a plain pickle, which torch does not
    read)."""
    names = {m for p in _REFUSED_PATTERNS for m in re.findall(p, str(error))}
    if zipfile.is_zipfile(path):
        allowed = {name for _, name in NUMPY_GLOBALS}
        try:
            names |= set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - allowed
        except (ValueError, RuntimeError):  # not a torch.save archive
            pass
    elif not names:
        names = set(_refused_in_pickle(path))
    return sorted(names)


def _refused_in_pickle(path: str) -> List[str]:
    """The objects outside :data:`PICKLE_GLOBALS` that the pickle at the start of ``path``
    names, in order, read by ``pickletools`` (nothing is built); [] if it is no pickle."""
    try:
        with open(path, "rb") as f:
            names = _pickle_globals(f)
    except Exception:  # not a pickle: nothing is named
        return []
    return [name for name in dict.fromkeys(names) if name not in PICKLE_GLOBALS]


_STRING_OPCODES = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
}


def _pickle_globals(stream: IO[bytes]) -> List[str]:
    """``module.name`` of each object a pickle names (opcodes GLOBAL, INST, STACK_GLOBAL).

    STACK_GLOBAL takes the two strings on top of the stack, pushed just before it, either
    literally or from the memo: the values of the last two pushes and the memoised strings are
    followed, every other value is None.
    """
    names: List[str] = []
    top: List[Optional[str]] = [None, None]
    memo: Dict[int, Optional[str]] = {}
    for opcode, arg, _ in pickletools.genops(stream):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            names.append(arg.replace(" ", "."))
        elif name == "STACK_GLOBAL" and None not in top:
            names.append(".".join(top))
        if name == "MEMOIZE":
            memo[len(memo)] = top[-1]
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = top[-1]
        elif name not in ("FRAME", "PROTO"):
            if name in ("GET", "BINGET", "LONG_BINGET"):
                pushed = memo.get(arg)
            else:
                pushed = arg if name in _STRING_OPCODES else None
            top = [top[-1], pushed]
    return names
