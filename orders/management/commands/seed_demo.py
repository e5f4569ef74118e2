from django.core.management.base import BaseCommand, CommandParser

from orders.demo import DEFAULT_PASSWORD, demo_seed


class Command(BaseCommand):
    help = "Create or refresh the demo data (idempotent): catalogue, a warehouse, admin, warehouse1, riders, customers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--riders", type=int, default=3)
        parser.add_argument("--customers", type=int, default=3)
        parser.add_argument("--password", default=DEFAULT_PASSWORD)

    def handle(self, *args, riders: int, customers: int, password: str, **options) -> None:
        if riders < 0 or customers < 0:
            self.stderr.write("--riders and --customers must not be negative")
            raise SystemExit(2)
        accounts = demo_seed(riders=riders, customers=customers, password=password)
        self.stdout.write(self.style.SUCCESS("Demo data ready. Accounts (all with the same password):"))
        for role, usernames in accounts.items():
            self.stdout.write(f"  {role:<9} {', '.join(usernames) or '-'}")
        self.stdout.write(f"  password  {password}")
