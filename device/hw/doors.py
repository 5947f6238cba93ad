"""Door drivers over gpiozero: a relay/solenoid, a servo, mock pins, or none (log only).

gpiozero is imported only when a gpiozero door is made. Pins come from gpiozero's own pin factory
mechanism: an explicit `pin_factory`, else GPIOZERO_PIN_FACTORY (`mock` works), else the Pi's.
Every door is commanded closed when it is made and when it is closed as a resource.
"""

import logging

from tl.device.errors import ConfigError, DoorError

log = logging.getLogger(__name__)

DOOR_KINDS = ("relay", "servo", "mock", "none")


class Door:
    """A door: `open_door()`, `close_door()`, and `close()` (close the door, release the pins).

    Attributes:
      is_open: the last state commanded.
      commands: every state commanded, in order (True = open).
    """

    kind = "none"

    def __init__(self):
        self.is_open = False
        self.commands = []
        self._released = False

    def __str__(self):
        return f"{self.kind} door"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def open_door(self):
        """Commands the door open."""
        self._command(True)

    def close_door(self):
        """Commands the door closed (again, if it already is: a command is cheap, a stuck door is not)."""
        self._command(False)

    def close(self):
        """Closes the door and releases its pins; safe twice."""
        if self._released:
            return
        try:
            self.close_door()
        finally:
            self._released = True
            self._release()

    def _command(self, is_open):
        if self._released:
            raise DoorError(f"{self} was already released")
        self._drive(is_open)
        if is_open != self.is_open:
            log.info("%s %s", self, "open" if is_open else "closed")
        self.is_open = is_open
        self.commands.append(is_open)

    def _drive(self, is_open):
        """Sets the hardware; the log-only door has none."""

    def _release(self):
        """Frees the hardware."""


class RelayDoor(Door):
    """A relay or solenoid on one GPIO pin (gpiozero OutputDevice): energised = open.

    Args:
      pin: the GPIO pin (17 or "GPIO17"; gpiozero's pin names).
      active_low: for relay boards that switch on a low input.
      pin_factory: a gpiozero pin factory; None for gpiozero's default.
    """

    kind = "relay"

    def __init__(self, pin=17, active_low=False, pin_factory=None, mock=False):
        super().__init__()
        self.mock = mock  # a relay on gpiozero's MockFactory pins: says so in logs and the start event
        self.device = _make_device("OutputDevice", pin, active_high=not active_low, initial_value=False,
                                   pin_factory=pin_factory)
        self.pin = self.device.pin

    def __str__(self):
        return f"{'mock' if self.mock else 'relay'} door on {self.pin}"

    def _drive(self, is_open):
        self.device.value = is_open

    def _release(self):
        self.device.close()


class ServoDoor(Door):
    """A servo-driven latch (gpiozero AngularServo), at `closed_angle` or `open_angle` degrees.

    Args:
      pin: the GPIO pin of the servo's signal wire.
      open_angle, closed_angle: degrees in -90..90 (checked by the config).
      pin_factory: a gpiozero pin factory that does PWM; None for gpiozero's default.
    """

    kind = "servo"

    def __init__(self, pin=17, open_angle=90.0, closed_angle=0.0, pin_factory=None):
        super().__init__()
        self.angles = {True: float(open_angle), False: float(closed_angle)}
        self.device = _make_device("AngularServo", pin, initial_angle=closed_angle, min_angle=-90, max_angle=90,
                                   pin_factory=pin_factory)
        self.pin = self.device.pwm_device.pin

    def __str__(self):
        return f"servo door on {self.pin}"

    def _drive(self, is_open):
        self.device.angle = self.angles[is_open]

    def _release(self):
        self.device.close()


def _make_device(class_name, pin, **kwargs):
    try:
        import gpiozero
    except ImportError as e:
        raise DoorError("gpiozero is not installed; pip install 'tl-edge[device]', or use --door none") from e
    try:
        return getattr(gpiozero, class_name)(pin, **kwargs)
    except gpiozero.GPIOZeroError as e:
        raise DoorError(
            f"cannot drive GPIO pin {pin} ({type(e).__name__}: {e}); on a Raspberry Pi install the "
            "[device] extra (gpiozero, lgpio) and check the pin; elsewhere use --door mock or --door none, "
            "or set GPIOZERO_PIN_FACTORY=mock"
        ) from e


def make_door(kind, pin=17, active_low=False, open_angle=90.0, closed_angle=0.0, pin_factory=None):
    """Makes the door `kind` names, commanded closed.

    Args:
      kind: "relay", "servo", "mock" (a relay on gpiozero MockFactory pins, for tests and demos)
        or "none" (log only).
      pin, active_low: the relay's (or servo's) pin and polarity.
      open_angle, closed_angle: the servo's angles.
      pin_factory: a gpiozero pin factory; None lets gpiozero choose (GPIOZERO_PIN_FACTORY...).

    Raises:
      ConfigError: an unknown kind. DoorError: the GPIO cannot be used.
    """
    if kind == "none":
        door = Door()
    elif kind == "mock":
        from gpiozero.pins.mock import MockFactory

        door = RelayDoor(pin, active_low, pin_factory=pin_factory or MockFactory(), mock=True)
    elif kind == "relay":
        door = RelayDoor(pin, active_low, pin_factory=pin_factory)
    elif kind == "servo":
        door = ServoDoor(pin, open_angle, closed_angle, pin_factory=pin_factory)
    else:
        raise ConfigError(f"door {kind!r} is unknown; use one of {', '.join(DOOR_KINDS)}")
    door.close_door()
    return door
