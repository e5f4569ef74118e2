"""Render nginx.conf from its template with this run's ports, then become nginx (foreground).

PORT is where nginx listens (honcho gives the Procfile's first process the
base PORT); WEB_PORT and WS_PORT are gunicorn's and Daphne's, on this host
unless WEB_UPSTREAM_HOST / WS_UPSTREAM_HOST name another (the compose
services `web` and `ws`). Everything
nginx writes goes under a fresh temporary prefix, so it runs unprivileged,
side by side with other copies of itself.
"""

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"@[A-Z_]+@")


def render(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        template = template.replace(f"@{name}@", value)
    leftover = PLACEHOLDER.findall(template)
    if leftover:
        raise SystemExit(f"nginx template has unfilled placeholders: {sorted(set(leftover))}")
    return template


def main() -> None:
    missing = [name for name in ("PORT", "WEB_PORT", "WS_PORT") if not os.environ.get(name)]
    if missing:
        raise SystemExit(f"deploy/nginx/run.py needs {', '.join(missing)} in the environment")
    prefix = Path(tempfile.mkdtemp(prefix="xiaoxiang-nginx-"))
    values = {
        "PREFIX": str(prefix),
        "CONF_DIR": str(CONF_DIR),
        # nginx is the public origin: every interface unless NGINX_HOST narrows it.
        "LISTEN": f"{os.environ.get('NGINX_HOST', '0.0.0.0')}:{os.environ['PORT']}",  # noqa: S104
        "WEB_UPSTREAM": f"{os.environ.get('WEB_UPSTREAM_HOST', '127.0.0.1')}:{os.environ['WEB_PORT']}",
        "WS_UPSTREAM": f"{os.environ.get('WS_UPSTREAM_HOST', '127.0.0.1')}:{os.environ['WS_PORT']}",
    }
    conf = prefix / "nginx.conf"
    conf.write_text(render((CONF_DIR / "nginx.conf.template").read_text(), values))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    sys.stdout.flush()
    # exec: honcho's signals reach nginx itself (SIGTERM is its fast shutdown).
    os.execv(nginx, [nginx, "-e", "stderr", "-p", str(prefix), "-c", str(conf)])  # noqa: S606


if __name__ == "__main__":
    main()
