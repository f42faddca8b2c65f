"""Training and evaluation with LazyConfigs (the logic behind ``train_net.py``)."""

from .train import NonFiniteLossError, build_model, check_run, do_test, do_train, main, setup

__all__ = ["NonFiniteLossError", "build_model", "check_run", "do_test", "do_train", "main", "setup"]
