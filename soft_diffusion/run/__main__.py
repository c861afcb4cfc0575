"""`python -m soft_diffusion.run ...`: the same command line as `python -m soft_diffusion.main`."""

from soft_diffusion.run.main import main

main()
