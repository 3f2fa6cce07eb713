"""``python -m semtune.models``: the registry command's old and documented name.

The command itself is ``semtune.registry`` (a CLI over ``semtune.tracking``); this package holds
the networks and sits below tracking, so this forwarder is the one import upwards it has
(pyproject.toml's import-linter contract names it).
"""

from semtune.registry import main

if __name__ == "__main__":
    raise SystemExit(main())
