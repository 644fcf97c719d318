"""Launch files, parameter YAML, the `rpl` command line (launch runner, evaluation)."""
