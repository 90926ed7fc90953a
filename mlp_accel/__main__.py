"""``python -m mlp_accel`` runs the ``mlp-accel`` command."""

from .cli import main

raise SystemExit(main())
