"""The ``streamlab`` command line: one module per subcommand. The only place that configures logging."""
