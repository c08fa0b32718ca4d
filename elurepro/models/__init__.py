"""Models. Every trainable thing is a *population*: a module mapping [K, B, ...] to [K, B, out]."""
