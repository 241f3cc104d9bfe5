"""The models of one job: the paper's classifiers (`networks`, named here so that conf/'s `pipeline.models.Maxout`
and the ids and files that record it keep resolving), what any model offers the pipeline (`contract`: the protocol
and its defaults), a user's module wrapped to offer it (`adapter`), a model built from its config (`build`), the
checks a built model must pass (`checks`), and a model file's header read without torch (`model_file`)."""
from typing import Any

__all__ = ["Classifier", "Conv", "Ensemble", "Logistic", "MLP", "Maxout", "MaxoutLinear", "RBF", "Softmax"]


def __getattr__(name: str) -> Any:
    """The classes of `networks`, imported when first named: planning reads model files through `model_file`
    without importing torch."""
    if name in __all__:
        import pipeline.models.networks as networks

        return getattr(networks, name)
    raise AttributeError(f"module 'pipeline.models' has no attribute {name!r}")
