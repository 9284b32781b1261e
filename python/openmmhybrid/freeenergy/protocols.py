"""The two protocols of a leg, as tasks and their analysis.

- :class:`MBARProtocol`: one task per lambda window; the analysis decorrelates each window by its
  dU/dlambda, runs MBAR, and reports the overlap matrix and the forward and reverse convergence
  (the estimate from the first and the last fractions of every window's samples).
- :class:`NEQProtocol`: two end-state tasks (snapshots at lambda = 0 and 1), then one task per
  switch from one of them; the analysis runs BAR on the forward and reverse works, with the
  one-sided Jarzynski estimate beside it.

A leg is given as a picklable callable that returns its :class:`~.sampling.Leg` (a module-level
function, or a functools.partial of one), so that Dask workers can build it.  Tasks run through
:func:`~.tasks.runTasks`, so every result is durable and a rerun does only what is missing.
Every estimate is in kT; the analysis works on whatever tasks are done and says how many.
"""
from dataclasses import asdict, dataclass, field

import numpy as np

from .estimators import barEstimate, decorrelatedIndices, jarzynskiEstimate, mbarEstimate
from .sampling import checkSchedule, sampleEndState, sampleWindow, snapshotArrays, switch
from .tasks import ResultStore, Task

__all__ = ["MBARProtocol", "NEQProtocol", "runProtocolTask"]


@dataclass(frozen=True)
class MBARProtocol:
    """Lambda windows: ``equilibrationSteps``, then ``samples`` samples every ``interval`` steps."""

    lambdas: tuple = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    equilibrationSteps: int = 5000
    samples: int = 500
    interval: int = 50
    name: str = field(default="mbar", init=False)

    def __post_init__(self):
        object.__setattr__(self, "lambdas", tuple(checkSchedule(self.lambdas)))
        for key in ("samples", "interval"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"the MBAR protocol needs {key} >= 1, not {getattr(self, key)}")

    def settings(self):
        return asdict(self)

    def tasks(self, leg, seed):
        return [Task(leg, "window", i, seed + i) for i in range(len(self.lambdas))]

    def run(self, legFactory, task, store=None):
        result = sampleWindow(legFactory(), task.index, self.lambdas, self.equilibrationSteps, self.samples,
                              self.interval, seed=task.seed)
        return {"u_kn": result["u_kn"], "dudl": result["dudl"]}

    def analyze(self, store, tasks, offset=0.0):
        """The MBAR estimate of f(1) - f(0) from the windows that are done (all are needed).

        ``offset`` (kT): a constant slope taken off the potential, U(lambda) - lambda * offset
        (exact: every estimate moves by -offset), to keep reduced potentials of the order of kT."""
        done = [t for t in tasks if store.done(t)]
        if len(done) < len(tasks):
            return {"done": len(done), "total": len(tasks), "estimate": None}
        shift = np.asarray(self.lambdas)[:, None] * float(offset)
        windows = [store.load(t) for t in tasks]
        for window in windows:
            window["u_kn"] = window["u_kn"] - shift
            window["dudl"] = window["dudl"] - float(offset)

        def estimate(part):
            blocks, counts = [], []
            for window in windows:
                n = window["u_kn"].shape[1]
                chosen = np.arange(n)[part(n)]
                keep = chosen[decorrelatedIndices(window["dudl"][chosen])]
                blocks.append(window["u_kn"][:, keep])
                counts.append(len(keep))
            return mbarEstimate(np.concatenate(blocks, axis=1), counts)

        full = estimate(lambda n: slice(0, n))
        fractions = (0.25, 0.5, 0.75, 1.0)
        forward = [estimate(lambda n, f=f: slice(0, max(int(f * n), 3))) for f in fractions]
        reverse = [estimate(lambda n, f=f: slice(n - max(int(f * n), 3), n)) for f in fractions]
        full.details["convergence"] = {"fractions": list(fractions),
                                       "forward": [[e.value, e.stderr] for e in forward],
                                       "reverse": [[e.value, e.stderr] for e in reverse]}
        full.details["dudl_mean"] = [float(np.mean(w["dudl"])) for w in windows]
        return {"done": len(done), "total": len(tasks), "estimate": full}


@dataclass(frozen=True)
class NEQProtocol:
    """Nonequilibrium switching: at each end, ``equilibrationSteps`` then ``switches`` snapshots
    ``interval`` steps apart; from each, a switch of ``switchSteps`` steps to the other end.

    With ``oneSided``, only lambda = 0 is sampled and only forward switches run, and the estimate
    is Jarzynski's (Karwounopoulos et al. 2024): no sampling at the ML/MM end, where every step
    costs the model, but biased when the forward works spread over more than a few kT."""

    switches: int = 100
    switchSteps: int = 5000
    equilibrationSteps: int = 5000
    interval: int = 500
    oneSided: bool = False
    name: str = field(default="neq", init=False)

    def __post_init__(self):
        if int(self.switchSteps) < 1:
            raise ValueError(f"a switch needs at least one step, not switchSteps = {self.switchSteps}")
        if int(self.switches) < 2:
            raise ValueError(f"BAR needs at least 2 switches each way, not {self.switches}")

    def settings(self):
        return asdict(self)

    def endTasks(self, leg, seed):
        return [Task(leg, "endstate", 0, seed)] + ([] if self.oneSided else [Task(leg, "endstate", 1, seed + 1)])

    def switchTasks(self, leg, seed):
        return ([Task(leg, "forward", i, seed + 1000 + i) for i in range(self.switches)]
                + ([] if self.oneSided else [Task(leg, "reverse", i, seed + 100000 + i) for i in range(self.switches)]))

    def tasks(self, leg, seed):
        """End-state tasks first; the switch tasks need their snapshots (run them after)."""
        return self.endTasks(leg, seed) + self.switchTasks(leg, seed)

    def run(self, legFactory, task, store):
        leg = legFactory()
        if task.kind == "endstate":
            snapshots = sampleEndState(leg, float(task.index), self.equilibrationSteps, self.switches, self.interval,
                                       seed=task.seed)
            arrays = [snapshotArrays(s) for s in snapshots]
            return {name: np.stack([a[name] for a in arrays]) for name in arrays[0]}
        end = Task(task.leg, "endstate", 0 if task.kind == "forward" else 1, 0)  # results are found by name
        if not store.done(end):
            raise RuntimeError(f"{task.name} needs {end.name}, which is not done")
        snapshots = store.load(end)
        snapshot = {name: snapshots[name][task.index] for name in snapshots}
        return {"work": np.array([switch(leg, snapshot, task.kind == "forward", self.switchSteps, seed=task.seed)])}

    def analyze(self, store, tasks, offset=0.0):
        """BAR on the works of the switches that are done (at least 2 each way; one-sided:
        Jarzynski on at least 2 forward works); ``offset`` (kT)
        as for :meth:`MBARProtocol.analyze` (forward works move by -offset, reverse by +offset)."""
        forward = [float(store.load(t)["work"][0]) - offset for t in tasks if t.kind == "forward" and store.done(t)]
        reverse = [float(store.load(t)["work"][0]) + offset for t in tasks if t.kind == "reverse" and store.done(t)]
        done = sum(1 for t in tasks if store.done(t))
        if len(forward) < 2 or (len(reverse) < 2 and not self.oneSided):
            return {"done": done, "total": len(tasks), "estimate": None}
        oneSided = jarzynskiEstimate(forward)
        estimate = oneSided if self.oneSided else barEstimate(forward, reverse)
        estimate.details.update(forwardWorks=forward, reverseWorks=reverse, jarzynski=[oneSided.value, oneSided.stderr])
        return {"done": done, "total": len(tasks), "estimate": estimate}


def runProtocolTask(protocol, legFactory, folder, key, task):
    """``protocol.run`` for one task (module level, for Dask): the store is rebuilt on the worker."""
    return protocol.run(legFactory, task, ResultStore(folder, key))
