"""`python -m gen.rank`: one rank of `gen video --gpus N`, started by torch's elastic launcher (gen.distributed)."""

import sys

from gen.cli import run_rank_from_environment

if __name__ == "__main__":
    sys.exit(run_rank_from_environment())
