"""Helpers shared by the tests (scenes, tiny models, a real mosquitto broker); fixtures live in conftest.py."""
