"""The keys of a DenseCLIP run config that no target's signature names, for the override checker
(:class:`~denseclip.config.overrides.ConfigKeys`): the plain dicts that ``train_net.py`` reads
and the rules of the optimizer's parameter groups.

They live here, beside :func:`~denseclip.config.loading.load_config` which passes them, so that
every entry point (engine, predictors, tools) checks overrides against the same keys and the
checker itself stays free of project code."""

from torch.nn.parallel import DistributedDataParallel

from detectron2.engine.defaults import create_ddp_model
from detectron2.engine.hooks import PeriodicCheckpointer

from ..meta_arch import SemanticSegmentorWithTTA
from ..solver import param_groups_by_keys
from .overrides import ConfigKeys, consumer_arguments, keyword_parameters

__all__ = ["RUN_CONFIG_KEYS"]

RUN_CONFIG_KEYS = ConfigKeys(
    plain_dicts={
        "": keyword_parameters(tta={}),
        # read by detectron2's default_setup
        "train": keyword_parameters(seed=-1, cudnn_benchmark=False),
        "train.amp": keyword_parameters(enabled=False, precision="float16"),
        # create_ddp_model(model, **train.ddp) -> DistributedDataParallel(model, **kwargs)
        "train.ddp": {
            **consumer_arguments(DistributedDataParallel),
            **consumer_arguments(create_ddp_model),
        },
        "train.checkpointer": consumer_arguments(PeriodicCheckpointer),
        # --aug-test: enabled, and the arguments of the TTA wrapper
        "tta": {
            **keyword_parameters(enabled=False),
            **consumer_arguments(SemanticSegmentorWithTTA),
        },
    },
    argument_entries={
        (param_groups_by_keys, "custom_keys"): keyword_parameters(lr_mult=1.0, decay_mult=1.0)
    },
)
