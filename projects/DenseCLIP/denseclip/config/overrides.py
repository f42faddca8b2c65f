"""Checked ``key=value`` config overrides: a misspelled key or a value of the wrong type stops
with an error naming the key and the closest valid key, instead of being added to the config and
silently ignored (detectron2's ``LazyConfig.apply_overrides`` accepts any key).

What a key may name, node by node along its dotted path:

- a node with a ``_target_`` (``LazyCall``): its existing keys and every argument of the target
  (:func:`target_arguments`), also those the config leaves at their default;
- a plain dict listed in :attr:`ConfigKeys.plain_dicts` (e.g. ``train.amp``, read by a training
  loop): its existing keys and the listed ones;
- a plain dict given as an argument of a target (``optimizer.params.custom_keys``): any key, the
  target decides; entries of a mapping listed in :attr:`ConfigKeys.argument_entries` only the
  listed keys;
- any other plain dict (the root, ``dataloader``): its existing keys only;
- a list: an index inside it.

Types: the new value must fit the current value (or the argument's default, or its annotation
when the default is ``None`` or absent): an int for an int (not a bool), an int or float for a
float, a string for a string, a list for a list or tuple (numbers for numbers, strings for
strings), a dict for a config node (checked key by key), ``null`` only where ``None`` is the
current value or default, the annotation is ``Optional``, or a config node is turned off
(``model.backbone.bottom_up.context_decoder=null``). Values of other types (classes, functions,
interpolations) are not checked.

This module knows nothing of the project: what a config may hold beyond its targets' signatures
comes in as a :class:`ConfigKeys`.
"""

import difflib
import functools
import inspect
import typing
from collections import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from detectron2.config import LazyConfig
from detectron2.utils.registry import locate

__all__ = [
    "ConfigKeys",
    "ConfigOverrideError",
    "apply_overrides",
    "check_override",
    "consumer_arguments",
    "keyword_parameters",
    "target_arguments",
]

_MISSING = object()

#: {name: the argument (its default and annotation decide the type a new value must have)}
Parameters = Dict[str, inspect.Parameter]


class ConfigOverrideError(ValueError):
    """A ``key=value`` override names no valid key, or gives a value of the wrong type."""


@dataclass(frozen=True)
class ConfigKeys:
    """What a config may hold that no target's signature says.

    Attributes:
        plain_dicts: {dotted path of a plain dict: the keys it may hold besides its existing
            ones}, e.g. the arguments of whatever reads it (``""`` is the config root).
        argument_entries: {(target, argument): the keys of each entry of that mapping argument},
            e.g. ``{lr_mult, decay_mult}`` for every rule of a parameter-group function.
    """

    plain_dicts: Mapping[str, Parameters] = field(default_factory=dict)
    argument_entries: Mapping[Tuple[Callable, str], Parameters] = field(default_factory=dict)


def _parameters(callable_: Callable, skip_first: bool = False) -> Tuple[Parameters, bool]:
    """({name: inspect.Parameter}, takes any other name) of a callable's keyword arguments."""
    try:
        signature = inspect.signature(callable_)
    except (TypeError, ValueError):  # builtins without a signature
        return {}, True
    params = list(signature.parameters.values())
    if skip_first and params:
        params = params[1:]
    named = {p.name: p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return named, any(p.kind == p.VAR_KEYWORD for p in params)


@functools.lru_cache(maxsize=None)
def target_arguments(target: Callable) -> Tuple[Parameters, bool]:
    """The keyword arguments ``instantiate`` may pass to ``target``, and whether it takes any
    other name.

    A class's ``__init__`` with ``**kwargs`` is followed into its base classes' ``__init__``
    until one without ``**kwargs``. If the chain reaches ``nn.Module`` or ``object``, which take
    no keyword arguments, the class must use its ``**kwargs`` otherwise: it takes any name, as
    a function with ``**kwargs`` does. detectron2's ``@configurable`` callables give their
    wrapped signature (``instantiate`` calls them with keyword arguments, never a ``cfg``)."""
    if not isinstance(target, type):
        return _parameters(target)
    names: Parameters = {}
    for klass in target.__mro__:
        if klass in (object, nn.Module):
            return names, True
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params, takes_more = _parameters(init, skip_first=True)
        names = {**params, **names}
        if not takes_more:
            return names, False
    return names, False


def keyword_parameters(**defaults) -> Parameters:
    """Keys given by their defaults, for :class:`ConfigKeys` (``enabled=False``: a bool)."""
    return {
        name: inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=value)
        for name, value in defaults.items()
    }


def consumer_arguments(consumer: Callable) -> Parameters:
    """The keys of a plain dict that is read as ``consumer(obj, **that_dict)``: its arguments
    after the first, for :class:`ConfigKeys`."""
    return dict(list(target_arguments(consumer)[0].items())[1:])


def _qualified_name(target) -> str:
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', target)}"


def _locate(target):
    if not isinstance(target, str):
        return target
    try:
        return locate(target)
    except Exception:
        return None


@dataclass
class _Container:
    """A dict-like node along an override's path: what names it may hold."""

    path: str
    node: Any  # DictConfig, or _MISSING when the override creates it
    params: Parameters = field(default_factory=dict)
    takes_any_key: bool = False
    owner: str = ""  # how messages name the node
    target: Any = None  # the located _target_, for nodes with one
    entry_keys: Optional[Parameters] = None  # the keys of each of its entries, if fixed

    def valid_keys(self) -> List[str]:
        existing = self.node.keys() if isinstance(self.node, DictConfig) else []
        return sorted({str(k) for k in existing} | set(self.params))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _container(
    path: str, node, parent: Optional[_Container], key: str, keys: ConfigKeys
) -> _Container:
    """The container ``node`` (at ``path``, reached from ``parent`` through ``key``)."""
    name = path or "the config root"
    if isinstance(node, DictConfig) and "_target_" in node:
        target = _locate(node["_target_"])
        if target is None:
            return _Container(path, node, takes_any_key=True, owner=name)
        params, takes_any = target_arguments(target)
        owner = f"{name} ({_qualified_name(target)})"
        return _Container(path, node, params, takes_any, owner, target)
    if path in keys.plain_dicts:
        return _Container(path, node, dict(keys.plain_dicts[path]), owner=name)
    if parent is not None and parent.entry_keys is not None:
        return _Container(
            path, node, parent.entry_keys, owner=f"{name} (an entry of {parent.path})"
        )
    if parent is not None and (parent.target is not None or parent.takes_any_key):
        # a plain dict given to a target as (part of) an argument: the target decides its keys
        entry_keys = None
        if parent.target is not None:
            entry_keys = keys.argument_entries.get((parent.target, key))
        return _Container(path, node, takes_any_key=True, owner=name, entry_keys=entry_keys)
    return _Container(path, node, owner=name)


def _unknown_key(key: str, part: str, container: _Container) -> ConfigOverrideError:
    valid = [name for name in container.valid_keys() if name != "_target_"]
    close = difflib.get_close_matches(part, valid, n=3, cutoff=0.5)
    suggestion = (
        f" Did you mean: {', '.join(_join(container.path, c) for c in close)}?" if close else ""
    )
    what = "takes no argument" if container.target is not None else "has no key"
    listing = ", ".join(valid) if len(valid) <= 40 else ", ".join(valid[:40]) + ", ..."
    return ConfigOverrideError(
        f"unknown config key {key!r}: {container.owner} {what} {part!r}.{suggestion} "
        f"Valid keys there: {listing or 'none'}"
    )


def _resolved(node: DictConfig, part: str):
    """The value of ``node[part]``, interpolations resolved (``_MISSING`` if that fails)."""
    try:
        return node[part]
    except Exception:
        return _MISSING


def _walk(
    cfg: DictConfig, parts: Sequence[str], keys: ConfigKeys
) -> Tuple[Any, Optional[inspect.Parameter]]:
    """Follows the key ``parts`` through ``cfg``: (its current value, interpolations resolved, or
    ``_MISSING``; the argument or listed key it sets, if known). Raises
    :class:`ConfigOverrideError` for a name that the node holding it may not hold."""
    node, parent, param, path = cfg, None, None, ""
    key = ".".join(parts)
    for index, part in enumerate(parts):
        if isinstance(node, ListConfig):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigOverrideError(
                    f"config key {key!r}: {path} is a list of {len(node)} items; expected an "
                    f"index 0..{len(node) - 1}, got {part!r}"
                )
            node, param, path = node[int(part)], None, _join(path, part)
            continue
        if node is not _MISSING and not isinstance(node, DictConfig):
            hint = f"; set it whole: {path}={{...}}" if node is None else ""
            raise ConfigOverrideError(
                f"config key {key!r}: {path} holds {_describe(node)}, not a config node, so it "
                f"has no key {part!r}{hint}"
            )
        container = _container(path, node, parent, parts[index - 1] if index else "", keys)
        exists = isinstance(node, DictConfig) and part in node
        if not (exists or part in container.params or container.takes_any_key):
            raise _unknown_key(key, part, container)
        param = container.params.get(part)
        node = _resolved(node, part) if exists else _MISSING
        parent, path = container, _join(path, part)
    return node, param


# ----------------------------------------------------------------------------- types


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple, ListConfig)):
        return "list"
    if isinstance(value, (dict, DictConfig)):
        return "dict"
    return "object"


#: Kinds a value may have to replace a value of each kind.
_ACCEPTS = {
    "bool": {"bool"},
    "int": {"int"},
    "float": {"int", "float"},
    "str": {"str"},
    "list": {"list"},
    "dict": {"dict"},
}


def _annotation_kinds(annotation) -> Optional[set]:
    """Kinds an annotation accepts, or None when it says nothing checkable."""
    if annotation is inspect.Parameter.empty or isinstance(annotation, str):
        return None
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        kinds = set()
        for arg in typing.get_args(annotation):
            if arg is type(None):
                kinds.add("null")
                continue
            arg_kinds = _annotation_kinds(arg)
            if arg_kinds is None:
                return None
            kinds |= arg_kinds
        return kinds
    base = origin or annotation
    if base in (bool, int, float, str):
        return _ACCEPTS[base.__name__]
    if isinstance(base, type) and issubclass(base, abc.Sequence):
        return _ACCEPTS["list"]
    if isinstance(base, type) and issubclass(base, abc.Mapping):
        return _ACCEPTS["dict"]
    return None


def _describe(value) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_list_items(key: str, value, current) -> None:
    """Numbers stay numbers and strings stay strings (flat lists only)."""
    kinds = {_kind(item) for item in current}
    for wanted, allowed in (({"int", "float"}, {"int", "float"}), ({"str"}, {"str"})):
        if kinds and kinds <= wanted:
            bad = [item for item in value if _kind(item) not in allowed]
            if bad:
                raise ConfigOverrideError(
                    f"config key {key!r}: expected a list of {' or '.join(sorted(allowed))} "
                    f"(the current value is {_describe(current)}), got {_describe(value)}"
                )


def _expected_kinds(current, param: Optional[inspect.Parameter]) -> Tuple[Optional[set], str]:
    """(kinds a new value may have or None if unchecked, what they come from) for a key whose
    current value is ``current`` (``_MISSING`` when not in the config) and that sets ``param``."""
    if current is not _MISSING and current is not None:
        return _ACCEPTS.get(_kind(current)), f"the current value is {_describe(current)}"
    default = param.default if param is not None else inspect.Parameter.empty
    if default is not inspect.Parameter.empty and default is not None:
        return _ACCEPTS.get(_kind(default)), f"the default is {_describe(default)}"
    if param is not None and _annotation_kinds(param.annotation) is not None:
        annotation = inspect.formatannotation(param.annotation)
        return _annotation_kinds(param.annotation) - {"null"}, f"the argument is {annotation}"
    return None, ""


def _null_allowed(current, param: Optional[inspect.Parameter]) -> bool:
    """``null`` fits where None is the current value or the default, the annotation is
    Optional, or a config node is turned off (unless an annotation forbids it)."""
    if current is None or (param is not None and param.default is None):
        return True
    annotated = _annotation_kinds(param.annotation) if param is not None else None
    if annotated is not None:
        return "null" in annotated
    return current is _MISSING or isinstance(current, DictConfig)


def _check_type(key: str, value, current, param: Optional[inspect.Parameter]) -> None:
    if key.split(".")[-1] == "_target_" or (isinstance(value, str) and "${" in value):
        return  # a target path, or an interpolation resolved later
    new = _kind(value)
    if new == "null":
        if not _null_allowed(current, param):
            expected, source = _expected_kinds(current, param)
            raise ConfigOverrideError(
                f"config key {key!r}: expected {' or '.join(sorted(expected or {'a value'}))} "
                f"({source}), got null"
            )
        return
    expected, source = _expected_kinds(current, param)
    if expected is None or new in expected:
        if new == "list" and _kind(current) == "list":
            _check_list_items(key, value, current)
        return
    hint = f"; quote it to give a string: {key}='{value}'" if "str" in expected else ""
    raise ConfigOverrideError(
        f"config key {key!r}: expected {' or '.join(sorted(expected))} ({source}), got {new} "
        f"{_describe(value)}{hint}"
    )


def check_override(
    cfg: DictConfig,
    key: Union[str, Sequence[str]],
    value,
    keys: ConfigKeys = ConfigKeys(),
) -> None:
    """Raises :class:`ConfigOverrideError` unless ``key=value`` names a valid key of ``cfg``
    (see the module docstring; ``keys``: what it may hold beyond its targets' signatures) with
    a value of a fitting type. ``key``: dotted, or its parts (a part may contain dots:
    ``custom_keys`` names). A dict value that is merged into a node (or creates one) is checked
    key by key."""
    parts = key.split(".") if isinstance(key, str) else list(key)
    current, param = _walk(cfg, parts, keys)
    expected, _ = _expected_kinds(current, param)
    if isinstance(value, dict) and value and (expected is None or "dict" in expected):
        for sub_key, sub_value in value.items():
            check_override(cfg, [*parts, str(sub_key)], sub_value, keys)
        return
    _check_type(".".join(parts), value, current, param)


def _parse_overrides(overrides: Sequence[str]) -> List[Tuple[str, str, Any]]:
    """``[(text, key, value)]`` of hydra-syntax ``key=value`` strings (detectron2's grammar)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        if "=" not in text:
            hint = " (flags go before the overrides)" if text.startswith("-") else ""
            raise ConfigOverrideError(f"expected a key=value override, got {text!r}{hint}")
        try:
            (override,) = parser.parse_overrides([text])
        except OverrideParseException as error:
            raise ConfigOverrideError(f"cannot parse the override {text!r}: {error}") from None
        if override.is_delete():
            raise ConfigOverrideError(f"{text!r}: deleting keys is not supported")
        parsed.append((text, override.key_or_group, override.value()))
    return parsed


def apply_overrides(
    cfg: DictConfig, overrides: Sequence[str], keys: ConfigKeys = ConfigKeys()
) -> DictConfig:
    """detectron2's ``LazyConfig.apply_overrides``, each override checked first
    (:func:`check_override` with ``keys``) against the config as the previous ones left it.
    Returns ``cfg`` (changed in place)."""
    for text, key, value in _parse_overrides(list(overrides)):
        check_override(cfg, key, value, keys)
        LazyConfig.apply_overrides(cfg, [text])
    return cfg
