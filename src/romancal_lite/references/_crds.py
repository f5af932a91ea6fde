"""Calling the crds client, either against the built-in cache or the user's CRDS.

Policy (``docs/crds-offline.md``):

* If the user configured CRDS (any of ``CRDS_PATH``, ``CRDS_SERVER_URL``,
  ``CRDS_PATH_SINGLE``, ``CRDS_MAPPATH``, ``CRDS_REFPATH``, ``CRDS_CFGPATH`` is set
  in the environment), crds is called with their environment untouched and no
  explicit context (their ``CRDS_CONTEXT`` or the cache's latest context applies).
* Otherwise crds is pointed at the built-in cache: for the duration of each call
  ``CRDS_PATH`` is set to the cache, ``CRDS_MODE=local``, ``CRDS_CONTEXT`` is
  removed and the context ``roman_lite_0001.pmap`` is passed explicitly; the
  previous values are restored afterwards.  ``CRDS_SERVER_URL`` stays unset, which
  puts the client in server-less mode: it never opens a network connection.

crds keeps process-wide caches of its configuration, so its function caches are
cleared whenever the cache in use changes (e.g. between tests).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..errors import ReferenceFileError
from ._cache import BuiltinCache

__all__ = ["USER_CRDS_VARS", "crds_getrecommendations", "crds_getreferences", "user_configured"]

#: Environment variables whose presence means the user set up CRDS themselves.
USER_CRDS_VARS: tuple[str, ...] = (
    "CRDS_PATH",
    "CRDS_SERVER_URL",
    "CRDS_PATH_SINGLE",
    "CRDS_MAPPATH",
    "CRDS_REFPATH",
    "CRDS_CFGPATH",
)
_SERVERLESS_URL = "https://crds-serverless-mode.stsci.edu"
_TEMP_VARS = ("CRDS_PATH", "CRDS_MODE", "CRDS_CONTEXT")

_LOCK = threading.RLock()
_ACTIVE: list[Any] = [None]  # which cache crds last worked on


def user_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Return whether the user configured CRDS in the environment.

    Parameters
    ----------
    environ : mapping, optional
        Environment to inspect; default ``os.environ``.

    Returns
    -------
    bool
        True if any of :data:`USER_CRDS_VARS` is set to a non-empty value.
    """
    env = os.environ if environ is None else environ
    return any(env.get(name) for name in USER_CRDS_VARS)


def _import_crds() -> Any:
    import crds  # noqa: PLC0415 - deferred: reads CRDS_SERVER_URL at import

    return crds


def _switch(key: Any) -> None:
    """Reset crds' process-wide caches if the cache in use changed."""
    if _ACTIVE[0] == key:
        return
    from crds.core import config, utils  # noqa: PLC0415

    utils.clear_function_caches()
    config.CRDS_REF_SUBDIR_MODE = "None"
    _ACTIVE[0] = key


@contextlib.contextmanager
def _crds_for(cache: BuiltinCache | None) -> Iterator[tuple[Any, str | None]]:
    """Yield ``(crds module, context)`` configured for ``cache`` (None: user's CRDS)."""
    with _LOCK:
        if cache is None:
            crds = _import_crds()
            url = os.environ.get("CRDS_SERVER_URL")
            if url:
                from crds.client import api  # noqa: PLC0415

                if api.get_crds_server() != url.rstrip("/"):
                    api.set_crds_server(url)  # crds read the variable at import only
            _switch(("user", tuple(os.environ.get(v) for v in USER_CRDS_VARS)))
            yield crds, None
            return
        saved = {name: os.environ.get(name) for name in _TEMP_VARS}
        os.environ["CRDS_PATH"] = str(cache.root)
        os.environ["CRDS_MODE"] = "local"
        os.environ.pop("CRDS_CONTEXT", None)
        server = None
        try:
            crds = _import_crds()
            from crds.client import api  # noqa: PLC0415

            current = api.get_crds_server()
            if "serverless" not in current:
                server = current
                api.set_crds_server(_SERVERLESS_URL)
            _switch(("builtin", str(cache.root)))
            yield crds, cache.context
        finally:
            if server is not None:
                from crds.client import api  # noqa: PLC0415

                api.set_crds_server(server)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _call(
    func_name: str,
    params: Mapping[str, Any],
    reftypes: Sequence[str],
    cache: BuiltinCache | None,
) -> dict[str, str]:
    with _crds_for(cache) as (crds, context):
        where = f"built-in CRDS cache {cache.root}" if cache else "CRDS"
        try:
            func = getattr(crds, func_name)
            return dict(
                func(dict(params), reftypes=list(reftypes), context=context, observatory="roman")
            )
        except SystemExit as exc:  # crds exits when its cache configuration is missing
            raise ReferenceFileError(
                f"{where}: CRDS is not usable (missing cache configuration, "
                f"CRDS_PATH={os.environ.get('CRDS_PATH')!r}, exit {exc.code})"
            ) from None
        except Exception as exc:
            raise ReferenceFileError(
                f"{where}: no {'/'.join(t.upper() for t in reftypes)} reference "
                f"selected: {_one_line(exc)}"
            ) from exc


def crds_getrecommendations(
    params: Mapping[str, Any], reftypes: Sequence[str], cache: BuiltinCache | None
) -> dict[str, str]:
    """Return ``crds.getrecommendations`` (reftype -> basename or ``NOT FOUND n/a``).

    Parameters
    ----------
    params : mapping
        CRDS parameters (``roman.meta.*``).
    reftypes : sequence of str
        Reference types.
    cache : BuiltinCache or None
        The built-in cache, or None for the user's CRDS.

    Returns
    -------
    dict
        Selection per reftype.

    Raises
    ------
    ReferenceFileError
        If crds fails.
    """
    return _call("getrecommendations", params, reftypes, cache)


def crds_getreferences(
    params: Mapping[str, Any], reftypes: Sequence[str], cache: BuiltinCache | None
) -> dict[str, str]:
    """Return ``crds.getreferences`` (reftype -> local path or ``N/A`` text).

    Parameters
    ----------
    params : mapping
        CRDS parameters (``roman.meta.*``).
    reftypes : sequence of str
        Reference types.
    cache : BuiltinCache or None
        The built-in cache, or None for the user's CRDS.

    Returns
    -------
    dict
        Path per reftype.

    Raises
    ------
    ReferenceFileError
        If crds fails, e.g. a selected file is neither cached nor downloadable.
    """
    return _call("getreferences", params, reftypes, cache)
