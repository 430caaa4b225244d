"""infsh worker runtime: runs one inference.sh-style app for the infsh host.

Started by the host as ``python -u -m infsh_worker`` (see docs/protocol.md);
``__main__`` is the entry point. This file stays import-cheap on purpose: it
is imported before the app, and everything here is paid on every worker start.

It owns the two names that other code may refer to by their full path:
``PROTOCOL_VERSION`` (sent in ``ready``) and ``Cancelled``, the exception
injected into a thread running a plain ``def`` function that was cancelled.
"""

PROTOCOL_VERSION = 1


class Cancelled(BaseException):
    """Raised inside a plain ``def`` app function whose call was cancelled.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that an app's broad
    ``except Exception:`` does not swallow it.
    """
