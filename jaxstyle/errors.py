"""The exceptions the command line turns into one line: bad input (a refused setting among it),
and a run stopped by a signal."""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable
from pathlib import Path

_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


class JaxstyleError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The command line prints ``jaxstyle: <message>`` and exits with status 2;
    no traceback is shown. Messages name the file and the problem. Line breaks in
    the message (from a library's error text, or a file name) become spaces, so the
    message is always one line.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(_LINE_BREAKS.sub(" ", str(message)))


def one_line(e: BaseException) -> str:
    """An exception's message on one line, without the noise of long reprs.

    For an ``OSError`` with an errno, the system's words for it ("Read-only file
    system", "No space left on device"), without the file name the caller names
    anyway and without HDF5's report of the failed call around them; otherwise the
    text, every run of whitespace made one space, at most 200 characters.
    """
    system = isinstance(e, OSError) and isinstance(e.errno, int) and e.errno > 0
    text = " ".join((os.strerror(e.errno) if system else str(e)).split()) or type(e).__name__
    return text if len(text) < 200 else text[:197] + "..."


class Stopped(Exception):
    """A run stopped at a chunk boundary because of signal ``signum``, after ``step`` steps.

    ``checkpoint`` is the directory its state was saved in, if one was set.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"stopped by signal {signum} after step {step}")


class SettingError(JaxstyleError):
    """A setting's value refused, in a message that names the settings it is about.

    ``template`` writes each setting as ``$name`` (its field name), e.g.
    ``SettingError("$lr must be a number > 0, not 0.0", "lr")``. ``str()`` names them in
    words (``lr must be ...``, ``style weight must be ...``), as the Python API's users
    read them; :meth:`naming` with another speller, as the command line names its
    options (``--lr must be ...``). A template that names none of its settings (a
    message from elsewhere, e.g. ``unknown style layer 'relu9_9': ...``) is about the
    first, which a speller other than words puts in front: ``--style-layers: unknown ...``.

    Attributes:
      template: the message, with ``$name`` where a setting is named.
      settings: the field names of the settings the message is about, the one at fault first.
    """

    def __init__(self, template: str, *settings: str) -> None:
        self.template, self.settings = template, settings
        super().__init__(self.naming(in_words))

    @property
    def setting(self) -> str:
        """The setting at fault."""
        return self.settings[0]

    def naming(self, spell: Callable[[str], str]) -> str:
        """The message with each setting written as ``spell(name)``."""
        template = string.Template(self.template)
        text = template.safe_substitute({name: spell(name) for name in self.settings})
        if spell is not in_words and not set(template.get_identifiers()) & set(self.settings):
            text = f"{spell(self.setting)}: {text}"
        return _LINE_BREAKS.sub(" ", text)

    def __reduce__(self) -> tuple[type[SettingError], tuple[str, ...]]:
        return type(self), (self.template, *self.settings)


def in_words(name: str) -> str:
    """A setting's field name as words: ``style_weight`` -> ``style weight``."""
    return name.replace("_", " ")
