"""Old import paths of fastbert 0.1 that keep working, with a DeprecationWarning, until the next release."""
import warnings


def warn_moved(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}; the old path goes in the next release", DeprecationWarning, stacklevel=3)
