"""soft_diffusion: JAX/Flax reference implementation of Soft Diffusion (Daras et al., 2022).

Install what you need, from a checkout (there is no release on the package registry yet):

    pip install -e .                      # the functional API: corruptions, losses, samplers, schedules,
                                          # level selection, models, evaluation metrics (jax, flax, numpy)
    pip install -e '.[train]'             # + the drivers: training, data, checkpoints, sampling, FID, figures
    pip install -e '.[train,gpu]' / '.[train,tpu]'   # on an accelerator
    pip install -e '.[test]'              # + pytest (xdist), scipy, ruff, gcsfs, a GCS emulator (includes [train])

The ranges below are what the code is written for; the exact versions we test are in
constraints.txt, which `make demo` and `make test` install from (pip install -c constraints.txt).
flax itself pulls in optax, orbax-checkpoint and tensorstore, so those arrive with the base
install too; the functional API never imports them (tests/test_api.py checks the import graph).
"""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).resolve().parent

JAX = "jax>=0.10.2,<0.11"

INSTALL_REQUIRES = [
  JAX,
  "jaxlib>=0.10.2,<0.11",
  "flax>=0.12.8,<0.13",
  "numpy>=2.4,<3",
]

FIGURES = ["matplotlib>=3.11,<4"]

TRAIN = [
  "optax>=0.2.8,<0.3",
  "orbax-checkpoint>=0.12.8,<0.13",
  "ml_collections>=1.1,<2",
  "tensorflow-datasets>=4.9.10,<5",
  "array_record>=0.8.6,<0.9",
  "grain>=0.2.18,<0.3",
  "clu>=0.0.12,<0.1",
  "protobuf>=7.36,<8",
  # tfds imports both without declaring them.
  "importlib_resources",
  "pillow",
  # TFDS preparation and clu's TensorBoard writers; never used on the accelerator.
  # tensorflow-cpu has wheels for x86-64 only; on Apple silicon and Linux aarch64 the full
  # tensorflow wheel is the CPU build (tools/resolve_platforms.py asks the registry).
  'tensorflow-cpu>=2.21,<2.22; platform_machine == "x86_64" or platform_machine == "AMD64"',
  'tensorflow>=2.21,<2.22; platform_machine != "x86_64" and platform_machine != "AMD64"',
  "tensorboard>=2.21,<2.22",
  # The embedded default dataset (handwritten digits).
  "scikit-learn>=1.9,<2",
  *FIGURES,
]

EXTRAS_REQUIRE = {
  "train": TRAIN,
  "figures": FIGURES,
  "test": [
    *TRAIN,
    "pytest>=9.2,<10",
    "pytest-xdist>=3.8,<4",
    "scipy>=1.17,<2",
    "ruff==0.17.6",
    # tests/test_bucket.py: a gs:// workdir against an in-memory GCS emulator (epath's fsspec backend)
    "gcsfs>=2026.9",
    "gcp-storage-emulator>=2026.7",
  ],
  "gpu": ["jax[cuda12]>=0.10.2,<0.11"],
  "tpu": ["jax[tpu]>=0.10.2,<0.11"],
}

VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "soft_diffusion" / "__init__.py").read_text(), re.M)[1]

setup(
  name="soft_diffusion",
  version=VERSION,  # one source: soft_diffusion.__version__ (CHANGELOG.md and CITATION.cff follow it)
  description="Soft Diffusion: Score Matching for General Corruptions, in JAX/Flax.",
  python_requires=">=3.11",
  license="Apache-2.0",
  packages=find_packages(include=["soft_diffusion", "soft_diffusion.*"]),
  package_data={"soft_diffusion": ["py.typed"]},
  install_requires=INSTALL_REQUIRES,
  extras_require=EXTRAS_REQUIRE,
)
