"""Gradio beside Twisted: keep ``gr.Slider()`` and friends buildable under daphne.

zope.interface (Twisted's interface library) gives every class it sees in the
bases of an ``@implementer`` class a ``__provides__`` descriptor. Twisted has
``@implementer`` classes that derive from ``abc.ABC`` (``BaseConnector``), so
importing Twisted, which daphne does when it is in ``INSTALLED_APPS``, puts one
on ``abc.ABC`` itself. That descriptor answers only for ``ABC``: on an instance
of any other class that inherits it, reading ``__provides__`` raises
``AttributeError``. Gradio's ``Component.__init__`` reads every name that
``dir()`` lists, so every Gradio component (they derive from ``ABC``) fails to
build.

:func:`repair_abc` wraps that one descriptor so that, read on an instance of a
class zope never processed, it answers what zope itself computes when the
attribute is missing (``implementedBy(type(instance))``, which zope also caches
on that class). Reads on ``ABC`` and on its instances are unchanged, so what
zope answers for every object stays the same. The app calls it when it loads
(``AppConfig.ready``) and before it builds a Gradio UI; calling it again is free.
"""

from __future__ import annotations

import abc
import sys
from typing import Any

__all__ = ["repair_abc"]


class _AnswerForSubclasses:
    """``abc.ABC.__provides__``, answering on instances of ABC's subclasses too."""

    def __init__(self, original: Any) -> None:
        self.original = original

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None or owner is abc.ABC:
            return self.original.__get__(instance, owner)
        from zope.interface.declarations import implementedBy

        return implementedBy(owner if owner is not None else type(instance))


def repair_abc() -> bool:
    """Wrap zope's ``__provides__`` on ``abc.ABC`` if Twisted left one there.

    Returns True when a descriptor is (now) wrapped. Does nothing, and imports
    nothing, when zope.interface was never imported.
    """
    if "zope.interface" not in sys.modules:
        return False
    current = abc.ABC.__dict__.get("__provides__")
    if current is None:
        return False
    if not isinstance(current, _AnswerForSubclasses):
        abc.ABC.__provides__ = _AnswerForSubclasses(current)  # type: ignore[attr-defined]
    return True
