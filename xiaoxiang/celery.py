"""The Celery app: Redis broker in production, in-process (eager) without REDIS_URL."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xiaoxiang.settings")

app = Celery("xiaoxiang")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
