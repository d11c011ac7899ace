"""marshmallow's import-time e-mail regexes, compiled at their first use instead of at every start-up.

At 0.1 vCPU every 10 ms of CPU before the first answer is 0.1 s of cold start. `marshmallow.validate`
compiles two e-mail regexes when it is imported (~20 ms of CPU: case-insensitive Unicode character
classes), and slimserve validates no e-mail address. They are deferred, not removed: the first e-mail
validation compiles them. (werkzeug's URL builders get the same treatment: `app.LazyBuilderRule`.)

This module imports nothing heavy: `slimserve/__init__` installs the hook in every process that imports
the package, including gunicorn's master (it loads our worker class) and the bare reference app's.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import re
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_MARSHMALLOW_VALIDATE = "marshmallow.validate"
_compile_lock = threading.Lock()


class LazyPattern:
    """A compiled regex stand-in that compiles on first use (only `match`/`search`/… attributes are used)."""

    def __init__(self, pattern: str, flags: int) -> None:
        self._source = (pattern, flags)
        self._compiled: re.Pattern | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # class creation probes e.g. __set_name__: that must not compile it
            raise AttributeError(name)
        if self._compiled is None:
            self._compiled = re.compile(*self._source)
        return getattr(self._compiled, name)


class _LazyRegexLoader(importlib.abc.Loader):
    """Runs a module with `re.compile` returning LazyPattern for the module's own import-time compiles."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        """As the wrapped loader does."""
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        """Run the module with its own `re.compile` calls made lazy; every other caller is untouched."""
        eager = re.compile

        def compile_lazily(pattern: Any, flags: int = 0) -> Any:
            if sys._getframe(1).f_globals.get("__name__") == module.__name__ and isinstance(pattern, str):
                return LazyPattern(pattern, flags)
            return eager(pattern, flags)

        with _compile_lock:
            re.compile = compile_lazily
            try:
                self.inner.exec_module(module)
            finally:
                re.compile = eager


class DeferMarshmallowRegexes(importlib.abc.MetaPathFinder):
    """An import hook that acts on `marshmallow.validate` alone, and only if and when it is imported."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        """marshmallow.validate's usual spec, with a loader that makes its import-time regexes lazy."""
        if fullname != _MARSHMALLOW_VALIDATE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _LazyRegexLoader(spec.loader)
        return spec


def defer_marshmallow_regexes() -> None:
    """Install the import hook (idempotent; nothing is imported now, and a process without marshmallow pays
    nothing — gunicorn's master imports our worker class, and the bare reference app runs under it too)."""
    if not any(isinstance(finder, DeferMarshmallowRegexes) for finder in sys.meta_path):
        sys.meta_path.insert(0, DeferMarshmallowRegexes())
