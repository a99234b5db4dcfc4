"""A 2-trial sweep on the smoke-sized quickstart (used by the sweep tests)."""

from configs import quickstart


def get_config(arg=None):
    config = quickstart.get_config("smoke")
    config.total_steps = 3
    config.checkpoint_every_steps = 3
    return config


def get_hyper(h):
    return h.sweep("config.model.act", ["swish", "relu6"])
