"""Canonical byte forms of request bodies, for the fingerprint.

Each form is one-to-one with what a view can tell apart: two bodies with the
same form mean the same to the view, and two bodies that mean something else
have different forms (CONTRACT section 3, "Fingerprint").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sized
from datetime import date, time, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.core.files.base import File
from django.core.files.uploadedfile import UploadedFile
from django.utils.datastructures import MultiValueDict

first = itemgetter(0)

# JSON: json.loads hands numbers, as written, to parse_int / parse_float /
# parse_constant and objects, as (key, value) pairs, to object_pairs_hook;
# json.dumps then writes the result with sorted keys and no white space, both
# in C. Numbers become {NUMBER: text}, objects with a repeated key
# {REPEATED: pairs sorted by key, stably, so a repeated key's values keep their
# order}. Every dict in the result comes from the hooks, and the body's own keys
# that start with NUL get one more NUL, so a NUMBER or REPEATED key never comes
# from the body: the canonical text is a one-to-one image of the body's values.
_NUMBER = "\x00n"
_REPEATED = "\x00d"


def _number(text: str) -> dict[str, str]:
    return {_NUMBER: text}


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        pairs.sort(key=first)
        return {_REPEATED: pairs}
    if "\x00" in "".join(value):
        return {("\x00" + key if key.startswith("\x00") else key): v for key, v in value.items()}
    return value


# Built once: json.loads and json.dumps given options build a decoder, an
# encoder and its C scanner or writer on every call.
_DECODER = json.JSONDecoder(
    parse_int=_number, parse_float=_number, parse_constant=_number, object_pairs_hook=_object
)
# ensure_ascii (the default): "\u00e9" and "é" are one string, and lone
# surrogates ("\ud800"), which UTF-8 cannot encode, have one spelling.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)


def _writer() -> Any:
    """The C writer that ``_ENCODER.encode()`` builds on each call, built once
    (with check_circular off it keeps no state between calls); ``None`` where
    the interpreter has none or it does not write what ``encode()`` writes."""
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    probe = {"b": [{"\x00n": "1"}, "\u00e9\ud800", None, True], "a": {}}
    try:
        write = make(None, _ENCODER.default, json.encoder.encode_basestring_ascii, None,
                     _ENCODER.key_separator, _ENCODER.item_separator, True, False, True)  # fmt: skip
        if "".join(write(probe, 0)) == _ENCODER.encode(probe):
            return write
    except Exception:  # noqa: BLE001 - another interpreter's internals: encode() it is
        pass
    return None


_WRITE = _writer()


def canonical_json(body: bytes) -> bytes | None:
    """The canonical text of a JSON body; ``None`` if it is not JSON that can be read.

    Keys sorted, no insignificant white space, strings in one spelling, and
    numbers, ``true``, ``false`` and ``null`` kept as written: ``0.1`` and
    ``0.10000000000000001``, ``1`` and ``"1"``, ``{"a": 1, "a": 2}`` and
    ``{"a": 2, "a": 1}`` all differ. ``None`` for invalid JSON and for nesting
    too deep for the parser.
    """
    try:
        # What json.loads does with bytes: UTF-8, -16 or -32 as RFC 8259 reads them.
        tree = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
        text = "".join(_WRITE(tree, 0)) if _WRITE is not None else _ENCODER.encode(tree)
    except (ValueError, RecursionError):
        return None
    return text.encode()


if TYPE_CHECKING:
    _Upload = UploadedFile[bytes]
else:
    _Upload = UploadedFile  # generic in the stubs only


class HashedUpload(_Upload):
    """A file the fingerprint parsed and hashed, without its contents."""

    def __init__(self, *, sha256: bytes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sha256 = sha256

    def close(self) -> None:
        pass  # nothing was kept; the parser closes its files when it fails


def file_digest(upload: Any) -> bytes:
    """An uploaded file by its name, content type and a SHA-256 of its contents."""
    if isinstance(upload, HashedUpload):
        content = upload.sha256
    else:
        digest = hashlib.sha256()
        for chunk in upload.chunks():  # chunk by chunk: an upload may be on disk
            digest.update(chunk)
        upload.seek(0)  # the view reads the file after us
        content = digest.digest()
    name = _text(getattr(upload, "name", None) or "")
    content_type = _text(getattr(upload, "content_type", None) or "")
    return _sized(name) + _sized(content_type) + content


def tagged(value: Any) -> bytes:
    """A one-to-one byte form of parsed request data, each value tagged with its type.

    So ``1``, ``1.0``, ``Decimal("1.0")``, ``"1"`` and ``True`` all differ, as
    they do for the view; mappings compare whatever their key order, lists and
    a ``QueryDict``'s values of one name in order, uploads by content.
    Iterative, so no nesting is too deep. Raises ``TypeError`` for a value it
    cannot compare exactly.
    """
    out: list[bytes] = []
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if type(item) is _Encoded:
            out.append(item)
        elif item is None:
            out.append(b"N")
        elif isinstance(item, bool):
            out.append(b"T" if item else b"F")
        elif isinstance(item, str):
            out.append(b"s" + _sized(_text(item)))
        elif isinstance(item, int):
            # Hexadecimal: int -> str in base 10 stops at 4300 digits.
            out.append(b"i" + _sized(f"{item:x}".encode()))
        elif isinstance(item, float):
            out.append(b"f" + _sized(repr(item).encode()))  # repr round-trips
        elif isinstance(item, Decimal):
            out.append(b"D" + _sized(str(item).encode()))  # "1.0" is not "1.00"
        elif isinstance(item, bytes | bytearray | memoryview):
            out.append(b"b" + _sized(bytes(item)))
        elif isinstance(item, date | time | timedelta | UUID):
            # repr names the class and every field, a datetime's zone included.
            out.append(b"t" + _sized(_text(repr(item))))
        elif isinstance(item, File):
            out.append(b"U" + file_digest(item))
        elif isinstance(item, MultiValueDict):
            lists = sorted(item.lists(), key=first)
            out.append(b"M" + _count(lists))
            for name, values in reversed(lists):
                pending += (list(values), _Encoded(tagged(name)))
        elif isinstance(item, dict):
            entries = sorted(((tagged(key), v) for key, v in item.items()), key=first)
            out.append(b"d" + _count(entries))
            for key, v in reversed(entries):
                pending += (v, _Encoded(key))
        elif isinstance(item, set | frozenset):
            members = sorted(tagged(member) for member in item)
            out.append(b"S" + _count(members))
            pending += [_Encoded(member) for member in reversed(members)]
        elif isinstance(item, list | tuple):
            out.append((b"l" if isinstance(item, list) else b"p") + _count(item))
            pending += reversed(item)
        else:
            raise TypeError(
                f"The request body was parsed (before @idempotent ran) into a "
                f"{type(item).__name__}, which the fingerprint cannot compare exactly; "
                "set IDEMPOTENCY['FINGERPRINT'] to a function that handles it, or leave "
                "request.data unread until the view runs."
            )
    return b"".join(out)


class _Encoded(bytes):
    """Bytes already in tagged form, waiting on the stack."""


def _text(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _sized(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def _count(items: Sized) -> bytes:
    return len(items).to_bytes(8, "big")
