"""Average the weights of model files (``checkpoint.average``: one family, network and
normalisation; a smaller alphabet joins on the largest) into a float16 model file as
``handsynth train`` exports one.

    python scripts/average_models.py handsynth/weights/default.pt handsynth/weights/lstm-mix.pt \\
        checkpoints/lstm-mix2.pt --out runs/soup.pt
"""
from __future__ import annotations

import argparse
import sys

from handsynth.checkpoint import average, save
from handsynth.errors import HandsynthError


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model files to average")
    ap.add_argument("--weights", help="comma-separated weights, one per model (default: equal)")
    ap.add_argument("--out", required=True, help="the averaged model file to write")
    a = ap.parse_args(argv)
    try:
        weights = [float(w) for w in a.weights.split(",")] if a.weights else None
        save(average(a.models, weights), a.out)
    except ValueError:
        sys.exit(f"average_models: --weights {a.weights!r}: give numbers separated by commas")
    except HandsynthError as e:
        sys.exit(f"average_models: {e}")
    print(a.out)


if __name__ == "__main__":
    main()
