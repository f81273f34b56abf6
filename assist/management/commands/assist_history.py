"""Write a generated history of closed work to learn from (``assist.history``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from assist import history


class Command(BaseCommand):
    help = "Write generated closed items (English and Japanese cases and chats) to train on."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=5000)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args: Any, **options: Any) -> None:
        written = history.seed_history(options["count"], seed=options["seed"])
        self.stdout.write(f"Wrote {written} closed items.")
