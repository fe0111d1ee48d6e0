"""The application: the `slowfast` command, the experiment, the benchmarks and the process runner of stack profiles."""
