"""Argument checks shared by the estimators (:mod:`tsne_ops.tsne`,
:mod:`tsne_ops.parametric`): one wording for every "bad argument" error, each
naming the argument and the value it was given."""
import math
import numbers
import warnings

import numpy as np


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _bad(name, value, allowed):
    return ValueError(f"{name} must be {allowed}, got {name}={value!r}")


def validate_input(validate, estimator, X, **kwargs):
    """scikit-learn's input validation (``validate_data`` or ``check_array``),
    its messages kept (check_estimator matches them) and prefixed with the
    argument's name, so that every error says which argument it is about."""
    try:
        return validate(estimator, X, **kwargs) if estimator is not None else validate(X, **kwargs)
    except (TypeError, ValueError) as e:
        if type(e) not in (TypeError, ValueError):
            raise
        raise type(e)(f"X: {e}") from e


def check_perplexity(perplexity):
    """A finite number > 0 that the kernels' float32 attribute can hold."""
    if not _is_real(perplexity) or not math.isfinite(perplexity) \
            or not perplexity >= np.finfo(np.float32).tiny:
        raise _bad("perplexity", perplexity,
                   f"a finite number >= {np.finfo(np.float32).tiny:.3g} (float32's smallest normal)")


def usable_perplexity(perplexity, n_samples, max_allowed=None, what="n_samples"):
    """``perplexity``, lowered (with a UserWarning) to what the kernels can reach.

    No row of P can have a perplexity of ``n - 1`` or more: with n - 1
    neighbours the uniform distribution's perplexity is exactly n - 1, and the
    perplexity search needs a target strictly inside (0, n - 1). scikit-learn
    accepts anything below ``n_samples`` and lets the search stop unconverged
    near the uniform P; here such a value is lowered, as openTSNE does, to
    0.99 (n - 1), whose P is within 1% of the uniform one. ``max_allowed``
    (default ``n_samples``) is the bound above which ``ValueError`` is raised
    instead, as in scikit-learn; ``n_samples`` is the ``n`` of the P in
    question (a batch for ParametricTSNE) and ``what`` names it in messages.
    """
    max_allowed = n_samples if max_allowed is None else max_allowed
    if not perplexity < max_allowed:
        # scikit-learn's wording (its tests match it)
        raise ValueError(f"perplexity ({perplexity!r}) must be less than {what} ({max_allowed})")
    if perplexity < n_samples - 1:
        return float(perplexity)
    lowered = 0.99 * (n_samples - 1)
    warnings.warn(f"perplexity={perplexity!r} is too high for {n_samples} points (it must be "
                  f"less than {n_samples - 1}); using perplexity={lowered:g} instead",
                  UserWarning, stacklevel=3)
    return lowered
