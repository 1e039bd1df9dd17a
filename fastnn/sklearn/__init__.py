"""scikit-learn estimators backed by fastnn: `MLPClassifier`, `MLPRegressor` (scikit-learn's
own parameter names, so switching is a change of import) and `NetClassifier` (any fastnn
architecture: conv nets on images given as (n, 784) or (n, 1, 28, 28) arrays).

Needs scikit-learn (`pip install "fastnn[sklearn]"`); `import fastnn` never imports it. The
manual is docs/sklearn.md.
"""
try:
    import sklearn
    from sklearn.utils.fixes import parse_version
except ImportError as exc:  # sklearn missing (or broken): say how to get it
    raise ImportError('fastnn.sklearn needs scikit-learn >= 1.3: pip install "fastnn[sklearn]" '
                      f'({exc})') from exc

if parse_version(sklearn.__version__) < parse_version("1.3"):
    raise ImportError(f"fastnn.sklearn needs scikit-learn >= 1.3, found {sklearn.__version__}: "
                      f'pip install "fastnn[sklearn]"')

from .estimators import MLPClassifier, MLPRegressor, NetClassifier, expected_failed_checks  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor", "NetClassifier", "expected_failed_checks"]
