"""One report per experiment: its sections in order, each from a figure or table module."""
