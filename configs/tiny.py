"""The smallest config that runs every mode: the digits at 8×8, a 2-level U-Net with 4 channels.

    python -m soft_diffusion.main --config configs/tiny.py --workdir /tmp/tiny --config.train.total_steps=4

For tests and quick checks of the plumbing (a few seconds a mode on a CPU); its samples are not
meant to look like digits. The tests pin the numbers they check (for example the learning rate of
the golden train step) so that this file can change without moving them.

Its default form is the paper's (`configs/digits.py:paper`): the tests' golden values and most of
their arithmetic are the paper's loss and residual form. `configs/tiny.py:preconditioned` runs the
recipe configs/digits.py trains by default (tests/test_preconditioning.py trains and samples it).
"""

from soft_diffusion.run import schema

digits = schema.sibling(__file__, "digits")


def get_config(form: str = "paper"):
  config = digits.get_config(form)
  config.data.image_size = 8

  config.model.channels = 4
  config.model.channel_mult = (1, 2)
  config.model.attention_resolutions = ()

  config.optim.warmup_steps = 2
  config.optim.decay = "constant"

  config.train.batch_size = 8
  config.train.total_steps = 4
  config.train.log_every_steps = 2
  config.train.sample_every_steps = 1000
  config.train.tensorboard = False  # no TensorFlow import: seconds less per start (metrics.jsonl still written)
  config.train.prior_num_images = 64

  config.checkpoint.every_steps = 2
  config.sample.num_steps = 3
  config.sample.num_images = 8
  config.sample.batch_size = 8  # splits over 1 or 8 devices

  config.levels.num_levels = 8

  config.eval.ref_num_images = 16
  config.eval.num_images = 8
  config.eval.batch_size = 8
  config.eval.num_steps = (2, 3)
  config.eval.kid_subset_size = 8
  config.eval.kid_num_subsets = 4
  return config
