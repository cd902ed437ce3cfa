"""Built-in class encoders for zero-shot learning, registered through the entry points."""
