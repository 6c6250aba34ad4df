"""Command-line orchestration: argument parsing and stage wiring only; the work lives in the stage packages."""
