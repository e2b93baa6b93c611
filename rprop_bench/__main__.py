"""``python -m rprop_bench``: see :mod:`rprop_bench.cli`."""

import sys

from rprop_bench.signals import Interrupted, forget_caught_interrupt, install_sigterm_handler

if __name__ == "__main__":
    # Before the CLI's imports (seconds): SIGTERM or Ctrl-C during them is one line and
    # 128 + the signal, as later, not Python's death by the signal.
    install_sigterm_handler()
    try:
        from rprop_bench.cli import main
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else 2
        print("error: interrupted while starting; nothing was recorded", file=sys.stderr)
        forget_caught_interrupt()
        sys.exit(128 + signum)
    main()
