"""``python -m rprop_bench``: see :mod:`rprop_bench.cli`."""

from rprop_bench.cli import main

if __name__ == "__main__":
    main()
