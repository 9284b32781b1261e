"""Run an ``openmm-hybrid fe`` calculation on a batch cluster (SLURM, PBS or LSF) through
dask-jobqueue: a template to adapt.

Each batch job is one Dask worker with one GPU (or a few cores); the scheduler runs here, in this
process, and hands the calculation's tasks (MBAR windows, end-state samplings, switches) to the
workers as they come up.  Every task writes its result into the output folder, which must be on a
file system the nodes share; a worker lost with its job has its task rerun elsewhere, and if this
script dies, running it again with ``--resume`` reruns nothing finished.

Security: the scheduler listens on a TLS port, with certificates from the files below, so only
holders of a certificate signed by your CA can connect (``require_encryption``); never open a plain
``tcp://`` port on every interface of a login node.  Make the files once, e.g.::

    openssl req -x509 -newkey rsa:4096 -nodes -days 365 -subj "/CN=dask" -keyout ca.key -out ca.pem
    openssl req -newkey rsa:4096 -nodes -subj "/CN=dask" -keyout dask.key -out dask.csr
    openssl x509 -req -in dask.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -out dask.pem

and keep them readable by you only (chmod 600).  Needs ``pip install dask-jobqueue`` and
openmm-hybrid installed in the same environment on every node.

Usage::

    python examples/fe_dask_cluster.py examples/configs/fe_t4l_pxylene_binding.toml --jobs 8 [--resume]
"""
import argparse
import os

from distributed import Client
from distributed.security import Security

from openmmhybrid.freeenergy import loadFEConfig, runFreeEnergy

CERTIFICATES = os.path.expanduser("~/.dask-tls")  # ca.pem, dask.pem, dask.key


def cluster(jobs):
    """The batch cluster: one worker per job.  Adapt the queue, account, resources and the
    environment set-up to your site (dask-jobqueue's documentation lists every option)."""
    from dask_jobqueue import SLURMCluster  # or PBSCluster, LSFCluster
    security = Security(tls_ca_file=os.path.join(CERTIFICATES, "ca.pem"),
                        tls_client_cert=os.path.join(CERTIFICATES, "dask.pem"),
                        tls_client_key=os.path.join(CERTIFICATES, "dask.key"), require_encryption=True)
    batch = SLURMCluster(
        queue="gpu", account="my-account", walltime="04:00:00",
        cores=4, processes=1, memory="16GB",               # one worker process per job
        job_extra_directives=["--gres=gpu:1"],             # one GPU per worker
        job_script_prologue=["source ~/openmm-hybrid/.venv/bin/activate"],
        worker_extra_args=["--nthreads", "1"],             # one task at a time per worker
        protocol="tls://", security=security,
        scheduler_options={"interface": "ib0"},            # the cluster's internal network, not every interface
    )
    batch.scale(jobs=jobs)
    return batch, security


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--jobs", type=int, default=8, help="batch jobs (workers) to start")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    fe = loadFEConfig(args.config, quick=args.quick, mlOverrides={"platform": "CUDA"})
    batch, security = cluster(args.jobs)
    with Client(batch, security=security) as client:
        print(f"scheduler at {batch.scheduler_address}; {args.jobs} jobs submitted")
        runFreeEnergy(fe, resume=args.resume, client=client)
    batch.close()


if __name__ == "__main__":
    main()
