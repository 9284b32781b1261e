"""Tasks of a free-energy calculation, their durable results, and running them on Dask.

Every window, end-state sample and switch is a :class:`Task`.  Its result (arrays, with the key of
the settings that made it) is written by the worker that ran it, atomically (a temporary file in
the same folder, then ``os.replace``), to ``<folder>/tasks/<leg>/<kind>-<index>.npz``.  A task whose
file holds the current settings key is done: :func:`runTasks` skips it, so a resumed calculation
reruns nothing finished, and the analysis can read whatever is done.

:func:`runTasks` runs the pending tasks in this process (``workers=1``), on a Dask
``distributed.LocalCluster`` of worker processes listening on the loopback interface only, or on
a running scheduler given by address.  A task whose worker dies is retried (``retries``).
"""
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["Task", "ResultStore", "runTasks", "runJobs", "daskClient", "gpuCount"]


@dataclass(frozen=True)
class Task:
    """One unit of work: a window, an end-state sampling, or a switch of one leg."""

    #: The leg ('complex', 'solvent', 'water', 'vacuum', ...).
    leg: str
    #: 'window', 'endstate' or 'switch' (or another name the task function knows).
    kind: str
    #: Its index within the leg and kind.
    index: int
    #: Its random seed.
    seed: int

    @property
    def name(self):
        return f"{self.leg}/{self.kind}-{self.index:04d}"


class ResultStore:
    """The results of tasks in ``folder``/tasks, each an .npz with the settings ``key`` (and, if
    given, ``settings``: the text the key was made from, stored with every result as ``_settings``)."""

    def __init__(self, folder, key, settings=None):
        self.folder, self.key, self.settings = os.path.abspath(folder), str(key), settings

    def path(self, task):
        return os.path.join(self.folder, "tasks", task.leg, f"{task.kind}-{task.index:04d}.npz")

    def done(self, task):
        """Whether ``task`` has a result made with the current settings."""
        path = self.path(task)
        if not os.path.isfile(path):
            return False
        try:
            with np.load(path, allow_pickle=False) as data:
                return str(data["_key"]) == self.key
        except Exception:
            return False  # a damaged file: run it again

    def save(self, task, arrays):
        """Write ``arrays`` (name -> array) for ``task`` atomically."""
        path = self.path(task)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=os.path.dirname(path))
        try:
            with os.fdopen(handle, "wb") as f:
                extra = {} if self.settings is None else {"_settings": np.array(str(self.settings))}
                np.savez(f, _key=np.array(self.key), _seed=np.array(task.seed), **extra, **arrays)
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise
        return path

    def load(self, task):
        """The arrays of a finished task (without the bookkeeping entries)."""
        with np.load(self.path(task), allow_pickle=False) as data:
            return {k: data[k] for k in data.files if not k.startswith("_")}

    def progress(self, tasks):
        """(done, total) of ``tasks``."""
        tasks = list(tasks)
        return sum(1 for t in tasks if self.done(t)), len(tasks)


def _execute(function, task, store):
    """Run one task and write its result (on the worker)."""
    if store.done(task):
        return task.name, 0.0
    start = time.perf_counter()
    arrays = function(task)
    store.save(task, arrays)
    return task.name, time.perf_counter() - start


def runTasks(tasks, function, store, workers=1, scheduler=None, threadsPerWorker=1, retries=2, log=print):
    """Run every task of ``tasks`` that ``store`` does not hold yet.

    Parameters
    ----------
    tasks : sequence of Task
    function : callable
        ``function(task) -> dict of arrays``; for Dask it must be picklable (a module-level
        function, or a functools.partial of one with picklable arguments).
    store : ResultStore
    workers : int
        1: run here, one after another; more: a Dask LocalCluster of that many worker processes on
        127.0.0.1 (no dashboard).
    scheduler : str, optional
        The address of a running Dask scheduler (e.g. 'tls://10.0.0.5:8786'); ``workers`` is then
        ignored.
    retries : int
        How often Dask reruns a task that raised (a task whose worker died is rerun by the
        scheduler, up to its ``allowed-failures``).
    log : callable
        One line per finished task, with the count.

    Returns
    -------
    list of str
        The names of the tasks run now (the others were done already).
    """
    return runJobs([(task, function, store) for task in tasks], workers, scheduler, threadsPerWorker, retries, log)


def runJobs(jobs, workers=1, scheduler=None, threadsPerWorker=1, retries=2, log=print, client=None):
    """:func:`runTasks` for tasks of several legs: ``jobs`` is a sequence of ``(task, function,
    store)``; ``client``, a Dask Client to use (and leave open) instead of making one."""
    jobs = list(jobs)
    pending = [job for job in jobs if not job[2].done(job[0])]
    done = len(jobs) - len(pending)
    if done:
        log(f"  {done} of {len(jobs)} tasks are done already; running the other {len(pending)}")
    if not pending:
        return []
    ran = []
    start = time.perf_counter()

    def report(name, seconds):
        ran.append(name)
        elapsed = time.perf_counter() - start
        left = elapsed / len(ran) * (len(pending) - len(ran))
        log(f"  {name} ({seconds:.1f} s; {done}/{len(jobs)} done; {_duration(elapsed)} elapsed"
            + (f", about {_duration(left)} left)" if len(ran) < len(pending) else ")"))

    if client is None and scheduler is None and workers <= 1:
        for task, function, store in pending:
            name, seconds = _execute(function, task, store)
            done += 1
            report(name, seconds)
        return ran
    own = client is None
    cluster = None
    if own:
        client, cluster = daskClient(workers, scheduler, threadsPerWorker)
    from distributed import as_completed
    try:
        futures = [client.submit(_execute, function, task, store,
                                 key=f"task-{task.name}-{store.key[:12]}", pure=False, retries=retries)
                   for task, function, store in pending]
        for future in as_completed(futures):
            name, seconds = future.result()
            done += 1
            report(name, seconds)
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
    return ran


def gpuCount():
    """The CUDA devices torch sees (0 without CUDA): the local workers' GPUs."""
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:
        return 0


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def daskClient(workers=1, scheduler=None, threadsPerWorker=1):
    """(Client, cluster): a Client of the running scheduler at ``scheduler`` (cluster None), or of
    a new LocalCluster of ``workers`` processes with ``threadsPerWorker`` threads each, listening
    on 127.0.0.1 only, with no dashboard.  Close both when done."""
    from distributed import Client, LocalCluster
    if scheduler is not None:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=int(workers), threads_per_worker=int(threadsPerWorker), processes=True,
                           host="127.0.0.1", dashboard_address=None)
    return Client(cluster), cluster
