"""Hugging Face Hub names, from the local cache first and failing fast without network.

``from_pretrained`` on a name that is not in the cache asks the Hub, and without network
``huggingface_hub`` retries for about a minute before giving up. :func:`load_pretrained` loads a local
path as it is and a cached Hub name with ``local_files_only=True``; on a miss it honours
``HF_HUB_OFFLINE``, else asks the Hub once — one request, no retries, ``HF_HUB_ETAG_TIMEOUT`` seconds at
most — whether it has the model, and only then downloads. A failure says that the name is neither a local
path nor in the local cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = ["CACHE_MARKERS", "HubUnavailableError", "load_pretrained"]

T = TypeVar("T")

#: Files whose presence in the cache means a Hub name was downloaded before (a model, or a tokenizer alone).
CACHE_MARKERS = ("config.json", "tokenizer_config.json")


class HubUnavailableError(OSError):
    """A name that is not a local path, that the local Hugging Face cache does not hold (or not whole), and that
    the Hub cannot give: offline mode, no network, or no such model."""


def load_pretrained(load: Callable[..., T], name: str, timeout: float | None = None) -> T:
    """``load(name)`` for an existing local path. For a Hub name: ``load(name, local_files_only=True)`` when the
    cache holds it; else (or when that fails) ``load(name)`` from the Hub — after checking, in one request,
    that the Hub can be reached and has it.

    Args:
        load: a ``from_pretrained``; takes the name and ``local_files_only``.
        name: a local path or a Hub name.
        timeout: seconds the Hub check may take; default ``HF_HUB_ETAG_TIMEOUT`` (10).

    Raises:
        HubUnavailableError: not (wholly) in the cache, and offline (``HF_HUB_OFFLINE``), the Hub unreachable,
            or no model of that name there.
        Exception: what ``load`` raises for a model on the Hub that fails to load.
    """
    if Path(name).exists():
        return load(name)
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    where = f"{name!r} is neither a local path nor in the local Hugging Face cache ({constants.HF_HUB_CACHE})"
    if _in_cache(name, CACHE_MARKERS):
        try:
            return load(name, local_files_only=True)
        except Exception as err:  # e.g. only the tokenizer was downloaded: the weights may still come
            where = (f"{name!r} is no local path, and the local Hugging Face cache does not hold all of it "
                     f"({type(err).__name__}: {err})")
    if huggingface_hub.is_offline_mode():
        raise HubUnavailableError(f"{where}, and HF_HUB_OFFLINE is set: give a local path, or download it first")
    try:
        huggingface_hub.HfApi().model_info(name, timeout=constants.HF_HUB_ETAG_TIMEOUT if timeout is None else timeout)
    except GatedRepoError:
        pass  # it exists; the download says which access is missing
    except RepositoryNotFoundError:
        raise HubUnavailableError(
            f"{where}, and the Hub has no model of that name (a private one needs `hf auth login`)"
        ) from None
    except HFValidationError as err:
        raise HubUnavailableError(f"{where}, nor a valid Hub name ({err})") from None
    except Exception as err:  # no network, DNS, proxy, timeout, server error
        raise HubUnavailableError(
            f"{where}, and the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached ({type(err).__name__}: "
            f"{err}): give a local path, or download it where there is network"
        ) from None
    return load(name)


def _in_cache(name: str, filenames: Sequence[str]) -> bool:
    """Whether the local cache holds one of ``filenames`` of the Hub repository ``name``."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return any(isinstance(try_to_load_from_cache(name, filename), str) for filename in filenames)
    except ValueError:  # not a valid repository id
        return False
