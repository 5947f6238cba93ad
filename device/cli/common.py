"""What every tl-edge command line shares: tl-edge's own errors become one line and exit code 2."""

import functools
import sys

import click

from tl.device.errors import TLError


def exits_on_error(func):
    """Turns tl-edge's own errors into one line on stderr and exit code 2 (tracebacks are for bugs)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TLError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(2)

    return wrapper
