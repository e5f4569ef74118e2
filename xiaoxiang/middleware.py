"""WhiteNoise that can sit in an async middleware chain.

Stock WhiteNoiseMiddleware is sync-only, which makes Django run every request
below it in a thread, async views included: a 30 s long-poll would pin a
thread for its whole wait. This subclass serves files the same way and
otherwise awaits the rest of the chain on the event loop.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None) -> None:
        super().__init__(get_response)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        static_file = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        if static_file is not None:
            # Opening the file is quick; the body streams from Django's handler.
            return self.serve(static_file, request)
        return await self.get_response(request)
