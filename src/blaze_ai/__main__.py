"""``python -m blaze_ai`` runs the ``blaze`` command."""

from blaze_ai.cli import app

app()
