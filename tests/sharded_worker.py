"""Run by tests/test_sharding.py in a subprocess with 8 fake CPU devices (XLA_FLAGS set by the
parent before jax is imported). Compares every functional op on a batch sharded over a
("data",) mesh with the same op on an unsharded batch; exits non-zero on the first mismatch."""

import pathlib
import sys

import inception_images
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from soft_diffusion import corruptions, data, losses, samplers


def main() -> None:
  assert jax.device_count() == 8, f"expected 8 fake devices, got {jax.device_count()}"
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  batch_sharding = NamedSharding(mesh, P("data"))
  rng = np.random.default_rng(0)
  x0 = rng.uniform(-1, 1, (16, 8, 6, 3)).astype(np.float32)
  noise = rng.standard_normal(x0.shape).astype(np.float32)
  t = rng.uniform(0, 1, 16).astype(np.float32)
  sigma = rng.uniform(0, 10, 16).astype(np.float32)
  shard = lambda *arrays: [jax.device_put(a, batch_sharding) for a in arrays]

  def check(label, fn, *args, batched_output=True, atol=1e-6):
    plain = fn(*args)
    sharded = fn(*shard(*args))
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(sharded), strict=True):
      err = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
      if err > atol:
        sys.exit(f"{label}: sharded differs from unsharded by {err:.2e} > {atol:.0e}")
      if batched_output and not b.sharding.is_equivalent_to(batch_sharding, b.ndim):
        sys.exit(f"{label}: output sharding {b.sharding} is not the batch sharding")
    print(f"{label}: sharded == unsharded")

  # Host-local batch -> global array over the mesh (one process holds all 8 devices here).
  global_x0 = data.to_global_array(x0, mesh)
  if not global_x0.sharding.is_equivalent_to(batch_sharding, 4) or not np.array_equal(np.asarray(global_x0), x0):
    sys.exit("to_global_array: wrong sharding or values")
  print("to_global_array: sharded == unsharded")

  check("gaussian_blur", jax.jit(corruptions.gaussian_blur), x0, sigma)
  for name in sorted(corruptions.REGISTRY):
    corruption = corruptions.make({"name": name})
    check(f"{name}.corrupt", jax.jit(corruption.corrupt), x0, t, noise)

    def denoise_fn(x_t, t):
      return jnp.tanh(1.5 * x_t) * (1.0 - 0.5 * t[:, None, None, None])

    loss = jax.jit(lambda x0, t, noise, c=corruption: losses.soft_score_matching_loss(denoise_fn, x0, t, noise, c))
    check(f"{name} loss", loss, x0, t, noise, batched_output=False, atol=1e-6)
    # Every sampler on blur (the DCT's matmuls); one on each other corruption: the samplers' own
    # arithmetic is the same for all corruptions, and each corruption's ops are checked above.
    for sampler in sorted(samplers.SAMPLERS) if name == "blur" else ("momentum",):
      run = jax.jit(
        lambda x, c=corruption, s=sampler: samplers.get(s)(denoise_fn, x, c, num_steps=4, key=jax.random.key(3))
      )
      check(f"{name} {sampler} sampler", run, x0, atol=1e-5)

  # Inception features with each batch split over the mesh, against the TorchScript golden ones.
  from soft_diffusion import evaluation

  images = np.concatenate([inception_images.make_images("8x8")] * 4)  # 8 images, one per device
  feats = evaluation.inception_features(images, batch_size=8, mesh=mesh)
  golden = np.load(pathlib.Path(__file__).with_name("data") / "inception_golden.npz")["features/8x8"]
  err = np.abs(feats - np.concatenate([golden] * 4)).max()
  if err > 1e-4:
    sys.exit(f"inception_features on 8 devices: max |diff| {err:.2e} from the golden features")
  print("inception_features: sharded == unsharded")


if __name__ == "__main__":
  main()
