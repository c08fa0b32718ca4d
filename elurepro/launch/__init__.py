"""Launching training through Hydra's submitit launchers: Slurm requests fitted to the partition
(``partition``), waiting for the jobs (``watch``, ``slurm``), the command the user typed
(``command``) and the end of a job's work (``job_end``). The launcher classes Hydra instantiates
are in ``hydra_plugins/elurepro_launcher``.
"""
