"""Run OmniRouter embedded: SQLite, in-memory channel layer, and one loop in-process that runs
Celery beat's schedule, routing passes and outbound sends (``omnirouter.embedded``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Migrate, load demo data, and serve the product with the routing loop in this process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument(
            "--simulate", action="store_true", help="Start the traffic simulator at once."
        )
        parser.add_argument(
            "--interval", type=float, default=4.0, help="Mean seconds between simulated arrivals."
        )
        parser.add_argument("--no-seed", action="store_true", help="Do not load demo data.")
        parser.add_argument(
            "--history",
            type=int,
            default=1000,
            help="Closed past items to generate once, for assistance to learn from (0: none).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.ROUTING_MODE != "embedded":
            raise CommandError(
                "rundemo runs the routing loop in-process; unset REDIS_URL / set "
                "ROUTING_MODE=embedded (production runs Celery workers and beat instead)."
            )
        from demo import messaging_seed as messaging_demo
        from demo import seed as demo
        from demo import simulator
        from omnirouter import embedded

        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        if not options["no_seed"]:
            info = demo.seed_demo()
            messaging_demo.seed_messaging_demo()
            if options["history"]:
                demo.seed_history(options["history"])
            self._print_logins(info, options["addrport"])
        embedded.start()
        if options["simulate"]:
            simulator.start(options["interval"])
            self.stdout.write(f"Traffic simulator on: one arrival every ~{options['interval']} s.")
        else:
            self.stdout.write("Traffic simulator off: switch it on at /demo/ (or --simulate).")
        call_command("runserver", options["addrport"], use_reloader=False)

    def _print_logins(self, info: dict[str, Any], addrport: str) -> None:
        host = addrport if ":" in addrport else f"127.0.0.1:{addrport}"
        out = self.stdout
        out.write(self.style.SUCCESS(f"\nOmniRouter demo at http://{host}/"))
        out.write("  Agent console: /console/   Supervisor: /supervisor/   Admin: /admin/")
        out.write("  API: /api/docs/   Demo shop with web chat: /demo/shop/   Demo page: /demo/\n")
        out.write("  Logins (username / password / role):")
        for username, password, role in info["logins"]:
            out.write(f"    {username:<11} {password:<14} {role}")
        out.write(f"  Intake API token: {info['intake_token']}\n")
