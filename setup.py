"""soft_diffusion: JAX/Flax reference implementation of Soft Diffusion (Daras et al., 2022).

Pinned versions install together on Python 3.11 (checked in a fresh venv).
"""

from setuptools import find_packages, setup

JAX_VERSION = "0.10.2"

INSTALL_REQUIRES = [
  f"jax=={JAX_VERSION}",
  f"jaxlib=={JAX_VERSION}",
  "flax==0.12.8",
  "optax==0.2.8",
  "orbax-checkpoint==0.12.8",
  "ml_collections==1.1.0",
  "tensorflow-datasets==4.9.10",
  "array_record==0.8.6",
  "grain==0.2.18",
  "clu==0.0.12",
  "numpy==2.4.6",
  "protobuf==7.36.2",
  # tfds imports both without declaring them.
  "importlib_resources",
  "pillow",
  # TFDS preparation and clu's TensorBoard writers; never used on the accelerator.
  "tensorflow-cpu==2.21.0",
  "tensorboard==2.21.0",
  # The embedded default dataset (handwritten digits).
  "scikit-learn==1.9.1",
  # Figures (FID vs NFE, schedules, trajectories).
  "matplotlib==3.11.2",
]

EXTRAS_REQUIRE = {
  "test": ["pytest==9.2.0", "scipy==1.17.1", "ruff==0.17.6"],
  "gpu": [f"jax[cuda12]=={JAX_VERSION}"],
  "tpu": [f"jax[tpu]=={JAX_VERSION}"],
}

setup(
  name="soft_diffusion",
  version="0.1.0",
  description="Soft Diffusion: Score Matching for General Corruptions, in JAX/Flax.",
  python_requires=">=3.11",
  packages=find_packages(include=["soft_diffusion", "soft_diffusion.*"]),
  install_requires=INSTALL_REQUIRES,
  extras_require=EXTRAS_REQUIRE,
)
