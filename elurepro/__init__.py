"""elurepro: a reproduction suite for Clevert et al., ELUs (ICLR 2016)."""

__version__ = "0.1.0"

# The config schema must be in Hydra's ConfigStore before any config is composed.
import elurepro.config  # noqa: E402, F401
