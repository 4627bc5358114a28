"""Built-in tasks: training scripts shipped with the package, each with its search space."""
