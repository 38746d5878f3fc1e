"""Unit tests: a package, so that test_estimate.py and its end-to-end namesake in
tests/e2e are two modules to pytest (unit.test_estimate and test_estimate)."""
