"""``python -m bench`` and the ``gan-bench`` script: the command line, whose start-up a Ctrl-C
ends with one line rather than a traceback."""

import sys


def entry() -> int:
    """Import the command line and run it."""
    try:
        from bench.cli import main
    except KeyboardInterrupt:  # inside `import rich`, say: nothing has started yet
        sys.stderr.write("error: interrupted\n")
        return 130
    return main()


if __name__ == "__main__":
    raise SystemExit(entry())
