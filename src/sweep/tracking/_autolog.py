"""``sweep.autolog()``: scikit-learn's ``fit`` logs to the active run by itself.

Each estimator class that defines ``fit`` gets a wrapper: after an outermost ``fit``
(a Pipeline's steps are part of their pipeline's fit) inside a run, the estimator's
params (``<Class>.<param>``, so they never overwrite a trial's own), its
``training_score`` (``score(X, y)`` when it has one and got ``y``) and the fitted
estimator as the run's model (flavor ``sklearn``) are logged. Outside a run ``fit`` is
untouched. ``autolog(disable=True)`` puts the original methods back.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any

from sweep.errors import NoActiveRunError

_patched: dict[type, Callable[..., Any]] = {}
_state = threading.local()


def autolog(*, log_models: bool = True, disable: bool = False) -> None:
    """Log every scikit-learn ``fit`` in the active run: params, training score and (with
    ``log_models``) the fitted model. Call it once per process, e.g. at the top of the
    objective; ``disable=True`` turns it off."""
    from sklearn.utils import all_estimators

    for cls, original in list(_patched.items()):
        setattr(cls, "fit", original)  # noqa: B010 - put back what was there
        del _patched[cls]
    if disable:
        return
    for _, estimator in all_estimators():
        for cls in estimator.__mro__:
            if "fit" in vars(cls) and cls not in _patched and cls.__module__.startswith("sklearn"):
                _patched[cls] = vars(cls)["fit"]
                setattr(cls, "fit", _wrap(vars(cls)["fit"], log_models))  # noqa: B010


def _wrap(fit: Callable[..., Any], log_models: bool) -> Callable[..., Any]:
    @functools.wraps(fit)
    def logged_fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_state, "fitting", False):
            return fit(self, *args, **kwargs)
        _state.fitting = True
        try:
            result = fit(self, *args, **kwargs)
        finally:
            _state.fitting = False
        _log_fit(self, args, kwargs, log_models)
        return result

    return logged_fit


def _log_fit(estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any], models: bool) -> None:
    from sweep.tracking._logging import active_run

    try:
        run = active_run()
    except NoActiveRunError:
        return
    name = type(estimator).__name__
    run.log_params({f"{name}.{k}": v for k, v in estimator.get_params(deep=False).items()})
    x = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    if y is not None and hasattr(estimator, "score"):
        score = None
        with contextlib.suppress(Exception):  # a score it cannot compute is not logged
            score = float(estimator.score(x, y))
        if score is not None:
            run.log_metric("training_score", score)
    if models:
        run.log_model(estimator, flavor="sklearn")
