from axes.backends import AxesStandaloneBackend


class LoginLockoutBackend(AxesStandaloneBackend):
    """django-axes' lockout check for every login that comes with a request (the token endpoint, the login page).

    Authentication without a request (a shell, `Client.login` in tests) has
    no client address to lock and is no attack surface; axes would refuse it.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
