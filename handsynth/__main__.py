"""``python -m handsynth`` and the ``handsynth`` command: OpenMP's wait policy is set before
anything imports torch (``hardware.prepare_openmp``), then the CLI runs."""
import sys

from .hardware import prepare_openmp


def run(argv=None) -> int:
    prepare_openmp()   # before .cli imports torch: OpenMP reads its wait policy once, when it loads
    from .cli import main
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
