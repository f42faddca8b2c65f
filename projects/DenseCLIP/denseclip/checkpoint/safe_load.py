"""Reading checkpoint files without running code they carry.

A checkpoint is a pickle, and unpickling calls whatever the file names (``os.system``,
``open``...). Every file a user names is read here, by what it holds, never by plain pickle:

- ``.pth`` / ``.pt`` (:func:`load_torch_file`): ``torch.load(weights_only=True)``, which builds
  only tensors, Python containers, numbers and strings, plus :data:`NUMPY_GLOBALS`;
- ``.pkl`` (:func:`load_pickle_file`; detectron2 model zoo, Caffe2 / Detectron1 ``blobs``):
  a restricted unpickler that builds only Python containers, numbers and strings, OrderedDict
  and :data:`NUMPY_GLOBALS`;
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
import re
import zipfile
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch

try:  # numpy >= 2 (numpy 1.26 has the alias too)
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - older numpy
    from numpy.core import multiarray as _multiarray

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
#: official releases. Each entry is (the object, the name a pickle stores); numpy 1.x writes
#: ``numpy.core.multiarray.*``, numpy 2 ``numpy._core.multiarray.*``.
NUMPY_GLOBALS: Tuple[Tuple[Callable, str], ...] = (
    tuple(
        (obj, f"numpy.{core}.multiarray.{name}")
        for core in ("core", "_core")
        for obj, name in (
            (_multiarray.scalar, "scalar"),
            (_multiarray._reconstruct, "_reconstruct"),
        )
    )
    + ((np.dtype, "numpy.dtype"), (np.ndarray, "numpy.ndarray"))
    + tuple((cls, f"{cls.__module__}.{cls.__qualname__}") for cls in _NUMERIC_DTYPE_CLASSES)
)

#: Every object a ``.pkl`` checkpoint may name, by the name its pickle stores: the numpy ones,
#: OrderedDict, and ``_codecs.encode`` (how Python 3 stores ``bytes``, e.g. array data, at
#: pickle protocols 0-2).
PICKLE_GLOBALS: Dict[str, Callable] = {
    **{name: obj for obj, name in NUMPY_GLOBALS},
    "collections.OrderedDict": collections.OrderedDict,
    "_codecs.encode": codecs.encode,
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
        return _RestrictedUnpickler(f, path).load()


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
    (its legacy format), or the restricted unpickler (a plain pickle, which torch does not
    read)."""
    names = {m for p in _REFUSED_PATTERNS for m in re.findall(p, str(error))}
    if zipfile.is_zipfile(path):
        allowed = {name for _, name in NUMPY_GLOBALS}
        try:
            names |= set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - allowed
        except (ValueError, RuntimeError):  # not a torch.save archive
            pass
    elif not names:
        try:
            with open(path, "rb") as f:
                _RestrictedUnpickler(f, path).load()
        except UntrustedCheckpointError as refusal:
            names = set(refusal.names)
        except Exception:  # not a pickle either: torch's error stands
            pass
    return sorted(names)
