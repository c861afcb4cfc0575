"""`python -m soft_diffusion.main ...`: the command line, kept at this name for every launch script
and document that uses it. The program lives in `soft_diffusion.run` (run/main.py);
`python -m soft_diffusion.run` is the same command."""

if __name__ == "__main__":
  from soft_diffusion.run.main import main

  main()
