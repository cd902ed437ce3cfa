"""Built-in training objectives (one module per objective), registered through the entry points."""
