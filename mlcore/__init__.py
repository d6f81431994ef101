"""Image and Keras code shared by the web process and the workers.

Nothing here imports Django, so it can be used from a notebook, a script or a
Celery task alike. TensorFlow is imported inside the functions that need it,
never at module level: a worker's parent process must not initialise it before
it forks (its thread pools and device state do not survive a fork: docs/architecture.md).
"""
