import sqlite3

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "订单"

    def ready(self) -> None:
        from django.db.backends.sqlite3.base import DatabaseFeatures

        # Django 5.2 assumes SQLite's old 999-variable limit and splits a 500-point GPS batch into a dozen
        # INSERTs; SQLite >= 3.32 allows 32766, so one statement (constant query count, as on PostgreSQL).
        if sqlite3.sqlite_version_info >= (3, 32):
            DatabaseFeatures.max_query_params = 32766
