"""What a crafted checkpoint item holds: an object that pickles to a call of ``os.system``.
Unpickling it writes ``marker``; a test asserts the file never appears."""

from __future__ import annotations

import os


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)
