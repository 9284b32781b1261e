"""What a nonequilibrium switch costs against plain MD, on the legs of the shipped fe configs.

A switch of n steps (``openmmhybrid.freeenergy.switch``) against n steps of the leg's integrator
from the same snapshot: with the work from dE/dlambda of the correction's force groups alone
(``Leg.lambdaGroups``, what ``openmm-hybrid fe`` does) and from the whole System's energy at every
step (``lambdaGroups=None``).  The switch times include making its Context.

Usage::

    python benchmarks/bench_fe_switch.py
"""
import common  # noqa: F401  (the machine header)
import time, dataclasses
from openmmhybrid.freeenergy.config import loadFEConfig
from openmmhybrid.freeenergy.workflow import buildLeg
from openmmhybrid.freeenergy import sampleEndState, switch
for path, legname in (("examples/configs/fe_pxylene_hydration.toml", "water"), ("examples/configs/fe_t4l_pxylene_binding.toml", "complex")):
    fe = loadFEConfig(path, quick=True)
    leg = buildLeg(fe.ligands[0].legs[legname], False, None)
    snap = sampleEndState(leg, 0.0, 10, 1, 1, seed=3)[0]
    n = 200 if legname == "water" else 60
    ctx, integ = leg.context(0.0, 3); ctx.setState(snap); integ.step(5)
    t = time.perf_counter(); integ.step(n); md = time.perf_counter() - t
    t = time.perf_counter(); switch(leg, snap, True, n, seed=4); a = time.perf_counter() - t
    whole = dataclasses.replace(leg, lambdaGroups=None)
    t = time.perf_counter(); switch(whole, snap, True, n, seed=4); b = time.perf_counter() - t
    print(f"{legname}: {n} steps: MD {md:.2f} s; switch (correction groups) {a:.2f} s ({a/md:.2f}x); switch (whole System) {b:.2f} s ({b/md:.2f}x)")
print(common.machine_header())
