"""WSGI entry point: gunicorn serves HTTP (not /ws/ nor the long-poll) behind nginx in the production topology."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xiaoxiang.settings")
django_application = get_wsgi_application()

from xiaoxiang.client_ip import wsgi_environ_apply  # noqa: E402


def application(environ, start_response):
    # Behind nginx every peer is nginx: the client's address, which
    # throttling, the blocklist and logs need, is the X-Real-IP it sets.
    wsgi_environ_apply(environ)
    return django_application(environ, start_response)
