"""tf.data input pipeline: data sets (embedded digits, TFDS, image folders), preprocessing,
AutoAugment / RandAugment, mixup / cutmix, and the train / eval iterators the training loop uses.

Attributes load lazily, so `from efficientnet_jax.data import default_input_config` (what config
files do) does not import TensorFlow; the pipeline functions do, on first use. On this stack
torch/torchvision/timm must be imported *before* TensorFlow: the other order segfaults.
"""

import importlib
from typing import Any, List

_EXPORTS = {
    "config": ["default_input_config", "check_input_config", "IMAGENET_MEAN", "IMAGENET_STD", "HALF_MEAN",
               "HALF_STD"],
    "sources": ["DatasetInfo", "dataset_info", "info_from_config"],
    "train_pipeline": ["make_train_iterator", "steps_per_epoch"],
    "eval_pipeline": ["make_eval_iterator", "default_eval_split"],
    "preprocess": ["preprocess_train", "preprocess_eval", "random_resized_crop", "center_crop", "resize", "normalize"],
    "augment": ["autoaugment", "randaugment", "apply_op", "POLICY_V0", "RANDAUGMENT_OPS"],
    "mixing": ["mixup", "cutmix", "mix_batch"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(list(globals()) + __all__)
