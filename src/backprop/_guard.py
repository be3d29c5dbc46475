"""The guard that keeps a network's weights whole while it trains without the GIL."""

from __future__ import annotations

import threading
from contextlib import contextmanager


class Guard:
    """Lets any number of readers or one writer use a network at a time; refuses the rest.

    Training writes the weights in place without the GIL: a second thread that read or
    wrote them meanwhile would see half-updated weights, so it gets a RuntimeError. The
    writing thread itself may read: it runs Python (fit's callbacks) only between two
    kernel calls, when the weights are whole; it may not start a second write.
    """

    def __init__(self):
        self._mutex = threading.Lock()
        self._readers = 0
        self._writing = False
        self._writer = None  # the writing thread's identifier

    # The flags are set inside the try, and the writer's is cleared by a plain store, so
    # that a KeyboardInterrupt arriving between two statements cannot leave them set.

    @contextmanager
    def reading(self):
        entered = False
        try:
            with self._mutex:
                if self._writing and self._writer != threading.get_ident():
                    raise RuntimeError("the network is being trained in another thread")
                self._readers += 1
                entered = True
            yield
        finally:
            if entered:
                with self._mutex:
                    self._readers -= 1

    @contextmanager
    def writing(self):
        entered = False
        try:
            with self._mutex:
                if self._writing and self._writer == threading.get_ident():
                    raise RuntimeError(
                        "the network is being trained: a fit's callback may read it, not "
                        "train or change it"
                    )
                if self._writing or self._readers:
                    raise RuntimeError("the network is in use in another thread")
                self._writer = threading.get_ident()
                self._writing = entered = True
            yield
        finally:
            if entered:
                self._writing = False
