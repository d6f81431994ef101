import functools
import importlib
import os
import threading

from celery import Celery
from celery.signals import worker_init, worker_process_init
from celery.worker.control import inspect_command

from mlcore.devices import visible_gpus

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


# What the queue page and /healthz show of each worker (dlsite/workers.py): the queues it serves and
# the GPUs it sees, in one answer, so that the web process asks once (a question takes a whole second)
# and never loads TensorFlow to know the GPUs.

@functools.cache
def _gpus_seen():
    return visible_gpus()


@worker_init.connect
def _look_for_gpus(**kwargs):
    """Ask the driver once, as the worker starts (`nvidia-smi` can take a second, longer than the
    web process waits for answers); the answer does not change while the worker runs."""
    _gpus_seen()


@inspect_command()
def queues_and_gpus(state):
    consumer = state.consumer.task_consumer
    return {"queues": sorted(queue.name for queue in consumer.queues) if consumer else [], "gpus": _gpus_seen()}
