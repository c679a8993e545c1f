"""Time the training step of every (dataset, model) of the paper; see msp/bench.py.

    python bench/bench_train.py --datasets mnist --models lstsq --steps 3 --warmup 1 --json bench/train_cpu.json
    python bench/bench_train.py --device cuda --json bench/train_gpu.json     # all 28 pairs
    python bench/bench_train.py --quick                                      # smoke test, seconds

Same flags as `msp bench`.
"""

import argparse
import sys

from msp import bench

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench.add_arguments(parser)
    sys.exit(bench.main(parser.parse_args()))
