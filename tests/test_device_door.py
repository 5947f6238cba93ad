"""Door drivers on gpiozero mock pins: the pin states (and their timing) are what the tests assert."""

import subprocess
import sys
import time

import pytest

pytest.importorskip("gpiozero")
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from tl.device.errors import ConfigError
from tl.device.hw.doors import Door, DoorError, RelayDoor, ServoDoor, make_door


@pytest.fixture
def default_factory():
    """Swaps gpiozero's global pin factory for a fresh MockFactory, restoring it afterwards."""
    saved = Device.pin_factory
    Device.pin_factory = MockFactory()
    try:
        yield Device.pin_factory
    finally:
        Device.pin_factory.reset()
        Device.pin_factory = saved


def test_relay_on_mock_pins_records_open_and_close_with_times():
    factory = MockFactory()
    with make_door("relay", pin=17, pin_factory=factory) as door:
        pin = factory.pin(17)
        pin.clear_states()
        door.open_door()
        time.sleep(0.1)
        door.close_door()
        assert door.commands == [False, True, False]  # commanded closed when made
    pin.assert_states_and_times([(0.0, False), (0.0, True), (0.1, False)])
    assert door.is_open is False


def test_relay_active_low_inverts_the_pin():
    factory = MockFactory()
    door = RelayDoor(pin=27, active_low=True, pin_factory=factory)
    pin = factory.pin(27)
    assert pin.state is True  # closed = relay off = pin high
    door.open_door()
    assert pin.state is False
    door.close()
    assert [s.state for s in pin.states][-2:] == [False, True]


def test_close_is_safe_twice_and_closes_the_door_first():
    factory = MockFactory()
    door = make_door("mock", pin=5, pin_factory=factory)
    door.open_door()
    door.close()
    door.close()
    assert door.commands[-1] is False
    assert [s.state for s in factory.pin(5).states][-2:] == [True, False]
    with pytest.raises(DoorError, match="already released"):
        door.open_door()


def test_mock_kind_makes_its_own_mock_factory():
    door = make_door("mock", pin=17)
    assert isinstance(door, RelayDoor)
    door.open_door()
    assert door.pin.state is True
    door.close()
    assert door.pin.state is False or door.pin.function == "input"


def test_servo_moves_between_angles_on_pwm_mock_pins():
    factory = MockFactory(pin_class=MockPWMPin)
    door = ServoDoor(pin=18, open_angle=80, closed_angle=-10, pin_factory=factory)
    assert door.device.angle == pytest.approx(-10)
    door.open_door()
    assert door.device.angle == pytest.approx(80)
    door.close_door()
    assert door.device.angle == pytest.approx(-10)
    pwm = factory.pin(18)
    assert pwm.frequency == 50  # servo pulses
    door.close()
    door.close()


def test_servo_angle_out_of_range_is_refused_by_the_config():
    from tl.device.door import config

    with pytest.raises(ConfigError, match="-90..90"):
        config.load_config(None, {"door": "servo", "open_angle": 120})


def test_servo_on_a_factory_without_pwm_says_what_to_do():
    with pytest.raises(DoorError, match="GPIOZERO_PIN_FACTORY=mock"):
        make_door("servo", pin=18, pin_factory=MockFactory())


def test_default_factory_comes_from_gpiozero(default_factory):
    door = make_door("relay", pin=22)
    door.open_door()
    assert default_factory.pin(22).state is True
    door.close()


def test_gpiozero_env_var_selects_mock_pins():
    code = ("from tl.device.hw.doors import make_door\n"
            "d = make_door('relay', pin=17); d.open_door(); print(type(d.device.pin_factory).__name__, d.pin.state); d.close()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"GPIOZERO_PIN_FACTORY": "mock", "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["MockFactory", "True"]


def test_log_only_door_and_unknown_kind():
    door = make_door("none")
    assert type(door) is Door
    door.open_door()
    assert door.is_open
    door.close()
    assert door.commands == [False, True, False]
    with pytest.raises(ConfigError, match="relay, servo, mock, none"):
        make_door("trapdoor")
