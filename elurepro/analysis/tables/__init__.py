"""The paper's tables (and the reports' own), one module each."""
