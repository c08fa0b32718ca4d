"""Launching training through Hydra's submitit launchers: Slurm requests fitted to the partition
(``partition``), waiting for the jobs (``watch``, ``slurm``) and the command the user typed
(``command``). The launcher classes Hydra instantiates are in ``hydra_plugins/elurepro_launcher``.
"""
