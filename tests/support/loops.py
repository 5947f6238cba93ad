"""A fake door loop with nothing but the observers' interface: snapshot(), subscribe, add_reporter.

Observers that reached into a loop's parts (door, policy, events, classifier, gate) fail against it
with AttributeError: it has none.
"""

import dataclasses

from tl.device.door.state import LoopSnapshot


class FakeLoop:
    """Publishes `state` (a LoopSnapshot, changed with `set`) and the events given to `emit`."""

    __slots__ = ("_state", "_listeners", "_reporters")

    def __init__(self, **fields):
        self._state = LoopSnapshot(**fields)
        self._listeners = []
        self._reporters = {}

    def snapshot(self):
        return dataclasses.replace(self._state,
                                   reporters={name: status() for name, status in self._reporters.items()})

    def subscribe(self, callback):
        self._listeners.append(callback)

    def unsubscribe(self, callback):
        if callback in self._listeners:
            self._listeners.remove(callback)

    def add_reporter(self, name, status):
        self._reporters[name] = status

    def remove_reporter(self, name):
        self._reporters.pop(name, None)

    # Test controls, not part of the interface.
    def set(self, **fields):
        self._state = dataclasses.replace(self._state, **fields)

    def emit(self, record):
        for listener in list(self._listeners):
            listener(record)

    def listeners(self):
        return len(self._listeners)
