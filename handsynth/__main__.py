import sys

from .hardware import prepare_openmp

prepare_openmp()   # before .cli imports torch: OpenMP reads its wait policy once, when it loads

from .cli import main  # noqa: E402

sys.exit(main())
