import importlib
import os
import threading

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dlsite.settings")

app = Celery("dlsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _warm_up_for_predicting(**kwargs):
    """Each process of a worker that serves the default queue (classifications and exports run there)
    imports TensorFlow as it starts, in a thread so that it takes other work at once: the first
    classification then does not wait 3 to 5 s for the import. In the pool's process, never in the
    parent that forks it (docs/architecture.md, "TensorFlow and forking")."""
    if "default" in (app.amqp.queues.consume_from or {}):
        threading.Thread(target=importlib.import_module, args=("tensorflow",), daemon=True,
                         name="import tensorflow").start()
