"""WSGI entry point: gunicorn serves HTTP (not /ws/ nor the long-poll) behind nginx in the production topology."""

import ipaddress
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xiaoxiang.settings")
django_application = get_wsgi_application()

# The proxies whose X-Real-IP header names the client: addresses or networks,
# comma-separated (nginx on the same host by default).
TRUSTED_PROXIES = [
    ipaddress.ip_network(entry.strip(), strict=False)
    for entry in os.environ.get("TRUSTED_PROXIES", "127.0.0.1,::1").split(",")
    if entry.strip()
]


def _trusted(address: str | None) -> bool:
    try:
        peer = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(peer in network for network in TRUSTED_PROXIES if network.version == peer.version)


def application(environ, start_response):
    # Behind nginx every peer is nginx: the client's address, which
    # throttling and logs need, is the X-Real-IP it sets.
    real_ip = environ.get("HTTP_X_REAL_IP")
    if real_ip and _trusted(environ.get("REMOTE_ADDR")):
        environ["REMOTE_ADDR"] = real_ip
    return django_application(environ, start_response)
