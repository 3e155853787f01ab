"""Corpus readers, dataset building and batching."""
from .corpus import Batch, Corpus, bucket_batches, load_corpus, make_batch, statistics  # noqa: F401
from .samples import Sample, load_samples, save_samples  # noqa: F401
