"""elurepro: a reproduction suite for Clevert et al., ELUs (ICLR 2016)."""

__version__ = "0.1.0"
