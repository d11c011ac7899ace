"""gunicorn settings for one small container (256 MB, 0.1 vCPU): one worker, a few threads."""

import gc
import os

# numpy's OpenBLAS starts one thread per visible CPU at import (the host's CPUs, not our 0.1 vCPU quota);
# on 2 CPUs the spare thread cost 30-40 ms CPU at import, 0.3-0.4 s of cold start at 0.1 vCPU, more on
# bigger hosts. Set here, in the master, so the worker inherits it before it imports numpy. The service
# does no BLAS work worth threading.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

wsgi_app = "scripts.deploy.deploy:app"
bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# One worker: a second copy of the model and runtime would double memory for no CPU we have.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# Our gthread variant: the event loop buffers whole requests under read deadlines (slow clients cost a
# buffer, not a thread), predictions run on `threads` threads with at most SLIMSERVE_MAX_INFLIGHT in flight
# (the rest get 503 + Retry-After at once), /health and /ready are answered by the loop itself, and other
# GET routes have two threads of their own.
worker_class = "slimserve.worker.BufferingWorker"
# One prediction thread: at 0.1 vCPU a second one adds no throughput, only GIL contention with the loop.
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# The heartbeat file on tmpfs: a disk-backed /tmp can stall the worker and get it killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# At 0.1 vCPU the first requests after a wake-up are slow; do not kill a worker that is merely starved.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 20
keepalive = 5
# Bounded request lines/headers: part of refusing oversized input before reading it.
limit_request_line = 4094
limit_request_fields = 50
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Method and path without the query string (%(U)s, never %(r)s or %(q)s): a URL can carry a patient's name
# (`?filename=Jane_Doe.jpeg`). No referer or user agent either.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s'


def post_fork(server, worker):
    """In the new worker, before it imports the app: no cyclic GC while the import builds its objects."""
    # Collections during the import walk a growing heap of modules, classes and functions that all stay
    # alive: 15-50 ms CPU, 0.15-0.45 s of cold start at 0.1 vCPU (measured with scripts/bench).
    gc.disable()


def post_worker_init(worker):
    """The app is imported: collect normally again, leaving the startup objects out of every collection."""
    gc.freeze()
    gc.enable()
