"""The test suite (a package, so that its modules and the benchmarks import its helpers by name:
``tests.support``)."""
