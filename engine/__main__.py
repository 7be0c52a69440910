"""`python -m engine` is the same as the `latentforge` console script."""

from engine.cli import main

raise SystemExit(main())
