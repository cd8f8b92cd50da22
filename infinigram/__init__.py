"""infinigram: suffix-array n-gram and infini-gram queries over tokenized corpora."""
__version__ = "0.1.0"
