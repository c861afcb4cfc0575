"""Input pipeline: the real TFDS `celeb_a` builder on tiny fake raw files (only the download
is patched), the embedded digits, image folders, iterator state, per-process slices, errors.
No test touches the network."""

import dataclasses
import hashlib
import http.server
import io
import socket
import threading
import time
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.datasets.celeb_a import celeb_a_dataset_builder as celeb_a_builder

from soft_diffusion import data
from soft_diffusion.data import prepare as prepare_lib
from soft_diffusion.data import preprocess

CELEBA_PARTITION = [0] * 8 + [1] * 2 + [2] * 2  # 8 train, 2 validation, 2 test
ATTR_HEADINGS = celeb_a_builder.ATTR_HEADINGS
LANDMARK_HEADINGS = celeb_a_builder.LANDMARK_HEADINGS


def fake_jpeg(rng, index):
  # Smooth random content so JPEG keeps it recognisable; every image differs.
  base = rng.uniform(0, 255, (14, 12, 3))
  img = Image.fromarray(base.astype(np.uint8)).resize((178, 218), Image.BILINEAR)
  buf = io.BytesIO()
  img.save(buf, format="JPEG", quality=95)
  return buf.getvalue()


def write_fake_celeba(raw_dir):
  """The five raw files with the layout TFDS's celeb_a builder parses, 218×178 JPEGs."""
  rng = np.random.default_rng(0)
  names = [f"{i + 1:06d}.jpg" for i in range(len(CELEBA_PARTITION))]
  with zipfile.ZipFile(raw_dir / "img_align_celeba.zip", "w") as zf:
    for i, name in enumerate(names):
      zf.writestr(f"img_align_celeba/{name}", fake_jpeg(rng, i))
  (raw_dir / "list_eval_partition.txt").write_text(
    "".join(f"{n} {p}\n" for n, p in zip(names, CELEBA_PARTITION, strict=True))
  )
  header = " ".join(ATTR_HEADINGS)
  rows = "".join(f"{n} " + " ".join(rng.choice(["1", "-1"], len(ATTR_HEADINGS))) + "\n" for n in names)
  (raw_dir / "list_attr_celeba.txt").write_text(f"{len(names)}\n{header}\n{rows}")
  header = " ".join(LANDMARK_HEADINGS)
  rows = "".join(f"{n} " + " ".join(str(v) for v in rng.integers(0, 100, len(LANDMARK_HEADINGS))) + "\n" for n in names)
  (raw_dir / "list_landmarks_align_celeba.txt").write_text(f"{len(names)}\n{header}\n{rows}")
  (raw_dir / "identity_CelebA.txt").write_text("".join(f"{n} {i % 3 + 1}\n" for i, n in enumerate(names)))
  return names


FILE_FOR_KEY = {
  "img_align_celeba": "img_align_celeba.zip",
  "list_eval_partition": "list_eval_partition.txt",
  "list_attr_celeba": "list_attr_celeba.txt",
  "landmarks_celeba": "list_landmarks_align_celeba.txt",
  "identity_celeba": "identity_CelebA.txt",
}


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
  """CelebA prepared by the real TFDS builder from fake raw files; only the download is patched."""
  raw = tmp_path_factory.mktemp("celeba_raw")
  write_fake_celeba(raw)
  data_dir = tmp_path_factory.mktemp("tfds")
  mp = pytest.MonkeyPatch()
  mp.setattr(tfds.download.DownloadManager, "download", lambda self, urls: {k: raw / FILE_FOR_KEY[k] for k in urls})
  mp.setattr(prepare_lib, "probe_drive", lambda url: None)
  try:
    prepare_lib.prepare("celeb_a", str(data_dir))
  finally:
    mp.undo()
  return raw, str(data_dir)


def celeba_config(data_dir, **kw):
  return data.DataConfig(name="celeb_a", path=data_dir, image_size=64, crop_size=140, random_flip=True, **kw)


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_celeba_batches_have_the_right_shape_range_and_are_deterministic(celeba):
  _, data_dir = celeba
  cfg = celeba_config(data_dir)
  a = take(iter(data.make_dataset(cfg, split="train", batch_size=4, seed=0, train=True)), 3)
  b = take(iter(data.make_dataset(cfg, split="train", batch_size=4, seed=0, train=True)), 3)
  c = take(iter(data.make_dataset(cfg, split="train", batch_size=4, seed=1, train=True)), 3)
  assert a[0].shape == (4, 64, 64, 3) and a[0].dtype == np.float32
  assert min(x.min() for x in a) >= -1.0 and max(x.max() for x in a) <= 1.0
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True)), "seed does not change the stream"


def test_celeba_preprocessing_matches_tf_image_resize(celeba):
  import tensorflow as tf

  raw, _ = celeba
  with zipfile.ZipFile(raw / "img_align_celeba.zip") as zf:
    jpeg = zf.read("img_align_celeba/000001.jpg")
  crop = preprocess.center_crop(preprocess.decode_image(jpeg, "000001.jpg"), 140)
  want = tf.image.resize(crop.astype(np.float32), (64, 64), method="bilinear", antialias=True).numpy() / 127.5 - 1
  got = preprocess.preprocess(jpeg, "000001.jpg", crop_size=140, image_size=64)
  assert np.abs(got - want).max() < 1e-5


def test_celeba_splits_and_unprepared_error(celeba, tmp_path):
  _, data_dir = celeba
  assert len(data.make_source(celeba_config(data_dir), "train")) == 8
  assert len(data.make_source(celeba_config(data_dir), "validation")) == 2
  with pytest.raises(ValueError, match=r"run: python -m soft_diffusion\.data\.prepare celeb_a --data_dir "):
    data.make_source(celeba_config(str(tmp_path)), "train")
  with pytest.raises(ValueError, match="split 'val' of 'celeb_a' must be one of"):
    data.make_source(celeba_config(data_dir), "val")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_restored_iterator_yields_exactly_the_next_batches(celeba, num_workers):
  _, data_dir = celeba
  cfg = celeba_config(data_dir, num_workers=num_workers)
  make = lambda: iter(data.make_dataset(cfg, split="train", batch_size=4, seed=0, train=True))
  it = make()
  take(it, 3)  # crosses an epoch boundary (8 images, batch 4)
  state = it.get_state()
  expected = take(it, 3)
  restored = make()
  restored.set_state(state)
  for x, y in zip(expected, take(restored, 3), strict=True):
    np.testing.assert_array_equal(x, y)
  if num_workers:
    it.close()
    restored.close()


def image_digests(batches):
  return sorted(hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest() for b in batches for img in b)


def test_per_process_eval_slices_are_disjoint_and_cover_the_split(celeba):
  _, data_dir = celeba
  cfg = data.DataConfig(name="celeb_a", path=data_dir, image_size=16, crop_size=140)
  source = data.make_source(cfg, "train")
  everything = image_digests(data.make_dataset(cfg, split="train", batch_size=1, seed=0, train=False, source=source))
  per_process = [
    image_digests(
      data.make_dataset(
        cfg, split="train", batch_size=1, seed=0, train=False, process_index=i, process_count=3, source=source
      )
    )
    for i in range(3)
  ]
  assert len(everything) == 8 and len(set(everything)) == 8
  assert sorted(d for part in per_process for d in part) == everything  # disjoint and covering
  assert [len(p) for p in per_process] == [3, 3, 2]


def test_training_stream_does_not_depend_on_the_process_count(celeba):
  """2 processes x 2 rows assemble the same global batches as 1 process x 4 rows (across an
  epoch boundary: the split has 8 images), so multi-host runs train exactly like one host; and
  the in-memory cache, decoded here or by worker processes, changes nothing."""
  _, data_dir = celeba
  cfg = data.DataConfig(name="celeb_a", path=data_dir, image_size=8, crop_size=140, random_flip=True)
  source = data.make_source(cfg, "train")

  def batches(process_index, process_count, num=5, cache=False, num_workers=0):
    ds = data.make_dataset(
      dataclasses.replace(cfg, cache=cache, num_workers=num_workers),
      split="train",
      batch_size=4 // process_count,
      seed=7,
      train=True,
      process_index=process_index,
      process_count=process_count,
      source=source,
    )
    it = iter(ds)
    return [next(it) for _ in range(num)]

  single = batches(0, 1)
  parts = [batches(i, 2) for i in range(2)]
  for step, whole in enumerate(single):
    np.testing.assert_array_equal(np.concatenate([parts[0][step], parts[1][step]]), whole, err_msg=f"batch {step}")
  assert len({hashlib.sha1(b.tobytes()).hexdigest() for b in single}) == 5
  for step, (cached, whole) in enumerate(zip(batches(0, 1, cache=True), single, strict=True)):
    np.testing.assert_array_equal(cached, whole, err_msg=f"cached batch {step}")
  # The cache decoded by 2 worker processes (celeba64's setting): the same stream.
  for step, (cached, whole) in enumerate(zip(batches(0, 1, cache=True, num_workers=2), single, strict=True)):
    np.testing.assert_array_equal(cached, whole, err_msg=f"cached batch {step}, decoded by workers")


def test_manual_dir_prepares_offline(tmp_path, monkeypatch):
  raw = tmp_path / "raw"
  raw.mkdir()
  write_fake_celeba(raw)

  def no_network(*args, **kwargs):
    raise OSError("network disabled in this test")

  monkeypatch.setattr(socket.socket, "connect", no_network)
  # The fake files' SHA-256 differ from the real ones TFDS registers: skip only that comparison.
  monkeypatch.setattr(tfds.download.DownloadManager, "_register_or_validate_checksums", lambda self, **kw: None)
  path = prepare_lib.prepare("celeb_a", str(tmp_path / "tfds"), str(raw))
  assert "celeb_a" in path
  assert len(data.make_source(celeba_config(str(tmp_path / "tfds")), "test")) == 2


def test_prepare_fails_fast_without_network_and_names_the_files(tmp_path, capsys):
  with socket.socket() as s:  # a loopback port with nothing listening: connection refused
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  start = time.time()
  with pytest.raises(prepare_lib.PrepareError) as err:
    prepare_lib.prepare("celeb_a", str(tmp_path), probe_url=f"http://127.0.0.1:{port}/file")
  assert time.time() - start < 30
  for name in prepare_lib.CELEBA_FILES:
    assert name in str(err.value)
  assert "--manual_dir" in str(err.value)


def test_prepare_recognises_a_drive_refusal_page(tmp_path):
  class Refusal(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
      body = b"<!DOCTYPE html><html><title>Google Drive - Quota exceeded</title></html>"
      self.send_response(200)
      self.send_header("Content-Type", "text/html; charset=utf-8")
      self.send_header("Content-Length", str(len(body)))
      self.end_headers()
      self.wfile.write(body)

    def log_message(self, *args):
      pass

  server = http.server.HTTPServer(("127.0.0.1", 0), Refusal)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    with pytest.raises(prepare_lib.PrepareError, match="web page instead of the file"):
      prepare_lib.prepare("celeb_a", str(tmp_path), probe_url=f"http://127.0.0.1:{server.server_port}/uc")
  finally:
    server.shutdown()


def test_prepare_cli_reports_missing_manual_files(tmp_path, capsys):
  (tmp_path / "raw").mkdir()
  (tmp_path / "raw" / "list_eval_partition.txt").write_text("")
  code = prepare_lib.main(["celeb_a", "--data_dir", str(tmp_path / "tfds"), "--manual_dir", str(tmp_path / "raw")])
  err = capsys.readouterr().err
  assert code == 1 and err.count("\n") == 1
  assert "lacks img_align_celeba.zip, list_attr_celeba.txt, list_landmarks_align_celeba.txt, identity_CelebA.txt" in err


# ---- digits and folders ---------------------------------------------------------------------


def test_digits_end_to_end(tmp_path):
  cfg = data.DataConfig(name="digits", path=str(tmp_path), image_size=16)
  assert len(data.make_source(cfg, "train")) == 1617
  assert len(data.make_source(cfg, "validation")) == 180
  batch = next(iter(data.make_dataset(cfg, split="train", batch_size=32, seed=0, train=True)))
  assert batch.shape == (32, 16, 16, 1)
  assert batch.min() == -1.0 and batch.max() <= 1.0  # digits have a black (0) background


def write_images(folder, count, rng):
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(count):
    size = (20 + i, 16 + 2 * i)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    img.save(folder / f"img{i:02d}.{'png' if i % 2 else 'jpg'}")


def test_folder_dataset_end_to_end(tmp_path, rng):
  write_images(tmp_path / "imgs" / "nested", 10, rng)
  cfg = data.DataConfig(name="folder", path=str(tmp_path / "imgs"), image_size=8, folder_holdout_every=5)
  assert len(data.make_source(cfg, "train")) == 8 and len(data.make_source(cfg, "validation")) == 2
  batch = next(iter(data.make_dataset(cfg, split="train", batch_size=4, seed=0, train=True)))
  assert batch.shape == (4, 8, 8, 3) and -1.0 <= batch.min() and batch.max() <= 1.0


def test_folder_errors(tmp_path, rng):
  with pytest.raises(ValueError, match="must be an existing folder"):
    data.make_source(data.DataConfig(name="folder", path=str(tmp_path / "nope")), "train")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="holds no image files"):
    data.make_source(data.DataConfig(name="folder", path=str(tmp_path / "empty")), "train")
  write_images(tmp_path / "bad", 3, rng)
  (tmp_path / "bad" / "img01.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
  cfg = data.DataConfig(name="folder", path=str(tmp_path / "bad"), image_size=8, folder_holdout_every=0)
  with pytest.raises(ValueError, match=r"cannot decode image .*bad/img01\.png"):
    list(data.make_dataset(cfg, split="train", batch_size=1, seed=0, train=False))


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(name="imagenet"), "config.data.name must be one of"),
    (dict(name="folder"), "config.data.path must be a folder of images when"),
    (dict(image_size=0), "config.data.image_size must be an int >= 1"),
    (dict(num_workers=-1), "config.data.num_workers must be an int >= 0"),
    (dict(crop_size=0), "config.data.crop_size must be None"),
    (dict(field_k0=0.0), r"config.data.field_k0 must be a number > 0"),
    (dict(field_pixel_std=True), r"config.data.field_pixel_std must be a number > 0"),
    (dict(name="gaussian_field", cache=True), r"config.data.cache must be False for 'gaussian_field'"),
    (dict(name="gaussian_field", crop_size=8), r"config.data.crop_size must be None for 'gaussian_field'"),
  ],
)
def test_data_config_rejects_bad_values(kwargs, match):
  with pytest.raises(ValueError, match=match):
    data.DataConfig(**kwargs)


def test_data_config_rejects_unknown_keys():
  with pytest.raises(ValueError, match=r"unknown field\(s\) \['imgsize'\]"):
    data.DataConfig.from_any({"imgsize": 3})


def test_batch_size_must_divide_over_devices():
  assert data.local_batch_size(64, num_devices=8, process_count=2) == 32
  with pytest.raises(ValueError, match=r"batch_size = 60 must be a positive multiple of the number of devices \(8\)"):
    data.local_batch_size(60, num_devices=8, process_count=1)


def test_to_global_array_single_process():
  import jax

  mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  local = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
  np.testing.assert_array_equal(data.to_global_array(local, mesh), local)


def test_gaussian_field_stream_is_the_documented_function_of_seed_and_index():
  """Element i of 'train' is IDCT2(√v ⊙ z) with z from default_rng([0, seed, i]); 'validation' is a
  fixed set from its own seed; the stream resumes exactly and does not depend on the process
  count (2 processes × 2 rows = 1 × 4)."""
  from soft_diffusion import gaussian_field as gf
  from soft_diffusion.data import field_source as source_lib

  cfg = data.DataConfig(name="gaussian_field", image_size=8, field_k0=3.0, field_pixel_std=0.5)
  root = np.sqrt(gf.spectrum(8, 8, 3.0, 0.5))

  def batches(process_index, process_count, seed=7, num=3):
    ds = data.make_dataset(
      cfg, split="train", batch_size=4 // process_count, seed=seed, train=True,
      process_index=process_index, process_count=process_count,
    )  # fmt: skip
    return take(iter(ds), num)

  single = batches(0, 1)
  expected = gf.field_images(root, [np.random.default_rng([0, 7, i]) for i in range(12)])
  np.testing.assert_array_equal(np.concatenate(single), expected)
  parts = [batches(i, 2) for i in range(2)]
  for step, whole in enumerate(single):
    np.testing.assert_array_equal(np.concatenate([parts[0][step], parts[1][step]]), whole)
  assert not np.array_equal(batches(0, 1, seed=8)[0], single[0])

  it = iter(data.make_dataset(cfg, split="train", batch_size=4, seed=7, train=True))
  next(it)
  state = it.get_state()
  after = take(it, 2)
  it.set_state(state)
  np.testing.assert_array_equal(np.stack(take(it, 2)), np.stack(after))

  validation = [
    np.concatenate(list(data.make_dataset(cfg, split="validation", batch_size=500, seed=s, train=False)))
    for s in (0, 1)
  ]
  assert validation[0].shape == (source_lib.EVAL_SIZE, 8, 8, 3)
  np.testing.assert_array_equal(validation[0], validation[1])
  np.testing.assert_array_equal(
    validation[0][:2], gf.field_images(root, [np.random.default_rng([1, source_lib.EVAL_SEED, i]) for i in range(2)])
  )
  with pytest.raises(ValueError, match="split 'test' of 'gaussian_field' must be one of"):
    data.make_source(cfg, "test")
