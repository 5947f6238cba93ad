"""What every tl-edge command line shares: -h/--help, exit codes, one logging set-up, one error style.

tl-train, tl-convert, tl-device and tl-bench all import this module, so it may import only click and
`tl.device.errors` (nothing that pulls in a runtime, OpenCV or TensorFlow).

Exit codes: 0 ok; 1 a bug (a traceback is printed: please report it); 2 bad input or config (one
line says what and how to fix it); 3 the command ran but a check it was asked to make failed;
130 interrupted. Messages are `PROG: error: ...`, `PROG: warning: ...`.
"""

import contextlib
import functools
import logging
import os
import sys
import traceback

import click

from tl.device.errors import TLError

EXIT_OK = 0
EXIT_BUG = 1
EXIT_INPUT = 2
EXIT_CHECK = 3
EXIT_INTERRUPTED = 130

# Every command and subcommand takes -h as well as --help.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def exit_codes(check=None):
    """The epilogue line every --help ends with; `check` says what exit code 3 means for this command."""
    three = f"; 3 {check}" if check else ""
    return f"\b\nExit codes: 0 ok; 1 a bug (please report it); 2 bad input or config{three}."


def prog_name():
    """The running command's program name (tl-device, tl-bench...), from click's context."""
    ctx = click.get_current_context(silent=True)
    return ctx.find_root().info_name if ctx is not None else os.path.basename(sys.argv[0])


def echo_error(message, prog=None):
    """Prints `PROG: error: message` on stderr."""
    click.secho(f"{prog or prog_name()}: error: {message}", fg="red", err=True)


def fail(message, code=EXIT_INPUT, prog=None):
    """Prints `PROG: error: message` on stderr and exits with `code` (2: bad input; 3: a check failed)."""
    echo_error(message, prog)
    sys.exit(code)


def exits_on_error(func=None, *, prog=None, interrupted="interrupted"):
    """Turns a command's failures into exit codes: TLError 2, Ctrl-C 130, anything else 1 (a bug).

    tl-edge's own errors become one line, never a traceback; an unexpected exception prints its
    traceback (that is a bug to report) and exits 1. Use as `@exits_on_error` or `@exits_on_error(prog=...)`.
    """
    if func is None:
        return functools.partial(exits_on_error, prog=prog, interrupted=interrupted)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TLError as e:
            fail(str(e), EXIT_INPUT, prog)
        except KeyboardInterrupt:
            click.echo(f"{prog or prog_name()}: {interrupted}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`tl-device classify ... | head`): stop quietly, as Unix tools do.
            _silence_stdout()
            sys.exit(EXIT_BROKEN_PIPE)
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            echo_error(f"{type(e).__name__}: {e} (a bug in tl-edge: please report it with the traceback above)", prog)
            sys.exit(EXIT_BUG)

    return wrapper


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader closed


def _silence_stdout():
    """Points stdout at /dev/null, so Python's own flush at exit does not complain about the closed pipe."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (a test's captured stdout)
        pass


class _EchoHandler(logging.Handler):
    """Prints log records with click on stderr (resolved per record, so CliRunner captures them too)."""

    def __init__(self, prog, timestamps=False):
        super().__init__()
        self.prog = prog
        self.timestamps = timestamps

    def emit(self, record):
        try:
            if record.levelno >= logging.WARNING:  # a message to the user: PROG: warning: ...
                head = f"{self.prog}: {record.levelname.lower()}: "
            else:  # progress and status lines; debug lines say where they come from
                head = f"{record.name}: " if record.levelno < logging.INFO else ""
            when = f"{self.formatter.formatTime(record)} " if self.timestamps else ""
            click.echo(f"{when}{head}{record.getMessage()}", err=True)
        except Exception:
            self.handleError(record)


def log_level(verbose=0, quiet=False, default=logging.INFO):
    """-q: warnings only; default: `default`; -v: info; -vv: debug."""
    if quiet:
        return logging.WARNING
    if verbose > 1:
        return logging.DEBUG
    return min(default, logging.INFO) if verbose else default


@contextlib.contextmanager
def cli_logging(prog, verbose=0, quiet=False, default=logging.INFO, timestamps=False, name="tl"):
    """Shows tl-edge's log records on stderr while a command runs, then restores logging as it was.

    Args:
      prog: the program name each line starts with.
      verbose: -v count; quiet: -q.
      default: the level without -v/-q.
      timestamps: start each line with the time (a daemon in a terminal; journald adds its own).
      name: the logger shown (default: every `tl.*` logger).
    """
    logger = logging.getLogger(name)
    handler = _EchoHandler(prog, timestamps)
    handler.setFormatter(logging.Formatter())
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(log_level(verbose, quiet, default))
    # A library's import may give the root logger a handler (TensorFlow does); one copy of each line is enough.
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
