"""The base every shipped sweep ablates: the quickstart net on the embedded digits, shortened.

At full scale, change the data set and the recipe, e.g.
`--config.dataset=imagenet2012` plus a variant config's recipe (see configs/b0.py).
"""

from configs import quickstart

BASE_RES = 48  # large enough that resolution scaling changes the feature maps, small enough for a CPU
BASE_WIDTH = 0.5
BASE_DEPTH = 0.5


def get_config(arg=None):
    config = quickstart.get_config(arg)
    config.image_size = BASE_RES
    config.eval_image_size = BASE_RES
    config.model.width_mult = BASE_WIDTH
    config.model.depth_mult = BASE_DEPTH
    config.num_epochs = 8.0
    config.checkpoint_every_steps = 100
    return config
