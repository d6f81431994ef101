"""gunicorn's settings for the web server that `make run` starts (supervisord.conf, [program:web]).

Two processes, not one: a process runs Python on one core at a time, and with one the status pages
that every open run page polls queued behind each other and behind predictions (benchmarks/soak.py:
p95 297 ms for 16 busy clients with one process of 8 threads). Each process that classifies images
loads TensorFlow and the models it serves (some hundreds of MB), so a small server may want 1.
"""
import os

workers = int(os.environ.get("WEB_PROCESSES", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = 120  # seconds a request may take before its process is restarted (a large predict post)
