"""The paper's figures (and the reports' own), one module each."""
