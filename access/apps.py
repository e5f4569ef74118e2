from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "访问控制"

    def ready(self) -> None:
        from access import signals  # noqa: F401  (blocklist copies refresh on save; logout closes session sockets)
