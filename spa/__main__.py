"""`python -m spa` and the `spa` script: the command, with Ctrl-C during start-up (importing the command
line takes a moment) ending in one line instead of a traceback."""

import sys


def run() -> None:
    try:
        from .cli import main
    except KeyboardInterrupt:
        print("spa: error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    main()


if __name__ == "__main__":
    run()
