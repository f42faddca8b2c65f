"""Checked config overrides (denseclip.config.overrides): a misspelled key or a value of the wrong type
stops train_net.py's setup, the tools and the Predictor at once, naming the key; every valid key
(including arguments a config leaves at their default) is accepted."""

import argparse
import os
from typing import Optional

import pytest
from omegaconf import DictConfig, ListConfig
from torch import nn

from detectron2.config import LazyCall as L
from helpers import REPO_ROOT, TINY_CONFIG, load_python_file

from denseclip.config import RUN_CONFIG_KEYS
from denseclip.config.overrides import (
    ConfigOverrideError,
    apply_overrides,
    check_override,
    target_arguments,
)


def _rejected(cfg, override: str) -> str:
    with pytest.raises(ConfigOverrideError) as error:
        apply_overrides(cfg, [override], RUN_CONFIG_KEYS)
    return str(error.value)


# ----------------------------------------------------------------------------- unknown keys


def test_misspelled_train_key_is_rejected_naming_the_closest_key(tiny_config):
    message = _rejected(tiny_config, "train.max_itr=5")
    assert "'train.max_itr'" in message and "Did you mean: train.max_iter" in message
    assert "max_itr" not in tiny_config.train


def test_unknown_argument_of_a_target_is_rejected_naming_the_target(tiny_config):
    message = _rejected(tiny_config, "model.backbone.bottom_up.foo=1")
    assert "'model.backbone.bottom_up.foo'" in message
    assert (
        "denseclip.backbone.DenseCLIPBackbone" in message and "takes no argument 'foo'" in message
    )
    assert "foo" not in tiny_config.model.backbone.bottom_up


def test_unknown_top_level_and_dataloader_keys_are_rejected(tiny_config):
    assert "Did you mean: dataloader.train" in _rejected(
        tiny_config, "dataloader.trian.num_workers=1"
    )
    assert "the config root has no key 'foo'" in _rejected(tiny_config, "foo.bar=1")


def test_argument_the_config_leaves_at_its_default_is_accepted(tiny_config):
    bottom_up = tiny_config.model.backbone.bottom_up
    assert "score_concat_feature" not in bottom_up
    apply_overrides(
        tiny_config, ["model.backbone.bottom_up.score_concat_feature=res4"], RUN_CONFIG_KEYS
    )
    assert bottom_up.score_concat_feature == "res4"


def test_kwargs_are_followed_into_the_base_class_configurable_init(tiny_config):
    # DenseCLIPSemSegFPNHead(**kwargs) -> detectron2's @configurable SemSegFPNHead.__init__
    head = tiny_config.model.sem_seg_head
    del head["loss_weight"]
    apply_overrides(tiny_config, ["model.sem_seg_head.loss_weight=0.5"], RUN_CONFIG_KEYS)
    assert head.loss_weight == 0.5
    message = _rejected(tiny_config, "model.sem_seg_head.loss_wieght=0.5")
    assert "Did you mean: model.sem_seg_head.loss_weight" in message


class _Base(nn.Module):
    def __init__(self, depth: int = 1):
        super().__init__()


class _Child(_Base):
    def __init__(self, width: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)


def _open_function(x=1, **kwargs):
    return x


def test_signature_rules_for_kwargs_chains_and_functions():
    assert set(target_arguments(_Child)[0]) == {"width", "depth"}
    assert target_arguments(_Child)[1] is False  # _Base.__init__ takes no **kwargs
    assert target_arguments(_open_function)[1] is True
    cfg = DictConfig({"net": L(_Child)(), "fn": L(_open_function)()}, flags={"allow_objects": True})
    apply_overrides(cfg, ["net.depth=3", "net.width=null", "fn.anything=2"])
    assert "Did you mean: net.depth" in _rejected(cfg, "net.deptj=3")


def test_annotation_decides_where_the_default_is_none():
    cfg = DictConfig({"net": L(_Child)()}, flags={"allow_objects": True})
    assert "expected int (the argument is Optional[int])" in _rejected(cfg, "net.width=wide")
    apply_overrides(cfg, ["net.width=8"])
    assert cfg.net.width == 8


def test_plain_dicts_the_training_loop_reads_take_their_consumers_arguments(tiny_config):
    assert "tta" not in tiny_config
    apply_overrides(
        tiny_config,
        [
            "train.amp.precision=bfloat16",
            "train.seed=3",
            "train.ddp.find_unused_parameters=True",
            "train.checkpointer.max_to_keep=2",
            "tta.enabled=True",
            "tta.scales=[0.5,1]",
            "tta.base_size=[256,64]",
        ],
        RUN_CONFIG_KEYS,
    )
    assert tiny_config.tta.scales == [0.5, 1] and tiny_config.train.amp.precision == "bfloat16"
    assert "Did you mean: train.amp.precision" in _rejected(tiny_config, "train.amp.precison=x")
    assert "Did you mean: tta.scales" in _rejected(tiny_config, "tta.scale=[1]")
    assert "train.checkpointer has no key 'perod'" in _rejected(
        tiny_config, "train.checkpointer.perod=5"
    )


def test_custom_keys_take_any_name_but_only_lr_mult_and_decay_mult(tiny_config):
    apply_overrides(
        tiny_config,
        [
            "optimizer.params.custom_keys.head={lr_mult:10}",
            "optimizer.params.custom_keys={bottom_up.image_encoder.:{lr_mult:0.5}}",
        ],
        RUN_CONFIG_KEYS,
    )
    rules = tiny_config.optimizer.params.custom_keys
    assert rules["head"] == {"lr_mult": 10} and rules["bottom_up.image_encoder."]["lr_mult"] == 0.5
    message = _rejected(tiny_config, "optimizer.params.custom_keys.norm1.lr_mul=1")
    assert "Did you mean: optimizer.params.custom_keys.norm1.lr_mult" in message


def test_dict_values_are_checked_key_by_key(tiny_config):
    assert "Did you mean: train.amp.precision" in _rejected(
        tiny_config, "train.amp={enabled:false,precison:bfloat16}"
    )


def test_list_index_outside_the_list_is_rejected(tiny_config):
    message = _rejected(tiny_config, "model.backbone.bottom_up.image_encoder.layers.7=1")
    assert "is a list of 4 items; expected an index 0..3, got '7'" in message


def test_flags_after_the_overrides_are_named(tiny_config):
    assert "flags go before the overrides" in _rejected(tiny_config, "--eval-only")


# ----------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.max_iter=abc", "expected int (the current value is 1000), got str 'abc'"),
        ("train.max_iter=1.5", "expected int (the current value is 1000), got float 1.5"),
        ("train.max_iter=null", "expected int (the current value is 1000), got null"),
        ("optimizer.lr=fast", "expected float or int (the current value is 0.001), got str"),
        ("train.amp.enabled=1", "expected bool (the current value is False), got int 1"),
        ("train.output_dir=2024", "quote it to give a string: train.output_dir='2024'"),
        ("model.pixel_mean=[a,b,c]", "expected a list of float or int"),
        ("tta.base_size=512", "expected list (the default is (2048, 512)), got int 512"),
    ],
)
def test_values_of_the_wrong_type_are_rejected_naming_the_key(tiny_config, override, expected):
    message = _rejected(tiny_config, override)
    assert f"'{override.split('=')[0]}'" in message and expected in message, message


def test_fitting_values_are_accepted(tiny_config):
    apply_overrides(
        tiny_config,
        [
            "optimizer.lr=1",  # an int for a float
            "model.pixel_mean=[1,2.5,3]",
            "model.backbone.bottom_up.context_decoder=null",  # a sub-module turned off
            "train.init_checkpoint=''",
            "model.backbone.bottom_up.score_scale=${model.tau}",  # an interpolation
        ],
        RUN_CONFIG_KEYS,
    )
    assert tiny_config.model.backbone.bottom_up.context_decoder is None


PRIMITIVES = (bool, int, float, str, type(None))


def _leaves(node, parts=()):
    """(key parts, value) of every value of a config (interpolations unresolved: skipped)."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            try:
                value = node[key]
            except Exception:
                continue
            yield from _leaves(value, (*parts, str(key)))
    elif isinstance(node, ListConfig):
        for index, value in enumerate(node):
            yield from _leaves(value, (*parts, str(index)))
    else:
        yield parts, node


def _target_nodes(node, parts=()):
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield parts, node
        for key in node.keys():
            yield from _target_nodes(node._get_node(key), (*parts, str(key)))
    elif isinstance(node, ListConfig):
        for index, value in enumerate(node):
            yield from _target_nodes(value, (*parts, str(index)))


@pytest.mark.parametrize(
    "name", ["denseclip_fpn_tiny", "mask_rcnn_denseclip_tiny", "denseclip_fpn_swin_tiny"]
)
def test_every_value_and_every_target_argument_of_a_config_is_a_valid_override(
    load_tiny_config, name
):
    cfg = load_tiny_config(name)
    checked = 0
    for parts, value in _leaves(cfg):
        if isinstance(value, PRIMITIVES):
            check_override(cfg, list(parts), value, RUN_CONFIG_KEYS)
            checked += 1
    for parts, node in _target_nodes(cfg):
        for argument, param in target_arguments(node["_target_"])[0].items():
            if argument not in node and isinstance(param.default, PRIMITIVES):
                # as the config left it
                check_override(cfg, [*parts, argument], param.default, RUN_CONFIG_KEYS)
                checked += 1
    assert checked > 100


# ----------------------------------------------------------------------------- entry points


def _setup_args(tmp_path, *opts, eval_only=False):
    return argparse.Namespace(
        config_file=os.path.join(REPO_ROOT, TINY_CONFIG),
        opts=[f"train.output_dir={tmp_path / 'out'}", *opts],
        dataset=None,
        eval_only=eval_only,
        resume=False,
        aug_test=False,
    )


def test_train_net_setup_stops_before_creating_the_output_folder(tmp_path):
    from denseclip.engine import setup

    with pytest.raises(ConfigOverrideError, match="Did you mean: train.max_iter"):
        setup(_setup_args(tmp_path, "train.max_itr=5"))
    assert not (tmp_path / "out").exists()


def test_tools_load_config_rejects_unknown_keys():
    from denseclip.config import load_config

    with pytest.raises(ConfigOverrideError, match="Did you mean: model.test_mode"):
        load_config(os.path.join(REPO_ROOT, TINY_CONFIG), ["model.test_mod=whole"])


def test_get_flops_stops_at_an_unknown_key_before_building():
    get_flops = load_python_file("tools/get_flops.py")
    with pytest.raises(ConfigOverrideError, match="'model.foo'"):
        get_flops.main(["--config-file", os.path.join(REPO_ROOT, TINY_CONFIG), "model.foo=1"])


def test_predictor_applies_checked_overrides(tiny_config):
    from denseclip import Predictor

    with pytest.raises(ConfigOverrideError, match="Did you mean: model.test_mode"):
        Predictor(tiny_config, "", overrides=["model.test_mod=slide"])
    predictor = Predictor(tiny_config, "", overrides=["model.test_mode=slide"])
    assert predictor.cfg.model.test_mode == "slide" and tiny_config.model.test_mode == "whole"


def test_load_config_sets_the_class_names_of_the_chosen_split_on_a_copy(tiny_config):
    from detectron2.data import MetadataCatalog

    from denseclip.config import load_config

    MetadataCatalog.get("_test_load_config_classes").set(stuff_classes=["road", "sky"])
    override = ["dataloader.test.dataset.names=_test_load_config_classes"]
    cfg, class_names = load_config(tiny_config, override)
    assert class_names == ["road", "sky"]
    assert list(cfg.model.backbone.bottom_up.prompts.class_names) == ["road", "sky"]
    assert cfg.model.sem_seg_head.num_classes == 2
    assert tiny_config.model.sem_seg_head.num_classes == 5  # the given config is not modified
    assert "_test_load_config_classes" not in str(tiny_config.dataloader.test.dataset.names)
    cfg, class_names = load_config(tiny_config, override, split="train")  # synthetic: as is
    assert class_names is None and cfg.model.sem_seg_head.num_classes == 5
