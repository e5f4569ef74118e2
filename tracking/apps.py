from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "配送追踪"

    def ready(self) -> None:
        from tracking import signals  # noqa: F401  (connects the realtime hook)
        from tracking.metrics import DomainCollector
        from xiaoxiang.metrics import collector_register

        collector_register(DomainCollector())
