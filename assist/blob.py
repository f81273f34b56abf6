"""Fitted models as bytes: written with an HMAC-SHA256 keyed by ``SECRET_KEY``, read back only
when the HMAC matches and the format and scikit-learn version are the ones written.

Unpickling runs code: bytes this installation did not write (a tampered row, a copy from another
installation, a truncated write) are refused before ``pickle`` sees them, with a clear error.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from typing import Any

import joblib  # unpickles: only bytes whose HMAC we checked
import sklearn
from django.conf import settings

FORMAT = 2  # 2: the similarity index is a matrix of unit rows


class BlobRefused(Exception):  # noqa: N818 -- reads as what happened
    """The stored model cannot be used; the message says why."""


def _key() -> bytes:
    return hashlib.sha256(b"omnirouter.assist.blob:" + settings.SECRET_KEY.encode()).digest()


def sign(data: bytes) -> str:
    return hmac.new(_key(), data, hashlib.sha256).hexdigest()


def dump(fitted: dict[str, Any]) -> tuple[bytes, str]:
    """The fitted pipeline as (bytes, hmac)."""
    buffer = io.BytesIO()
    joblib.dump(
        {"format": FORMAT, "sklearn": sklearn.__version__, "fitted": fitted}, buffer, compress=3
    )
    data = buffer.getvalue()
    return data, sign(data)


def load(data: bytes | memoryview | None, mac: str) -> dict[str, Any]:
    """The fitted pipeline, or ``BlobRefused``: nothing is unpickled unless the HMAC matches."""
    if not data:
        raise BlobRefused("The version has no stored model.")
    raw = bytes(data)
    if not mac or not hmac.compare_digest(sign(raw), mac):
        raise BlobRefused(
            "The stored model's signature does not match (corrupt, or not written by this "
            "installation): it is not loaded."
        )
    try:
        wrapper = joblib.load(io.BytesIO(raw))
    except Exception as exc:  # noqa: BLE001 -- signed, yet unreadable: any failure is a refusal
        raise BlobRefused(f"The stored model cannot be read: {exc!r}") from exc
    if not isinstance(wrapper, dict) or wrapper.get("format") != FORMAT:
        raise BlobRefused("The stored model has an unknown format.")
    if wrapper.get("sklearn") != sklearn.__version__:
        raise BlobRefused(
            f"The stored model was fitted with scikit-learn {wrapper.get('sklearn')}, this "
            f"process runs {sklearn.__version__}: train a new version."
        )
    return dict(wrapper["fitted"])
