"""The run store: where runs live (identity), who trains what (claims), and the sweep's folders."""
