"""The paper's model: Soft Diffusion (VE SDE + Blur) on CelebA 64×64 (docs/method.md §5, §6).

    python -m soft_diffusion.data.prepare celeb_a --data_dir DATA [--manual_dir RAW]
    python -m soft_diffusion.main --config configs/celeba64.py --workdir runs/celeba64 --config.data.path=DATA

Recipe: score_sde's NCSN++ CelebA recipe (docs/method.md §6): NCSN++ with 128 channels, multipliers
(1,2,2,2), 4 res blocks, attention at 16×16, dropout 0.1 (62.69M parameters, 81.3 GFLOP per
64×64 forward); Adam 2e-4, warm-up 5000, clip 1.0, EMA 0.999, batch 128, 1.3M steps. Blur levels
selected on the data (docs/method.md §3) in σ_B ∈ [0.01, 23] px; clipped geometric noise 0.01 → 0.1.
By default (form 'preconditioned') the network is preconditioned per DCT coefficient with the
data's power spectrum (one pass over the training split when training starts, written to
WORKDIR/spectrum.npz) and the samplers end with the denoised estimate: on the digits and the
Gaussian fields that measured better than the paper's form (docs/results.md, "Training that
learns what the samplers read"); `--config configs/celeba64.py:paper` is the paper's form.
Expected result (paper, the `:paper` form): FID 1.85 with the Momentum Sampler. Our FID: not
measured yet.
Expected runtime, estimated (not measured): one train step costs 246 GFLOP per image (XLA cost
analysis, `python benchmarks/train_step.py`), so 1.3M steps at batch 128 are 4.1e19 FLOP. At 40%
of the bf16 peak (model.dtype = 'auto' computes in bfloat16 on a GPU or TPU; 989 TFLOP/s per H100, 275 per TPU v4 chip)
that is about 29 h on one H100, 3.6 h on 8 H100s, 13 h on a TPU v4-16 (8 chips). Launch with
launch/gpu.sh, launch/slurm.sh or launch/tpu_pod.sh.
"""

from soft_diffusion.run import schema


def get_config(form: str = "preconditioned"):
  """form (`--config configs/celeba64.py:FORM`, schema.apply_form): 'preconditioned' (the
  per-coefficient preconditioning and the denoised end; the default since the preconditioning
  study, docs/results.md) or 'paper' (the paper's residual form, loss and end)."""
  config = schema.default_config()
  config.data.name = "celeb_a"
  config.data.image_size = 64
  config.data.crop_size = 140
  config.data.random_flip = True
  # Decode the 162,770 JPEGs once (8 worker processes, a few minutes per host start) into host
  # memory (8 GB of float32 per host), then only shuffle, flip and batch: 8 GPUs need about
  # 12,800 images/s, far more than decoding every step gives (benchmarks/data.py measures both).
  config.data.cache = True
  config.data.num_workers = 8
  config.corruption.name = "blur"
  # Level selection (docs/evaluation.md): the levels are selected
  # on the data (256 candidates in [0.01, 23] px, 32 levels, the default noise pairing
  # 'candidate', measured best on the digits; p_1 is the default forward marginal). Training
  # selects them first when WORKDIR/levels.json is missing (one pass over the training split);
  # `--mode levels` does the same on its own.
  config.corruption.blur_schedule = "selected"
  # score_sde sums the loss over the 12,288 pixel values; with the mean our gradient norms are
  # 12,288 times smaller and the clip at 1.0 would almost never act. Summing makes clipping (and
  # Adam's epsilon) behave as in the recipe the paper compares against.
  config.loss.reduction = "sum"
  config.train.sample_every_steps = 50_000
  config.checkpoint.every_steps = 10_000
  config.sample.num_steps = 300
  return schema.apply_form(config, form)
