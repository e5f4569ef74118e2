from django.core.management.base import BaseCommand

from orders.services import order_encryption_rotate


class Command(BaseCommand):
    help = "Re-encrypt encrypted columns under the newest key of FIELD_ENCRYPTION_KEYS (run after adding a key)."

    def handle(self, *args, **options) -> None:
        count = order_encryption_rotate()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} order(s) under the newest key."))
