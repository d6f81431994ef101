"""The broker and the Celery workers as the web process sees them: whether the broker answers, and
which workers listen on which queue. Shared by /healthz (dlsite/views.py) and the queue page."""
from .celery import app as celery_app

QUEUES = ("default", "training")


def check_broker():
    """Returns "ok", or why the broker cannot be reached, within about 2 s. Ask this before
    `live_workers`: with the broker down, Celery's broadcast retries for about 6 s, then raises."""
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:
        return f"error: {exc}"


def live_workers(timeout=1.0):
    """{queue name: sorted names of the workers listening on it}, from the workers' own replies.

    Takes the whole `timeout`: Celery cannot know how many workers there are, so it waits that
    long for replies. Shared by /healthz and the queue page."""
    replies = celery_app.control.inspect(timeout=timeout).active_queues() or {}
    workers = {}
    for name, queues in replies.items():
        for queue in queues:
            workers.setdefault(queue["name"], []).append(name)
    return {queue: sorted(names) for queue, names in workers.items()}
