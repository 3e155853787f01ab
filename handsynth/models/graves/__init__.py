"""The ``graves`` family: the Graves (2013) LSTM with a soft attention window over the text.

- ``network.py``: the network (``Synthesizer``: config, sampling step, priming, the family
  interface), its mixture-density head and the PyTorch sampling step;
- ``kernel.py``: layer 1 and the window over whole lines with a hand-written backward (training);
- ``native.py`` + ``native_step.c``: the work between a pen step's matmuls in C, for sampling
  and for the training kernel.
"""
from .network import GravesConfig, State, StepLinear, Synthesizer, log_likelihood, mixture_params, sample_mixture

Model = Synthesizer

__all__ = ["Model", "GravesConfig", "Synthesizer", "State", "StepLinear", "log_likelihood", "mixture_params",
           "sample_mixture"]
